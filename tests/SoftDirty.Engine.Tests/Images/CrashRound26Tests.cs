using System;
using System.IO;
using System.Linq;
using SoftDirty.Emulation;
using SoftDirty.Images;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Round 26 (Crash): what a commit leaves where its last step fails, and what a save says of an image it put in place.
/// The crash states themselves are checked in Pester (Security.Round26.Crash.Tests.ps1: the calls recorded with strace).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public class CrashRound26Tests
{
    [Fact]
    public void ASaveIsDescribedFromWhatItWroteNotReadBack()
    {
        // Before: the cmdlet read the manifest back by path after the commit, so an EIO there said ImageReadError of an
        // image in place and durable. The result describes itself; here the manifest is gone before it is asked.
        using var scratch = new ScratchFolder("r26crash");
        var p = new EmulatedProcess("crash26");
        ulong a = p.Mmap(null, 8 * 4096UL, Protection.Read | Protection.Write).Start;
        p.Write(a, 3 * 4096UL, 7);
        var path = Path.Combine(scratch.Path, "img");
        var result = ImageWriter.Save(p, path, null, TrackingMethod.Hash, null);
        long onDisk = new DirectoryInfo(path).GetFiles().Sum(f => f.Length);
        File.Delete(Path.Combine(path, ImageFormat.ManifestFile));
        var info = result.Describe();
        Assert.Equal(path, info.Path);
        Assert.Equal(result.Manifest.Id, info.Id);
        Assert.Equal(3UL, info.DataPages);
        Assert.Equal(onDisk, info.FileBytes);
        Assert.Equal(MemoryImageKind.Full, info.Kind);
    }

    [Fact]
    public void MakeDirectorySetsTheModeWhateverTheUmask()
    {
        // The empty destination a failed commit puts back keeps its mode (0750 here), not the umask's.
        using var scratch = new ScratchFolder("r26crash");
        using var dir = SafeDirectory.Open(scratch.Path, "test", scratch.Path, create: false)!;
        var mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute;
        Assert.True(dir.MakeDirectory("back", mode));
        Assert.Equal(mode, File.GetUnixFileMode(Path.Combine(scratch.Path, "back")));
        Assert.False(dir.MakeDirectory("back", mode)); // exists: false, nothing changed
    }
}
