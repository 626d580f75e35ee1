using System;
using System.IO;
using Microsoft.Win32.SafeHandles;

namespace SoftDirty.Images;

/// <summary>
/// A file the module writes (an image file, a restored mapping, a chart, a state record), kept within this process's
/// file-size limit (RLIMIT_FSIZE, <c>ulimit -f</c>): a write or a length past it fails with ImageWriteError (EFBIG)
/// before it reaches the kernel, which would otherwise kill PowerShell outright with SIGXFSZ (its default action)
/// half-way through the file, or, where SIGXFSZ is ignored, fail with EFBIG, which .NET reports as an
/// ArgumentOutOfRangeException. The caller's failure path then removes what it made, as for a full disk.
/// Its <see cref="Flush(bool)"/> to disk fails where fsync fails (<see cref="SafeFiles.SyncToDisk"/>): .NET's own drops the error.
/// </summary>
internal sealed class SizeLimitedFileStream : FileStream
{
    private readonly string _path;
    private readonly ulong _limit;
    private readonly SafeFileHandle _handle;

    public SizeLimitedFileStream(SafeFileHandle handle, string path) : base(handle, FileAccess.Write, 0)
    {
        _handle = handle;
        _path = path;
        _limit = CurrentLimit();
    }

    /// <summary>The soft RLIMIT_FSIZE of this process now (RLIM_INFINITY where none, or where it cannot be read).</summary>
    internal static unsafe ulong CurrentLimit()
    {
        ulong* limits = stackalloc ulong[2];
        return FileNative.GetRlimit(FileNative.RLIMIT_FSIZE, limits) == 0 ? limits[0] : FileNative.RLIM_INFINITY;
    }

    private void Check(ulong end)
    {
        if (end > _limit) throw TooLarge(end);
    }

    private EngineException TooLarge(ulong end) => SafeFiles.WriteFailure(_path, Errno.EFBIG,
        $"Writing {_path} failed: it would grow to {end} bytes, past this process's file-size limit (ulimit -f) of {(_limit == FileNative.RLIM_INFINITY ? "the kernel's" : _limit + " bytes")} ({Errno.Name(Errno.EFBIG)}); raise the limit and try again.");

    /// <summary>
    /// The kernel's EFBIG (which .NET reports as an ArgumentOutOfRangeException): this process's file-size limit where it was
    /// lowered meanwhile, else the largest file the file system takes (round 26: a restore onto ext2 with 1 KiB blocks, about
    /// 16 GiB, said "raise the limit (ulimit -f)" where there was none).
    /// </summary>
    private EngineException Refused(ulong end) => end > CurrentLimit() ? TooLarge(end) : SafeFiles.WriteFailure(_path, Errno.EFBIG,
        $"Writing {_path} failed: it would grow to {end} bytes, past the largest file its file system takes ({Errno.Name(Errno.EFBIG)}). Choose a destination on another file system.");

    // Written at the stream's position through the handle itself: FileStream's own span write, in a derived type, goes
    // through Stream.Write, which comes back to the array overload here.
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        long at = Position;
        ulong end = (ulong)at + (ulong)buffer.Length;
        Check(end);
        try { RandomAccess.Write(_handle, buffer, at); }
        catch (ArgumentOutOfRangeException) { throw Refused(end); } // EFBIG: the limit was lowered meanwhile (SIGXFSZ ignored), or the file system's largest file
        Position = at + buffer.Length;
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void WriteByte(byte value) => Write(new ReadOnlySpan<byte>(in value));

    /// <summary>
    /// Flushes, and with <paramref name="flushToDisk"/> fsyncs, throwing where fsync fails (EIO, ENOSPC, EDQUOT: a writeback
    /// error, which the kernel reports once): FileStream's own Flush(true) returns as if it succeeded (round 25: fsync's EIO
    /// injected under strace, every save, restore and receive said success), which is data lost with success said.
    /// </summary>
    public override void Flush(bool flushToDisk)
    {
        base.Flush(false);
        if (flushToDisk) SafeFiles.SyncToDisk(_handle, _path);
    }

    public override void SetLength(long value)
    {
        Check((ulong)value);
        try { base.SetLength(value); }
        catch (ArgumentOutOfRangeException) { throw Refused((ulong)value); }
    }
}
