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

    /// <summary>What the query found.</summary>
    public enum Result
    {
        /// <summary>The VMA covering the address is the mapping.</summary>
        Same,
        /// <summary>No VMA covers the address, or it differs from the mapping in range, protection, file or name.</summary>
        Changed,
        /// <summary>The kernel has no PROCMAP_QUERY, or it failed otherwise: read maps instead.</summary>
        Unavailable,
    }

    /// <summary>Whether the VMA covering <paramref name="address"/> is <paramref name="mapping"/> as maps printed it.</summary>
    public static Result Compare(int mapsFd, ulong address, MemoryMapping mapping)
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
        if (rc < 0) return Marshal.GetLastPInvokeError() == Errno.ENOENT ? Result.Changed : Result.Unavailable;
        var protection = (Protection)(arg.VmaFlags & (VmaReadable | VmaWritable | VmaExecutable));
        bool shared = (arg.VmaFlags & VmaShared) != 0;
        // vma_name_size counts the terminating NUL; 0 for an anonymous VMA without a name.
        var text = arg.VmaNameSize > 0 ? Encoding.UTF8.GetString(name, (int)arg.VmaNameSize - 1) : "";
        // maps escapes a newline in a path as \012 (seq_file_path); the query gives the raw name.
        text = text.Replace("\n", "\\012", StringComparison.Ordinal);
        string expected = mapping.Deleted ? mapping.Path + " (deleted)" : mapping.Path;
        bool same = arg.VmaStart == mapping.Start && arg.VmaEnd == mapping.End && protection == mapping.Protection && shared == mapping.Shared
            && arg.VmaOffset == mapping.Offset && arg.Inode == mapping.Inode
            && string.Equals($"{arg.DevMajor:x2}:{arg.DevMinor:x2}", mapping.Device, StringComparison.Ordinal)
            && string.Equals(text, expected, StringComparison.Ordinal);
        return same ? Result.Same : Result.Changed;
    }
}
