using System.IO;
using Microsoft.Win32.SafeHandles;
using SoftDirty.Images;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Round 25 (Durable): a failed fsync fails the write. .NET's FileStream.Flush(true) answered an fsync error with success, so
/// the module's files are synced through <see cref="SafeFiles.SyncToDisk"/>. A descriptor opened O_PATH stands in for a file
/// whose fsync fails: the kernel answers EBADF there, as it answers EIO for a writeback error.
/// </summary>
public class DurableRound25Tests
{
    private static SafeFileHandle OpenPath(string path) =>
        new(FileNative.Open(path, FileNative.O_PATH | FileNative.O_CLOEXEC, 0), ownsHandle: true);

    [Fact]
    public void AFailedFsyncIsAWriteError()
    {
        using var scratch = new ScratchFolder("r25durable");
        var path = Path.Combine(scratch.Path, "file");
        File.WriteAllBytes(path, new byte[] { 1 });
        using var handle = OpenPath(path);
        Assert.False(handle.IsInvalid);
        var e = Assert.Throws<EngineException>(() => SafeFiles.SyncToDisk(handle, path));
        Assert.Equal(EngineError.ImageWriteError, e.Error);
        Assert.Equal(Errno.EBADF, e.Errno);
    }

    [Fact]
    public void TheModulesFileStreamThrowsWhereFsyncFails()
    {
        // Before: Flush(true) of the module's stream was FileStream's, which returned.
        using var scratch = new ScratchFolder("r25durable");
        var path = Path.Combine(scratch.Path, "file");
        File.WriteAllBytes(path, new byte[] { 1 });
        using var stream = new SizeLimitedFileStream(OpenPath(path), path);
        var e = Assert.Throws<EngineException>(() => stream.Flush(flushToDisk: true));
        Assert.Equal(EngineError.ImageWriteError, e.Error);
        Assert.Equal(Errno.EBADF, e.Errno);
        stream.Flush(flushToDisk: false); // no fsync asked: nothing to fail
    }

    [Fact]
    public void AFileAndAFolderThatSyncSaySo()
    {
        using var scratch = new ScratchFolder("r25durable");
        using var dir = SafeDirectory.Open(scratch.Path, "The test folder", scratch.Path, create: false)!;
        using (var file = dir.CreateFile("f"))
        {
            file.Write(new byte[] { 1, 2, 3 });
            file.Flush(flushToDisk: true);
        }
        Assert.Equal(0, dir.SyncError());
        dir.Fsync();
    }
}
