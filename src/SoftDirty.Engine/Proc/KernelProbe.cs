using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;

using SoftDirty.Injection;

namespace SoftDirty;

/// <summary>
/// Measures what the running kernel supports, as CRIU's kerndat does: no config file or version number is
/// trusted. Soft-dirty: map a page, clear_refs "4" on ourselves, write the page, read bit 55.
/// </summary>
internal static unsafe class KernelProbe
{
    private static readonly object Gate = new();
    private static KernelFeatures? _current;

    /// <summary>The cached probe of this kernel (probed on first use).</summary>
    public static KernelFeatures Current
    {
        get
        {
            lock (Gate) return _current ??= Probe(default);
        }
    }

    /// <summary>
    /// The cached probe, probed on first use; <paramref name="cancel"/> ends a wait for this process's soft-dirty lock (a
    /// command of another runspace that holds it, a watch of this PowerShell) with OperationCanceledException.
    /// </summary>
    public static KernelFeatures Get(CancellationToken cancel)
    {
        lock (Gate) if (_current is { } known) return known;
        var f = Probe(cancel); // outside the gate: a wait for the lock here keeps no other caller waiting where Ctrl+C cannot reach
        lock (Gate) return _current ??= f;
    }

    /// <summary>Probes again and replaces the cached answer (<paramref name="cancel"/> as for <see cref="Get"/>).</summary>
    public static KernelFeatures Refresh(CancellationToken cancel = default)
    {
        var f = Probe(cancel);
        lock (Gate) _current = f;
        return f;
    }

    public static string ReadKernelRelease()
    {
        try { return File.ReadAllText("/proc/sys/kernel/osrelease").Trim(); }
        catch (Exception) { return RuntimeInformation.OSDescription; }
    }

    private static KernelFeatures Probe(CancellationToken cancel)
    {
        ProcPageSource.EnsureLinux();
        var release = ReadKernelRelease();
        int pageSize = Environment.SystemPageSize;
        nint page = Native.Mmap(0, (nuint)pageSize, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_PRIVATE | Native.MAP_ANONYMOUS, -1, 0);
        if (page == Native.MAP_FAILED)
            throw new EngineException(EngineError.ProcIOError, "mmap of a probe page failed: " + Errno.Describe(Marshal.GetLastPInvokeError()));
        try
        {
            ((byte*)page)[0] = 1;
            using var self = ProcPageSource.Open(Environment.ProcessId);
            ulong pageIndex = (ulong)page / (ulong)pageSize;
            Span<PagemapEntry> entry = stackalloc PagemapEntry[1];

            // PFN visibility: a present page's frame reads as zero without CAP_SYS_ADMIN.
            self.ReadPagemap(pageIndex, entry);
            bool pfnVisible = entry[0].Present && entry[0].Frame != 0;
            string? pfnReason = pfnVisible ? null
                : "Page frame numbers read as 0: since Linux 4.2 only an opener with CAP_SYS_ADMIN sees them (run as root).";

            // Soft-dirty, as CRIU probes it.
            bool softDirty = false;
            string? sdReason = null;
            try
            {
                // The probe clears the bits of this whole process: a new epoch of it is recorded first, under its lock, as every clear
                // the module makes is (ClearRefs itself would ask for the features being probed). Unrecorded, Get-SoftDirtySupport
                // -Refresh in one runspace took the bits a soft-dirty watch of this PowerShell in another counted on, without a word.
                using (Tracking.TrackingEpoch.Lock(self, cancel))
                {
                    Tracking.TrackingEpoch.Record(self);
                    self.WriteClearRefs("4\n"u8);
                }
                ((byte*)page)[0] = 2;
                self.ReadPagemap(pageIndex, entry);
                softDirty = entry[0].SoftDirty;
                if (!softDirty)
                    sdReason = $"Kernel {release} accepts clear_refs \"4\" but a write leaves bit 55 of pagemap clear: it was built without CONFIG_MEM_SOFT_DIRTY (or the architecture lacks it). " +
                               "Use the Hash or WriteProtect tracking methods, or an emulated process.";
            }
            catch (EngineException ex)
            {
                sdReason = "Writing \"4\" to /proc/self/clear_refs (a clear recorded as every clear of the module is) failed: " + ex.Message;
            }

            var (scan, scanCategories, scanReason) = ProbePagemapScan(self, (ulong)page, pageSize);

            var (uffd, uffdReason) = ProbeUffdWriteProtectAsync(release);
            var features = new KernelFeatures
            {
                KernelRelease = release,
                SoftDirty = softDirty,
                SoftDirtyReason = sdReason,
                PagemapScan = scan,
                PagemapScanReason = scanReason,
                PagemapScanCategories = scanCategories,
                UffdWriteProtectAsync = uffd,
                UffdWriteProtectAsyncReason = uffdReason,
                PfnVisible = pfnVisible,
                PfnVisibleReason = pfnReason,
            };
            return features.WithRules(KernelRules.Measure(features));
        }
        finally
        {
            Native.Munmap(page, (nuint)pageSize);
        }
    }

    /// <summary>
    /// PAGEMAP_SCAN over one page of <paramref name="self"/>: whether the ioctl answers, the categories it takes, and why
    /// not. Asked with every category first, then, where that is EINVAL, without PAGE_IS_GUARD: a kernel of 6.7 to 6.14
    /// (Debian's 6.12) knows no guard regions and refuses the bit, and was taken for one without PAGEMAP_SCAN at all.
    /// </summary>
    internal static (bool Scan, PageCategory Categories, string? Reason) ProbePagemapScan(IPageSource self, ulong page, int pageSize)
    {
        Span<PageRegion> regions = stackalloc PageRegion[4];
        var categories = PagemapScanRequest.ValidCategories;
        while (true)
        {
            try
            {
                var req = new PagemapScanRequest { Start = page, End = page + (ulong)pageSize, CategoryAnyOf = categories, ReturnMask = categories };
                self.ScanPagemap(ref req, regions);
                return (true, categories, null);
            }
            catch (EngineException ex) when (ex.Errno == Errno.EINVAL && categories == PagemapScanRequest.ValidCategories)
            {
                categories = PagemapScanRequest.CategoriesBeforeGuard;
            }
            catch (EngineException ex)
            {
                return (false, PagemapScanRequest.ValidCategories,
                    ex.Error == EngineError.PagemapScanNotSupported ? ex.Message : "PAGEMAP_SCAN failed: " + ex.Message);
            }
        }
    }

    private static (bool, string?) ProbeUffdWriteProtectAsync(string release)
    {
        var nr = Native.UserfaultfdSyscall;
        if (nr < 0) return (false, $"userfaultfd's system call number is not known for {RuntimeInformation.ProcessArchitecture}.");
        // UFFD_USER_MODE_ONLY (5.11+) is what vm.unprivileged_userfaultfd=0 still allows an unprivileged
        // caller; a kernel before it refuses the flag (EINVAL), so try without.
        nint fd = Native.Syscall(nr, Native.O_CLOEXEC | Native.O_NONBLOCK | UffdAbi.UserModeOnly, 0, 0);
        if (fd < 0 && Marshal.GetLastPInvokeError() == Errno.EINVAL)
            fd = Native.Syscall(nr, Native.O_CLOEXEC | Native.O_NONBLOCK, 0, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            return (false, e switch
            {
                Errno.ENOSYS => $"Kernel {release} has no userfaultfd (CONFIG_USERFAULTFD off).",
                Errno.EPERM => "userfaultfd is refused for this user (vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE).",
                _ => "userfaultfd failed: " + Errno.Describe(e),
            });
        }
        try
        {
            var api = new UffdAbi.ApiArg { Api = UffdAbi.Api, Features = UffdAbi.FeatureWpAsync | UffdAbi.FeatureWpUnpopulated };
            if (Native.Ioctl((int)fd, UffdAbi.IoctlApi, &api) < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                return (false, $"UFFDIO_API refused WP_ASYNC|WP_UNPOPULATED ({Errno.Name(e)}): kernel {release} predates 6.7 or lacks CONFIG_PTE_MARKER_UFFD_WP.");
            }
            return (true, null);
        }
        finally { Native.Close((int)fd); }
    }
}
