using System.Runtime.InteropServices;

namespace SoftDirty.Images;

/// <summary>The libc calls for creating files safely (no symlink followed, nothing reused) and asking who owns a path.</summary>
internal static unsafe partial class FileNative
{
    private const string Libc = "libc";
    public const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, STATX_BASIC_STATS = 0x7ff;
    public const int O_WRONLY = 1, O_CREAT = 0x40, O_EXCL = 0x80, O_CLOEXEC = 0x80000, O_NONBLOCK = 0x800;
    /// <summary>O_NOFOLLOW and O_DIRECTORY differ on arm (asm/fcntl.h).</summary>
    public static int O_NOFOLLOW => IsArm ? 0x8000 : 0x20000;
    public static int O_DIRECTORY => IsArm ? 0x4000 : 0x10000;
    private static bool IsArm => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm;

    /// <summary>File type bits of st_mode (S_IFMT) and the types the module tells apart.</summary>
    public const uint S_IFMT = 0xF000, S_IFDIR = 0x4000, S_IFREG = 0x8000, S_IFLNK = 0xA000;
    /// <summary>Permission bits: writable by others; the sticky bit (only an entry's owner may rename or remove it).</summary>
    public const uint S_IWOTH = 0x2, S_IWGRP = 0x10, S_ISVTX = 0x200;

    /// <summary>O_PATH: a descriptor that names a directory for the *at calls without the right to read it.</summary>
    public const int O_RDONLY = 0, O_PATH = 0x200000;
    /// <summary>unlinkat's flag for a directory; renameat2's "fail with EEXIST where the new name exists".</summary>
    public const int AT_REMOVEDIR = 0x200, RENAME_NOREPLACE = 1;
    /// <summary>The errno values the relative calls tell apart (asm-generic/errno-base.h, errno.h).</summary>
    public const int ENXIO = 6, EXDEV = 18, ENOTDIR = 20, EISDIR = 21, ENOTEMPTY = 39;
    /// <summary>The most links one path may lead through (the kernel's MAXSYMLINKS).</summary>
    public const int MaxSymlinks = 40;

    [LibraryImport(Libc, EntryPoint = "openat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int OpenAt(int dirfd, string name, int flags, uint mode);

    [LibraryImport(Libc, EntryPoint = "mkdirat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int MkdirAt(int dirfd, string name, uint mode);

    [LibraryImport(Libc, EntryPoint = "renameat2", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int RenameAt2(int olddirfd, string oldName, int newdirfd, string newName, uint flags);

    [LibraryImport(Libc, EntryPoint = "unlinkat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int UnlinkAt(int dirfd, string name, int flags);

    [LibraryImport(Libc, EntryPoint = "readlinkat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint ReadLinkAt(int dirfd, string name, byte* buffer, nuint size);

    /// <summary>RLIMIT_FSIZE (asm-generic/resource.h, the same on x86-64 and arm64) and RLIM_INFINITY.</summary>
    public const int RLIMIT_FSIZE = 1;
    public const ulong RLIM_INFINITY = ulong.MaxValue;

    /// <summary>getrlimit: <paramref name="limits"/> gets the soft limit, then the hard one.</summary>
    [LibraryImport(Libc, EntryPoint = "getrlimit", SetLastError = true)]
    public static partial int GetRlimit(int resource, ulong* limits);

    [LibraryImport(Libc, EntryPoint = "fchmod", SetLastError = true)]
    public static partial int Fchmod(int fd, uint mode);

    [LibraryImport(Libc, EntryPoint = "fchown", SetLastError = true)]
    public static partial int Fchown(int fd, uint owner, uint group);

    [LibraryImport(Libc, EntryPoint = "chmod", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Chmod(string path, uint mode);

    /// <summary>lstat of <paramref name="name"/> in the directory <paramref name="dirfd"/> (a link is described, not followed).</summary>
    public static PathStatus? LstatAt(int dirfd, string name, out int errno)
    {
        const int StatxSize = 256;
        byte* b = stackalloc byte[StatxSize];
        errno = 0;
        if (Statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, b) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        return Status(b);
    }

    [LibraryImport(Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags, uint mode);

    [LibraryImport(Libc, EntryPoint = "mkdir", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Mkdir(string path, uint mode);

    [LibraryImport(Libc, EntryPoint = "rename", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Rename(string from, string to);

    [LibraryImport(Libc, EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "geteuid")]
    public static partial uint Geteuid();

    [LibraryImport(Libc, EntryPoint = "getpwuid_r")]
    private static partial int GetpwuidR(uint uid, byte* pwd, byte* buffer, nuint length, byte** result);

    /// <summary>
    /// The home directory the user database gives <paramref name="uid"/> (pw_dir of struct passwd, after two pointers,
    /// uid, gid and one pointer on 64-bit Linux: offset 32); null where it has none.
    /// </summary>
    public static string? PasswdHome(uint uid)
    {
        const int PasswdSize = 48, HomeOffset = 32, BufferSize = 16 << 10;
        byte* pwd = stackalloc byte[PasswdSize];
        byte[] buffer = new byte[BufferSize];
        byte* result = null;
        fixed (byte* b = buffer)
        {
            if (GetpwuidR(uid, pwd, b, (nuint)buffer.Length, &result) != 0 || result is null) return null;
            return Marshal.PtrToStringUTF8(*(nint*)(pwd + HomeOffset));
        }
    }

    [LibraryImport(Libc, EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    /// <summary>
    /// What lstat says of a path (struct statx: uid at 20, mode at 28, size at 40), and whether it is the root of a mount
    /// (STATX_ATTR_MOUNT_ROOT, Linux 5.8+, in stx_attributes at 8 where stx_attributes_mask at 56 has it; false where
    /// the kernel does not say); null where it does not exist.
    /// </summary>
    public readonly record struct PathStatus(uint Uid, uint Mode, ulong Size, bool MountRoot = false)
    {
        /// <summary>stx_ino (at 32) and the device as /proc/PID/maps writes it ("major:minor" in hex: stx_dev_major at 136, stx_dev_minor at 140).</summary>
        public ulong Inode { get; init; }
        public string Device { get; init; } = "";
        /// <summary>stx_nlink (at 16): how many names the file has.</summary>
        public uint Links { get; init; }

        public uint Type => Mode & S_IFMT;
        public uint Permissions => Mode & 0xFFF;
    }

    public const int AT_EMPTY_PATH = 0x1000;

    /// <summary>STATX_ATTR_MOUNT_ROOT, a bit of stx_attributes.</summary>
    private const ulong StatxAttrMountRoot = 0x2000;

    /// <summary>The <see cref="PathStatus"/> of a filled statx buffer.</summary>
    private static PathStatus Status(byte* b)
    {
        ulong attributes = *(ulong*)(b + 8), known = *(ulong*)(b + 56);
        return new PathStatus(*(uint*)(b + 20), *(ushort*)(b + 28), *(ulong*)(b + 40), (known & attributes & StatxAttrMountRoot) != 0)
        {
            Inode = *(ulong*)(b + 32),
            Links = *(uint*)(b + 16),
            Device = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{*(uint*)(b + 136):x2}:{*(uint*)(b + 140):x2}"),
        };
    }

    /// <summary>fstat of an open descriptor.</summary>
    public static PathStatus? Fstat(int fd, out int errno)
    {
        const int StatxSize = 256;
        byte* b = stackalloc byte[StatxSize];
        errno = 0;
        if (Statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, b) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        return Status(b);
    }

    /// <summary>lstat of <paramref name="path"/> (a symlink is described, not followed); null with ENOENT/ENOTDIR, else the errno in <paramref name="errno"/>.</summary>
    public static PathStatus? Lstat(string path, out int errno) => StatxOf(path, AT_SYMLINK_NOFOLLOW, out errno);

    /// <summary>stat of <paramref name="path"/> (links followed); null on failure, with the errno in <paramref name="errno"/>.</summary>
    public static PathStatus? Stat(string path, out int errno) => StatxOf(path, 0, out errno);

    private static PathStatus? StatxOf(string path, int flags, out int errno)
    {
        const int StatxSize = 256;
        byte* b = stackalloc byte[StatxSize];
        errno = 0;
        if (Statx(AT_FDCWD, path, flags, STATX_BASIC_STATS, b) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            return null;
        }
        return Status(b);
    }
}
