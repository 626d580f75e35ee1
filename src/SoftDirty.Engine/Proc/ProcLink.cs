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
    /// <summary>The first room for a link's text: most links of /proc are short ("anon_inode:[userfaultfd]", "pid:[4026531836]").</summary>
    private const int FirstLinkBytes = 256;

    /// <summary>The most room tried: a path the kernel says is at most PATH_MAX (4096 bytes) with its " (deleted)".</summary>
    private const int MaxLinkBytes = 8192;

    /// <summary>
    /// The target of <paramref name="path"/>; null where there is none to read (gone, not a link, hidden: ENOENT, ESRCH,
    /// EINVAL, EACCES...), with its errno in <paramref name="errno"/>. ResourceLimit where this process is out of memory:
    /// that says nothing of the process. A link that fills the room given is read again with more (readlink cuts it short
    /// without a word), and one longer than <see cref="MaxLinkBytes"/> is none (ENAMETOOLONG).
    /// </summary>
    public static unsafe string? Read(string path, out int errno)
    {
        for (int room = FirstLinkBytes; room <= MaxLinkBytes; room *= 2)
        {
            var buffer = new byte[room];
            nint n;
            fixed (byte* b = buffer) n = FileNative.ReadLinkAt(FileNative.AT_FDCWD, path, b, (nuint)room);
            errno = n < 0 ? Marshal.GetLastPInvokeError() : 0;
            if (n < 0 && Errno.IsResourceLimit(errno))
                throw ResourceLimitError.For($"Reading the link {path} failed", errno, "Nothing is known of the process from it, so nothing was done", path);
            if (n < 0) return null;
            if (n < room) return Encoding.UTF8.GetString(buffer, 0, (int)n);
        }
        errno = Errno.ENAMETOOLONG;
        return null;
    }
}
