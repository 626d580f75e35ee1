using System;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Issue 13, third attack round, at the engine: the checked-directory rule (<see cref="SafeDirectory"/>: every folder
/// from / down checked on its descriptor, group-writable folders refused unless sticky), a destination that appears
/// or turns into a link between the check and the rename, a name replaced by <see cref="SafeFiles.WriteReplacing"/>,
/// and manifests forged (checksum recomputed) to name files outside the image folder or carry huge counts.
/// </summary>
[Collection(WorkflowCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ImageRound3Tests : IDisposable
{
    private const int Pages = 8;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdround3-" + Guid.NewGuid().ToString("n"));
    private readonly string _image;

    public ImageRound3Tests()
    {
        Directory.CreateDirectory(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        using var p = new FakeProcess(Pages, seed: 31);
        for (int i = 0; i < Pages; i++) p.WriteRandom(i);
        _image = Path.Combine(_dir, "img");
        ImageWriter.Save(p, _image, null, TrackingMethod.Hash, null);
    }

    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private string Folder(string name, UnixFileMode mode)
    {
        var d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        File.SetUnixFileMode(d, mode);
        return d;
    }

    private const UnixFileMode Rwx = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode GroupRwx = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute;

    [HostFact]
    public void AGroupWritableFolderWithoutTheStickyBitIsRefusedOnItsDescriptor()
    {
        var g = Folder("group", Rwx | GroupRwx);
        var ex = Assert.Throws<EngineException>(() => SafeFiles.CheckDestination(Path.Combine(g, "deeper", "out"), "The image directory"));
        Assert.Equal(EngineError.UnsafeDestination, ex.Error);
        Assert.Contains("its group may write to", ex.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(g)); // "deeper" was not made: the check comes first
        using var p = new FakeProcess(2, seed: 2);
        Assert.Equal(EngineError.UnsafeDestination, Assert.Throws<EngineException>(() => ImageWriter.Save(p, Path.Combine(g, "img"), null, TrackingMethod.Hash, null)).Error);
        Assert.Empty(Directory.EnumerateFileSystemEntries(g));
    }

    [HostFact]
    public void AGroupWritableFolderWithTheStickyBitIsAcceptedAndMissingFoldersAreMade0700()
    {
        var g = Folder("sticky", Rwx | GroupRwx | UnixFileMode.StickyBit);
        var dest = Path.Combine(g, "a", "b", "img");
        using var p = new FakeProcess(2, seed: 3);
        p.WriteRandom(0);
        ImageWriter.Save(p, dest, null, TrackingMethod.Hash, null);
        Assert.True(ImageVerifier.Test(dest).Valid);
        foreach (var d in new[] { Path.Combine(g, "a"), Path.Combine(g, "a", "b"), dest })
            Assert.Equal(Rwx, File.GetUnixFileMode(d));
        foreach (var f in Directory.GetFiles(dest))
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(f));
    }

    [HostFact]
    public void TheCallersOwnLinkOnTheWayIsFollowedAndAFileOnTheWayIsInvalidArgument()
    {
        var real = Folder("real", Rwx);
        var link = Path.Combine(_dir, "link");
        File.CreateSymbolicLink(link, real);
        using (var dir = SafeDirectory.Open(link, "The image directory", link, create: false))
            Assert.NotNull(dir);
        var file = Path.Combine(_dir, "afile");
        File.WriteAllText(file, "x");
        Assert.Equal(EngineError.InvalidArgument, Assert.Throws<EngineException>(() => SafeFiles.CheckDestination(Path.Combine(file, "out"), "The destination")).Error);
    }

    [HostFact]
    public void ADestinationMadeMeanwhileBeforeTheRenameIsImageExistsAndKeepsItsContent()
    {
        var dest = Path.Combine(_dir, "raced");
        using (var output = PrivateOutput.Begin(dest, "The image directory"))
        {
            using (var f = output.Create("x")) f.Write(new byte[] { 1 });
            // Another process puts its own result there between the check and the rename.
            Directory.CreateDirectory(dest);
            File.WriteAllText(Path.Combine(dest, "theirs"), "theirs");
            Assert.Equal(EngineError.ImageExists, Assert.Throws<EngineException>(output.Commit).Error);
        }
        Assert.Equal("theirs", File.ReadAllText(Path.Combine(dest, "theirs")));
        Assert.Single(Directory.EnumerateFileSystemEntries(dest));
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(_dir), e => e.Contains(".partial-", StringComparison.Ordinal));
    }

    [HostFact]
    public void ADestinationTurnedIntoALinkBeforeTheRenameIsRefusedAndTheLinkedFolderStaysEmpty()
    {
        var dest = Path.Combine(_dir, "linked");
        var victim = Folder("victim", Rwx);
        using (var output = PrivateOutput.Begin(dest, "The image directory"))
        {
            using (var f = output.Create("x")) f.Write(new byte[] { 1 });
            File.CreateSymbolicLink(dest, victim);
            Assert.Equal(EngineError.UnsafeDestination, Assert.Throws<EngineException>(output.Commit).Error);
        }
        Assert.Empty(Directory.EnumerateFileSystemEntries(victim));
        Assert.NotNull(new FileInfo(dest).LinkTarget);
    }

    [HostFact]
    public void WriteReplacingReplacesALinkItselfAndLeavesItsTargetAlone()
    {
        var folder = Folder("replace", Rwx);
        var target = Path.Combine(_dir, "precious");
        File.WriteAllText(target, "precious");
        File.CreateSymbolicLink(Path.Combine(folder, "chart.svg"), target);
        using (var dir = SafeDirectory.Open(folder, "The chart", folder, create: false)!)
            SafeFiles.WriteReplacing(dir, "chart.svg", Encoding.UTF8.GetBytes("<svg/>"));
        Assert.Equal("precious", File.ReadAllText(target));
        Assert.Null(new FileInfo(Path.Combine(folder, "chart.svg")).LinkTarget);
        Assert.Equal("<svg/>", File.ReadAllText(Path.Combine(folder, "chart.svg")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(folder, "chart.svg")));
        Assert.Single(Directory.EnumerateFileSystemEntries(folder)); // no temporary file left
    }

    private string Forge(string name, Action<ImageManifest> edit)
    {
        var d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        foreach (var f in Directory.GetFiles(_image)) File.Copy(f, Path.Combine(d, Path.GetFileName(f)));
        var m = JsonSerializer.Deserialize<ImageManifest>(File.ReadAllBytes(Path.Combine(d, ImageFormat.ManifestFile)), ImageFormat.Json)!;
        edit(m);
        m.Checksum = ImageFormat.ManifestChecksum(m);
        File.WriteAllBytes(Path.Combine(d, ImageFormat.ManifestFile), JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json));
        return d;
    }

    public static TheoryData<string> Forgeries => new() { "outside-relative", "outside-absolute", "extra-plain", "negative-size", "huge-data-pages", "huge-zero-pages" };

    [HostTheory]
    [MemberData(nameof(Forgeries))]
    public void AForgedManifestIsImageCorruptEverywhere(string how)
    {
        var d = Forge(how, m =>
        {
            switch (how)
            {
                case "outside-relative": m.Files.Add(new ImageFileInfo { Name = "../../../etc/shadow", Size = 1 }); break;
                case "outside-absolute": m.Files.First(f => f.Name == ImageFormat.PagesFile).Name = "/etc/shadow"; m.Files.Add(new ImageFileInfo { Name = ImageFormat.PagesFile, Size = m.Files[0].Size }); break;
                case "extra-plain": m.Files.Add(new ImageFileInfo { Name = "notes.txt", Size = 0 }); break;
                case "negative-size": m.Files.First(f => f.Name == ImageFormat.PagesFile).Size = -1; break;
                case "huge-data-pages": m.DataPages = ulong.MaxValue; break;
                case "huge-zero-pages": m.ZeroPages = ulong.MaxValue - 1; break;
            }
        });
        Assert.Equal(EngineError.ImageCorrupt, Assert.ThrowsAny<EngineException>(() => ImageReader.Open(d)).Error);
        var verdict = ImageVerifier.Test(d);
        Assert.False(verdict.Valid);
        Assert.Equal(EngineError.ImageCorrupt, verdict.Problems[0].Error);
        var dest = d + "-restored";
        using (var target = new FlatFileRestoreTarget(dest))
            Assert.Equal(EngineError.ImageCorrupt, Assert.ThrowsAny<EngineException>(() => ImageRestorer.Restore(d, target)).Error);
        Assert.False(Directory.Exists(dest));
    }
}
