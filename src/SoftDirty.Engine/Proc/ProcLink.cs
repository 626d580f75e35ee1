using System.Runtime.InteropServices;
using System.Text;
using SoftDirty.Images;

namespace SoftDirty;

/// <summary>
/// Reads a link of /proc (a descriptor's /proc/PID/fd/N, a namespace's /proc/PID/ns/pid) with readlink itself: .NET's
/// FileSystemInfo.LinkTarget answers null for every failure, out of memory (ENOMEM) included, so a link this process
/// could not read passed for no link (round 29).
/// </summary>
internal static class ProcLink
{
    /// <summary>The room for a link's text: the links of /proc are short ("anon_inode:[userfaultfd]", "pid:[4026531836]").</summary>
    private const int MaxLinkBytes = 256;

    /// <summary>
    /// The target of <paramref name="path"/>; null where there is none to read (gone, not a link, hidden: ENOENT, ESRCH,
    /// EINVAL, EACCES...), with its errno in <paramref name="errno"/>. ResourceLimit where this process is out of memory:
    /// that says nothing of the process.
    /// </summary>
    public static unsafe string? Read(string path, out int errno)
    {
        var buffer = stackalloc byte[MaxLinkBytes];
        nint n = FileNative.ReadLinkAt(FileNative.AT_FDCWD, path, buffer, MaxLinkBytes);
        errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
        if (n < 0 && Errno.IsResourceLimit(errno))
            throw new EngineException(EngineError.ResourceLimit,
                $"Reading the link {path} failed: {Errno.Describe(errno)}. Nothing is known of the process from it, so nothing was done; try again once memory is free.", path, errno);
        return n < 0 ? null : Encoding.UTF8.GetString(buffer, (int)n);
    }
}
