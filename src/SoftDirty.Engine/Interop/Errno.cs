using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>
/// Linux errno values the engine tells apart (asm-generic/errno-base.h, errno.h): the one place they are
/// defined, for the /proc backend, the emulator, images and injection alike.
/// </summary>
internal static class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, EBADF = 9, EAGAIN = 11, ENOMEM = 12, EACCES = 13,
        EFAULT = 14, EBUSY = 16, EEXIST = 17, EINVAL = 22, ENOTTY = 25, EFBIG = 27, ENOSPC = 28, ERANGE = 34, ENAMETOOLONG = 36, ENOSYS = 38, ELOOP = 40,
        EOVERFLOW = 75, EOPNOTSUPP = 95, ETIMEDOUT = 110;

    /// <summary>A read-only file system (EROFS) and a disk quota exceeded (EDQUOT): what a write may meet besides ENOSPC and EFBIG.</summary>
    public const int EROFS = 30, EDQUOT = 122;

    /// <summary>Too many open files in the system (ENFILE) and in this process (EMFILE).</summary>
    public const int ENFILE = 23, EMFILE = 24;

    /// <summary>Whether <paramref name="errno"/> says the system refused a resource (descriptors, memory), not that the file is wrong.</summary>
    public static bool IsResourceLimit(int errno) => errno is ENFILE or EMFILE or ENOMEM;

    /// <summary>
    /// The kernel's own restart codes (include/linux/errno.h): user space never sees them from a system call, but a
    /// tracer does, in the return register of a syscall a signal interrupted.
    /// </summary>
    public const int ERESTARTSYS = 512, ERESTARTNOINTR = 513, ERESTARTNOHAND = 514, ERESTART_RESTARTBLOCK = 516;

    /// <summary>The symbolic name of an errno ("EINVAL"), or "errno N" for one not listed here.</summary>
    public static string Name(int errno) => errno switch
    {
        EPERM => "EPERM", ENOENT => "ENOENT", ESRCH => "ESRCH", EINTR => "EINTR", EIO => "EIO", EBADF => "EBADF", EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM", EACCES => "EACCES", EFAULT => "EFAULT", EBUSY => "EBUSY", EEXIST => "EEXIST",
        EINVAL => "EINVAL", ENOTTY => "ENOTTY", EFBIG => "EFBIG", ENOSPC => "ENOSPC", ERANGE => "ERANGE", ENOSYS => "ENOSYS", ELOOP => "ELOOP",
        EOVERFLOW => "EOVERFLOW", EOPNOTSUPP => "EOPNOTSUPP", ETIMEDOUT => "ETIMEDOUT",
        ENXIO => "ENXIO", ENFILE => "ENFILE", EMFILE => "EMFILE", ENAMETOOLONG => "ENAMETOOLONG", EROFS => "EROFS", EDQUOT => "EDQUOT",
        _ => "errno " + errno,
    };

    /// <summary>The name and the C library's message ("EINVAL: Invalid argument").</summary>
    public static string Describe(int errno) => $"{Name(errno)}: {Marshal.GetPInvokeErrorMessage(errno)}";
}
