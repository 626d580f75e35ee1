using System;
using System.Runtime.InteropServices;
using System.Text;

namespace SoftDirty;

/// <summary>
/// The PROCMAP_QUERY ioctl on an open /proc/PID/maps descriptor (Linux 6.11+, include/uapi/linux/fs.h): the VMA that
/// covers one address, read under the kernel's mmap lock, without reading the whole maps text.
/// </summary>
internal static unsafe class ProcmapQuery
{
    [StructLayout(LayoutKind.Sequential)]
    private struct Arg
    {
        public ulong Size, QueryFlags, QueryAddr, VmaStart, VmaEnd, VmaFlags, VmaPageSize, VmaOffset, Inode;
        public uint DevMajor, DevMinor, VmaNameSize, BuildIdSize;
        public ulong VmaNameAddr, BuildIdAddr;
    }

    /// <summary>_IOWR('f', 17, struct procmap_query).</summary>
    private static readonly nuint Request = (nuint)((3u << 30) | ((uint)sizeof(Arg) << 16) | ('f' << 8) | 17);

    private const ulong VmaReadable = 0x01, VmaWritable = 0x02, VmaExecutable = 0x04, VmaShared = 0x08;

    /// <summary>PATH_MAX: the longest name the kernel gives (ENAMETOOLONG beyond).</summary>
    private const int NameBytes = 4096;

    /// <summary>
    /// The VMA that covers <paramref name="address"/> as maps would print it (range, protection, file, offset, name);
    /// null where none covers it. <paramref name="available"/> is false where the kernel has no PROCMAP_QUERY or the
    /// query failed otherwise: read maps instead.
    /// </summary>
    public static MemoryMapping? At(int mapsFd, ulong address, out bool available)
    {
        byte* name = stackalloc byte[NameBytes];
        var arg = new Arg
        {
            Size = (ulong)sizeof(Arg),
            QueryAddr = address,
            VmaNameAddr = (ulong)name,
            VmaNameSize = NameBytes,
        };
        int rc;
        while ((rc = Native.Ioctl(mapsFd, Request, &arg)) < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR) { }
        available = rc >= 0 || Marshal.GetLastPInvokeError() == Errno.ENOENT;
        if (rc < 0) return null;
        // vma_name_size counts the terminating NUL; 0 for an anonymous VMA without a name.
        var text = arg.VmaNameSize > 0 ? Encoding.UTF8.GetString(name, (int)arg.VmaNameSize - 1) : "";
        // maps escapes a newline in a path as \012 (seq_file_path); the query gives the raw name.
        text = text.Replace("\n", "\\012", StringComparison.Ordinal);
        bool deleted = text.EndsWith(DeletedSuffix, StringComparison.Ordinal);
        return new MemoryMapping
        {
            Start = arg.VmaStart,
            End = arg.VmaEnd,
            Protection = (Protection)(arg.VmaFlags & (VmaReadable | VmaWritable | VmaExecutable)),
            Shared = (arg.VmaFlags & VmaShared) != 0,
            Offset = arg.VmaOffset,
            Device = $"{arg.DevMajor:x2}:{arg.DevMinor:x2}",
            Inode = arg.Inode,
            Path = deleted ? text[..^DeletedSuffix.Length] : text,
            Deleted = deleted,
        };
    }

    private const string DeletedSuffix = " (deleted)";
}
