using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>The libc calls the /proc backend needs. Linux only.</summary>
internal static unsafe partial class Native
{
    private const string Libc = "libc";

    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CLOEXEC = 0x80000, O_NONBLOCK = 0x800, O_NOCTTY = 0x100;
    /// <summary>O_PATH (010000000 on x86-64 and arm64): a descriptor that names a file without opening it (no driver's open runs).</summary>
    public const int O_PATH = 0x200000;
    public const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
    public const int MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20;
    public static readonly nint MAP_FAILED = -1;

    [LibraryImport(Libc, EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial int Open(string path, int flags);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "pread64", SetLastError = true)]
    public static partial nint Pread(int fd, void* buf, nuint count, long offset);

    /// <summary>lseek(2) whences for the data and holes of a file (Linux 3.1).</summary>
    public const int SEEK_DATA = 3, SEEK_HOLE = 4;

    [LibraryImport(Libc, EntryPoint = "lseek64", SetLastError = true)]
    private static partial long Lseek(int fd, long offset, int whence);

    /// <summary>lseek(2) of an open file; -1 with the errno in Marshal.GetLastPInvokeError.</summary>
    public static long Lseek(Microsoft.Win32.SafeHandles.SafeFileHandle file, long offset, int whence) => Lseek((int)file.DangerousGetHandle(), offset, whence);

    [LibraryImport(Libc, EntryPoint = "pwrite64", SetLastError = true)]
    public static partial nint Pwrite(int fd, void* buf, nuint count, long offset);

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, void* buf, nuint count);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, void* buf, nuint count);

    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    public static partial int Ioctl(int fd, nuint request, void* arg);

    [LibraryImport(Libc, EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport(Libc, EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    public static partial nint Syscall(nint number, nint a1, nint a2, nint a3);

    /// <summary>mseal(2): one number on every architecture (the generic table, 6.10).</summary>
    public const nint MsealSyscall = 462;

    public const int MADV_DONTNEED = 4, MADV_HUGEPAGE = 14, MADV_NOHUGEPAGE = 15, MADV_GUARD_INSTALL = 102;

    [LibraryImport(Libc, EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);

    public const uint SYNC_FILE_RANGE_WRITE = 2;

    [LibraryImport(Libc, EntryPoint = "sync_file_range", SetLastError = true)]
    public static partial int SyncFileRange(int fd, long offset, long nbytes, uint flags);

    [LibraryImport(Libc, EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int sig);

    /// <summary>__NR_userfaultfd for this architecture, or -1 where unknown.</summary>
    public static nint UserfaultfdSyscall => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 323,
        Architecture.Arm64 => 282,
        Architecture.X86 => 374,
        Architecture.Arm => 388,
        _ => -1,
    };

    /// <summary>__NR_kcmp for this architecture, or -1 where unknown.</summary>
    public static nint KcmpSyscall => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => 312,
        Architecture.Arm64 => 272,
        Architecture.X86 => 349,
        Architecture.Arm => 378,
        _ => -1,
    };

    /// <summary>kcmp's KCMP_VM (include/uapi/linux/kcmp.h): whether two processes share one address space (mm).</summary>
    public const nint KCMP_VM = 1;

    // ---- process_vm_readv (memory images, the Hash method): many pages of another process in one call ----

    /// <summary>IOV_MAX: the most iovec elements one process_vm_readv takes on either side.</summary>
    public const int IovMax = 1024;

    [LibraryImport(Libc, EntryPoint = "process_vm_readv", SetLastError = true)]
    public static partial nint ProcessVmReadv(int pid, Injection.Ptrace.IoVec* localIov, nuint localCount, Injection.Ptrace.IoVec* remoteIov, nuint remoteCount, nuint flags);

    /// <summary>mprotect (tests of the read fallback: a page without read permission that /proc/PID/mem still reads).</summary>
    [LibraryImport(Libc, EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint addr, nuint length, int prot);
}
