using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>The PAGEMAP_SCAN ioctl on an open pagemap file descriptor (6.7+).</summary>
internal static unsafe class PagemapScanIoctl
{
    [StructLayout(LayoutKind.Sequential)]
    private struct PmScanArg
    {
        public ulong Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages, CategoryInverted, CategoryMask, CategoryAnyOf, ReturnMask;
    }

    public static int Scan(int fd, ref PagemapScanRequest request, Span<PageRegion> regions, object? target, Func<bool>? processGone = null)
    {
        fixed (PageRegion* vec = regions)
        {
            var arg = new PmScanArg
            {
                Size = PagemapScanRequest.ArgSize,
                Flags = (ulong)request.Flags,
                Start = request.Start,
                End = request.End,
                Vec = (ulong)vec,
                VecLen = (ulong)regions.Length,
                MaxPages = request.MaxPages,
                CategoryInverted = (ulong)request.CategoryInverted,
                CategoryMask = (ulong)request.CategoryMask,
                CategoryAnyOf = (ulong)request.CategoryAnyOf,
                ReturnMask = (ulong)request.ReturnMask,
            };
            while (true)
            {
                int rc = Native.Ioctl(fd, PagemapScanRequest.IoctlRequest, &arg);
                if (rc >= 0)
                {
                    request.WalkEnd = arg.WalkEnd;
                    return rc;
                }
                int e = Marshal.GetLastPInvokeError();
                if (e == Errno.EINTR) continue;
                if (e == Errno.ENOTTY || e == Errno.ENOSYS || e == Errno.EOPNOTSUPP)
                    throw new EngineException(EngineError.PagemapScanNotSupported,
                        $"This kernel ({KernelProbe.ReadKernelRelease()}) has no PAGEMAP_SCAN ioctl ({Errno.Name(e)}); it came in Linux 6.7.", target, e);
                if (e == Errno.ESRCH || (processGone?.Invoke() ?? false))
                    throw new EngineException(EngineError.ProcessExited, $"Process {target} exited during PAGEMAP_SCAN.", target, e);
                if (e == Errno.EPERM)
                    throw new EngineException(EngineError.PermissionDenied,
                        $"PAGEMAP_SCAN refused (EPERM): a VMA in 0x{request.Start:x}-0x{request.End:x} is not registered for userfaultfd async write-protect, which CheckWriteProtectAsync requires.", target, e);
                throw new EngineException(EngineError.InvalidArgument,
                    $"PAGEMAP_SCAN of 0x{request.Start:x}-0x{request.End:x} failed: {Errno.Describe(e)}.", target, e);
            }
        }
    }
}
