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
    public const uint S_IWOTH = 0x2, S_ISVTX = 0x200;

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

    [LibraryImport(Libc, EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, byte* buffer);

    /// <summary>What lstat says of a path (struct statx: uid at 20, mode at 28, size at 40); null where it does not exist.</summary>
    public readonly record struct PathStatus(uint Uid, uint Mode, ulong Size)
    {
        public uint Type => Mode & S_IFMT;
        public uint Permissions => Mode & 0xFFF;
    }

    public const int AT_EMPTY_PATH = 0x1000;

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
        return new PathStatus(*(uint*)(b + 20), *(ushort*)(b + 28), *(ulong*)(b + 40));
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
        return new PathStatus(*(uint*)(b + 20), *(ushort*)(b + 28), *(ulong*)(b + 40));
    }
}
