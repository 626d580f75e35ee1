using System;
using System.Runtime.InteropServices;
using SoftDirty.Injection;

namespace SoftDirty.Tracking;

/// <summary>A userfaultfd of this process with async write-protect (WP_ASYNC | WP_UNPOPULATED).</summary>
internal sealed unsafe class Userfaultfd : IDisposable
{
    private int _fd;

    private Userfaultfd(int fd) => _fd = fd;

    public static Userfaultfd Create()
    {
        nint fd = Native.Syscall(Native.UserfaultfdSyscall, Native.O_CLOEXEC | Native.O_NONBLOCK | UffdAbi.UserModeOnly, 0, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw new EngineException(EngineError.WriteProtectNotSupported, "userfaultfd failed: " + Errno.Describe(e), Environment.ProcessId, e);
        }
        var api = new UffdAbi.ApiArg { Api = UffdAbi.Api, Features = UffdAbi.FeatureWpAsync | UffdAbi.FeatureWpUnpopulated };
        if (Native.Ioctl((int)fd, UffdAbi.IoctlApi, &api) < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            Native.Close((int)fd);
            throw new EngineException(EngineError.WriteProtectNotSupported, "UFFDIO_API refused WP_ASYNC|WP_UNPOPULATED: " + Errno.Describe(e), Environment.ProcessId, e);
        }
        return new Userfaultfd((int)fd);
    }

    /// <summary>
    /// UFFDIO_REGISTER MODE_WP; false where the kernel refuses the range (EINVAL: VM_PFNMAP, VM_IO and the like).
    /// WriteTrackingInUse where another userfaultfd of this process has it (EBUSY: another watch or migration of this
    /// PowerShell running at once, or the process's own): that tracker would see none of its writes, and say nothing.
    /// </summary>
    public bool Register(ulong start, ulong end)
    {
        var arg = new UffdAbi.RegisterArg { Start = start, Len = end - start, Mode = UffdAbi.ModeWp };
        if (Native.Ioctl(_fd, UffdAbi.IoctlRegister, &arg) == 0) return true;
        int e = Marshal.GetLastPInvokeError();
        if (e == Errno.EBUSY)
            throw new EngineException(EngineError.WriteTrackingInUse,
                $"0x{start:x}-0x{end:x} of this process is registered for userfaultfd write-protect by another tracking (another Watch-DirtyPage or migration of this PowerShell running at once): each one's resets would hide writes from the other. Wait for it, or use -Method Hash.", Environment.ProcessId, e);
        if (e == Errno.EINVAL || e == Errno.ENOMEM || e == Errno.EPERM) return false;
        throw new EngineException(EngineError.ProcIOError, $"UFFDIO_REGISTER of 0x{start:x}-0x{end:x} failed: {Errno.Describe(e)}", Environment.ProcessId, e);
    }

    // Closing the userfaultfd unregisters every range and drops the write-protection.
    public void Dispose()
    {
        if (_fd >= 0) { Native.Close(_fd); _fd = -1; }
    }
}
