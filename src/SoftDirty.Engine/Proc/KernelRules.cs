using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using SoftDirty.Emulation;

using SoftDirty.Injection;

namespace SoftDirty;

/// <summary>
/// Measures the rules in which kernels differ by build configuration, boot option or sysfs setting, the
/// way <see cref="KernelProbe"/> measures features: map a region of our own (a PMD-aligned range with
/// its own page table: 2 MiB on 4 KiB pages, 32 MiB on 16 KiB), touch it, read pagemap or PAGEMAP_SCAN
/// back. No privilege is needed. The answers become <see cref="KernelFeatures.Rules"/> (Get-SoftDirtySupport)
/// and, with the kernel's version, the emulator profile of the running kernel (<see cref="HostProfile"/>,
/// New-EmulatedProcess -Kernel Host; refused where the base page is not the emulator's 4 KiB).
/// Settings (THP mode, vm.unprivileged_userfaultfd, swap areas) are read fresh on every call.
/// </summary>
internal static unsafe class KernelRules
{
    // Rule names: the KernelProfile property each one sets, where the emulator models it.
    public const string SoftDirty = nameof(KernelProfile.SoftDirtyEnabled);
    public const string PagemapScan = nameof(KernelProfile.HasPagemapScan);
    public const string UffdWriteProtectAsync = nameof(KernelProfile.HasUffdWriteProtectAsync);
    public const string UffdWriteProtectUnpopulated = "HasUffdWriteProtectUnpopulated";
    public const string UnprivilegedUserfaultfd = "UnprivilegedUserfaultfd";
    public const string GuardRegions = nameof(KernelProfile.HasGuardRegions);
    public const string Mseal = nameof(KernelProfile.HasMseal);
    public const string SharedZeroPage = nameof(KernelProfile.SharedZeroPage);
    public const string HugeZeroPage = nameof(KernelProfile.HugeZeroPage);
    public const string TransparentHugePages = nameof(KernelProfile.TransparentHugePages);
    public const string ThpOnFault = "ThpOnFault";
    public const string ScanWrittenWithoutPageTable = nameof(KernelProfile.ScanWrittenWithoutPageTable);
    public const string PagemapHugeZeroIsFile = nameof(KernelProfile.PagemapHugeZeroIsFile);
    public const string HugeZeroWriteAllocatesThp = nameof(KernelProfile.HugeZeroWriteAllocatesThp);
    public const string PfnVisible = "PfnVisible";
    public const string Swap = "Swap";

    private const string ThpEnabledPath = "/sys/kernel/mm/transparent_hugepage/enabled";
    private const string ThpZeroPagePath = "/sys/kernel/mm/transparent_hugepage/use_zero_page";
    private const string UnprivilegedUffdPath = "/proc/sys/vm/unprivileged_userfaultfd";
    private const string SwapsPath = "/proc/swaps";
    /// <summary>The PMD size of this kernel (2 MiB on 4 KiB pages, 32 MiB on 16 KiB): a smaller probe range never takes a THP.</summary>
    private static ulong HugeBytes => PageTableGeometry.HostTableSpan;
    private const ulong FlagBitsMask = ~((1UL << 55) - 1);   // pagemap flag bits, PFN/swap bits left out

    /// <summary>
    /// The emulator profile of the running kernel: the nearest release profile at or below its version
    /// (<see cref="KernelProfile.ForVersion"/>) with every rule set as measured. PlatformNotSupported off Linux.
    /// </summary>
    public static KernelProfile HostProfile()
    {
        ProcPageSource.EnsureLinux();
        PageTableGeometry.RequireEmulatedPageSize(Environment.SystemPageSize, "The Host kernel profile");
        var f = KernelProbe.Current;
        var rules = f.Rules;
        bool Is(string name, bool fallback) =>
            rules.FirstOrDefault(r => r.Name == name) is { } r ? r.Value == bool.TrueString : fallback;
        var release = ParseVersion(f.KernelRelease);
        var baseProfile = KernelProfile.ForVersion(release);
        return baseProfile with
        {
            HostRelease = f.KernelRelease,
            SoftDirtyEnabled = f.SoftDirty,
            HasPagemapScan = f.PagemapScan,
            HasUffdWriteProtectAsync = f.UffdWriteProtectAsync,
            HasGuardRegions = Is(GuardRegions, baseProfile.HasGuardRegions),
            HasMseal = Is(Mseal, baseProfile.HasMseal),   // 6.10 and 6.11 have it; their release profile (6.1) does not
            SharedZeroPage = Is(SharedZeroPage, baseProfile.SharedZeroPage),
            HugeZeroPage = Is(HugeZeroPage, baseProfile.HugeZeroPage),
            ScanWrittenWithoutPageTable = Is(ScanWrittenWithoutPageTable, baseProfile.ScanWrittenWithoutPageTable),
            // Measured where a MADV_HUGEPAGE read fault maps the huge zero page; else the release profile's.
            PagemapHugeZeroIsFile = Is(PagemapHugeZeroIsFile, baseProfile.PagemapHugeZeroIsFile),
            HugeZeroWriteAllocatesThp = Is(HugeZeroWriteAllocatesThp, baseProfile.HugeZeroWriteAllocatesThp),
            TransparentHugePages = ReadThpMode().Mode,   // a runtime setting: read now
        };
    }

    /// <summary>"6.18.0-1-amd64" → 6.18; 0.0 when there is no number.</summary>
    public static Version ParseVersion(string release)
    {
        var parts = (release ?? string.Empty).Split('.', '-', '+', '_');
        int major = parts.Length > 0 && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var a) ? a : 0;
        int minor = parts.Length > 1 && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var b) ? b : 0;
        return new Version(major, minor);
    }

    /// <summary>The THP mode in sysfs (the bracketed word), read now; Never when THP is not built in.</summary>
    public static (TransparentHugePageMode Mode, string Evidence) ReadThpMode()
    {
        try
        {
            var text = File.ReadAllText(ThpEnabledPath).Trim();
            int open = text.IndexOf('['), close = text.IndexOf(']');
            var word = open >= 0 && close > open ? text[(open + 1)..close] : text;
            var mode = word switch
            {
                "always" => TransparentHugePageMode.Always,
                "madvise" => TransparentHugePageMode.Madvise,
                _ => TransparentHugePageMode.Never,
            };
            return (mode, $"{ThpEnabledPath}: {text}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (TransparentHugePageMode.Never, $"{ThpEnabledPath} unreadable ({e.Message}): no THP (CONFIG_TRANSPARENT_HUGEPAGE off)");
        }
    }

    /// <summary>Measures every rule; <paramref name="features"/> gives those KernelProbe measured already.</summary>
    internal static IReadOnlyList<KernelRule> Measure(KernelFeatures features)
    {
        var rules = new List<KernelRule>
        {
            new(SoftDirty, B(features.SoftDirty), features.SoftDirtyReason ?? "clear_refs \"4\", then a write set bit 55 of pagemap"),
            new(PagemapScan, B(features.PagemapScan), features.PagemapScanReason ?? "the PAGEMAP_SCAN ioctl answered a scan of a probe page"),
            new(UffdWriteProtectAsync, B(features.UffdWriteProtectAsync), features.UffdWriteProtectAsyncReason ?? "UFFDIO_API accepted UFFD_FEATURE_WP_ASYNC|WP_UNPOPULATED"),
        };
        rules.AddRange(MeasureUserfaultfd());
        rules.Add(MeasureGuardRegions());
        rules.Add(MeasureMseal());
        rules.Add(new(PfnVisible, B(features.PfnVisible), features.PfnVisibleReason ?? "a present page's pagemap entry carried its page frame number"));
        rules.Add(MeasureSwap());
        var (mode, thpEvidence) = ReadThpMode();
        rules.Add(new(TransparentHugePages, mode.ToString(), thpEvidence));
        rules.AddRange(MeasureFaults(features.PagemapScan, features.PagemapScanCategories));
        return rules;
    }

    private static string B(bool value) => value ? bool.TrueString : bool.FalseString;

    private static string Hex(ulong raw) => "0x" + (raw & FlagBitsMask).ToString("x16", CultureInfo.InvariantCulture);

    // ---- userfaultfd ------------------------------------------------------------------------------------

    /// <summary>userfaultfd(flags): the descriptor (closed by the caller) or -errno.</summary>
    private static int OpenUffd(int extraFlags)
    {
        var nr = Native.UserfaultfdSyscall;
        if (nr < 0) return -Errno.ENOSYS;
        nint fd = Native.Syscall(nr, Native.O_CLOEXEC | Native.O_NONBLOCK | extraFlags, 0, 0);
        return fd < 0 ? -Marshal.GetLastPInvokeError() : (int)fd;
    }

    private static bool ApiAccepts(ulong features)
    {
        int fd = OpenUffd(UffdAbi.UserModeOnly);
        if (fd < 0) fd = OpenUffd(0);
        if (fd < 0) return false;
        try
        {
            var api = new UffdAbi.ApiArg { Api = UffdAbi.Api, Features = features };
            return Native.Ioctl(fd, UffdAbi.IoctlApi, &api) == 0;
        }
        finally { Native.Close(fd); }
    }

    private static IEnumerable<KernelRule> MeasureUserfaultfd()
    {
        string sysctl;
        try { sysctl = File.ReadAllText(UnprivilegedUffdPath).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { sysctl = "unreadable"; }
        int plain = OpenUffd(0), userOnly = OpenUffd(UffdAbi.UserModeOnly);
        if (plain >= 0) Native.Close(plain);
        if (userOnly >= 0) Native.Close(userOnly);
        string Result(int r) => r >= 0 ? "ok" : Errno.Name(-r);
        string value = plain >= 0 ? "Allowed" : userOnly >= 0 ? "UserModeOnly" : "Refused";
        yield return new(UnprivilegedUserfaultfd, value,
            $"vm.unprivileged_userfaultfd={sysctl}; userfaultfd(): {Result(plain)}, with UFFD_USER_MODE_ONLY: {Result(userOnly)}" +
            (value == "UserModeOnly" ? " (this caller needs UFFD_USER_MODE_ONLY)" : string.Empty));
        if (plain < 0 && userOnly < 0)
        {
            yield return new(UffdWriteProtectUnpopulated, bool.FalseString, "userfaultfd is refused to this caller");
            yield break;
        }
        bool async = ApiAccepts(UffdAbi.FeatureWpAsync);
        bool unpopulated = ApiAccepts(UffdAbi.FeatureWpUnpopulated);
        yield return new(UffdWriteProtectUnpopulated, B(unpopulated),
            $"UFFDIO_API: WP_ASYNC {(async ? "accepted" : "refused")}, WP_UNPOPULATED {(unpopulated ? "accepted" : "refused")}");
    }

    // ---- guard regions, swap ----------------------------------------------------------------------------

    private static KernelRule MeasureGuardRegions()
    {
        nuint size = (nuint)Environment.SystemPageSize;
        nint page = Native.Mmap(0, size, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_PRIVATE | Native.MAP_ANONYMOUS, -1, 0);
        if (page == Native.MAP_FAILED) return new(GuardRegions, bool.FalseString, "mmap of a probe page failed: " + Errno.Describe(Marshal.GetLastPInvokeError()));
        try
        {
            if (Native.Madvise(page, size, Native.MADV_GUARD_INSTALL) == 0)
                return new(GuardRegions, bool.TrueString, "madvise(MADV_GUARD_INSTALL) of a probe page succeeded");
            return new(GuardRegions, bool.FalseString, $"madvise(MADV_GUARD_INSTALL): {Errno.Name(Marshal.GetLastPInvokeError())} (guard regions came in 6.13)");
        }
        finally { Native.Munmap(page, size); }
    }

    /// <summary>
    /// mseal(2) with an unknown flag and nothing to seal: EINVAL where the call exists (flags are checked first), ENOSYS
    /// where it does not (before 6.10, or a 32-bit kernel). Nothing is sealed either way: a seal cannot be undone.
    /// </summary>
    private static KernelRule MeasureMseal()
    {
        nint r = Native.Syscall(Native.MsealSyscall, 0, 0, 1);
        int errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        bool has = errno != Errno.ENOSYS;
        return new(Mseal, B(has), $"mseal(0, 0, 1): {(r < 0 ? Errno.Name(errno) : "0")}{(has ? string.Empty : " (mseal came in 6.10)")}");
    }

    private static KernelRule MeasureSwap()
    {
        try
        {
            var areas = File.ReadAllLines(SwapsPath).Skip(1).Where(l => l.Trim().Length > 0).ToList();
            return new(Swap, B(areas.Count > 0), areas.Count > 0
                ? $"{SwapsPath}: {areas.Count} swap area(s): {string.Join("; ", areas.Select(a => a.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0]))}"
                : $"{SwapsPath} lists no swap area: pages are never swapped out (Swapped bit never set)");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new(Swap, bool.FalseString, $"{SwapsPath} unreadable: {e.Message}");
        }
    }

    // ---- faults: zero pages, THP, page tables ------------------------------------------------------------

    /// <summary>
    /// A PMD-aligned private anonymous read-write range whose page table is its own (2 MiB on 4 KiB pages, 32 MiB on
    /// 16 KiB): twice that reserved PROT_NONE, the aligned PMD inside mapped. Returns the aligned start and the reservation.
    /// </summary>
    private static (nint Range, nint Reservation) MapOwnRange()
    {
        nint raw = Native.Mmap(0, (nuint)(2 * HugeBytes), Native.PROT_NONE, Native.MAP_PRIVATE | Native.MAP_ANONYMOUS, -1, 0);
        if (raw == Native.MAP_FAILED)
            throw new EngineException(EngineError.ProcIOError, $"mmap of a {2 * HugeBytes >> 20} MiB probe reservation failed: " + Errno.Describe(Marshal.GetLastPInvokeError()));
        nint range = (nint)(((ulong)raw + HugeBytes - 1) & ~(HugeBytes - 1));
        if (Native.Mmap(range, (nuint)HugeBytes, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_PRIVATE | Native.MAP_ANONYMOUS | Native.MAP_FIXED, -1, 0) == Native.MAP_FAILED)
        {
            int e = Marshal.GetLastPInvokeError();
            Native.Munmap(raw, (nuint)(2 * HugeBytes));
            throw new EngineException(EngineError.ProcIOError, $"mmap of a {HugeBytes >> 20} MiB probe range failed: " + Errno.Describe(e));
        }
        return (range, raw);
    }

    private static void Unmap((nint Range, nint Reservation) r) => Native.Munmap(r.Reservation, (nuint)(2 * HugeBytes));

    private static List<KernelRule> MeasureFaults(bool pagemapScan, PageCategory scanCategories)
    {
        ProcPageSource.EnsureLinux();
        int pageSize = Environment.SystemPageSize;
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var entry = new PagemapEntry[1];
        PagemapEntry Entry(nint address)
        {
            self.ReadPagemap((ulong)address / (ulong)pageSize, entry);
            return entry[0];
        }
        PageCategory? Categories(nint address)
        {
            var req = new PagemapScanRequest { Start = (ulong)address, End = (ulong)address + (ulong)pageSize, ReturnMask = scanCategories };
            Span<PageRegion> regions = stackalloc PageRegion[2];
            int n = self.ScanPagemap(ref req, regions);
            return n > 0 ? regions[0].Categories : null;
        }
        var rules = new List<KernelRule>();

        // The shared zero page: a read fault of a base page (THP off for the range).
        var small = MapOwnRange();
        try
        {
            Native.Madvise(small.Range, (nuint)HugeBytes, Native.MADV_NOHUGEPAGE);
            _ = Volatile.Read(ref *(byte*)small.Range);
            var e = Entry(small.Range);
            string scan = pagemapScan ? $", PAGEMAP_SCAN categories {Categories(small.Range)}" : string.Empty;
            bool zero = e.Present && !e.Exclusive;
            rules.Add(new(SharedZeroPage, B(zero),
                $"read fault on private anonymous memory: pagemap {Hex(e.Raw)} ({(e.Present ? e.Exclusive ? "present, exclusive: a fresh page" : "present, not exclusive: the zero page" : "not present")}){scan}"));

            // WRITTEN without a page table: scan a never-touched page of a range with no page table, then
            // again after a fault elsewhere in its page table's range made one.
            if (pagemapScan)
            {
                var fresh = MapOwnRange();
                try
                {
                    Native.Madvise(fresh.Range, (nuint)HugeBytes, Native.MADV_NOHUGEPAGE);
                    var before = Categories(fresh.Range) ?? PageCategory.None;
                    Volatile.Write(ref *(byte*)(fresh.Range + (nint)HugeBytes - pageSize), (byte)1);
                    var after = Categories(fresh.Range) ?? PageCategory.None;
                    rules.Add(new(ScanWrittenWithoutPageTable, B((before & PageCategory.Written) != 0),
                        $"never-touched page, no page table: categories 0x{(ulong)before:x} ({before}); after a write elsewhere in its {HugeBytes >> 20} MiB page-table range: 0x{(ulong)after:x} ({after})"));
                }
                finally { Unmap(fresh); }
            }
            else rules.Add(new(ScanWrittenWithoutPageTable, bool.FalseString, "no PAGEMAP_SCAN to ask"));
        }
        finally { Unmap(small); }

        // THP: a MADV_HUGEPAGE write fault of an aligned PMD range, then a read fault (huge zero page?).
        var (mode, _) = ReadThpMode();
        bool thpWrite = false;
        string writeEvidence;
        var w = MapOwnRange();
        try
        {
            if (Native.Madvise(w.Range, (nuint)HugeBytes, Native.MADV_HUGEPAGE) != 0)
                writeEvidence = $"madvise(MADV_HUGEPAGE): {Errno.Name(Marshal.GetLastPInvokeError())}";
            else
            {
                Volatile.Write(ref *(byte*)w.Range, (byte)1);
                var neighbour = Entry(w.Range + pageSize);
                thpWrite = neighbour.Present;
                writeEvidence = $"THP mode {mode}; a MADV_HUGEPAGE write fault of an aligned {HugeBytes >> 20} MiB range: the next page {(thpWrite ? $"is present (one {HugeBytes >> 20} MiB page)" : $"is not present ({pageSize / 1024} KiB pages)")}";
            }
        }
        finally { Unmap(w); }
        rules.Add(new(ThpOnFault, B(thpWrite), writeEvidence));

        string sysfsZero;
        try { sysfsZero = File.ReadAllText(ThpZeroPagePath).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { sysfsZero = "unreadable"; }
        if (!thpWrite)
        {
            rules.Add(new(HugeZeroPage, B(sysfsZero == "1"), $"no THP fault to observe; {ThpZeroPagePath}: {sysfsZero}"));
            return rules;
        }
        var r = MapOwnRange();
        try
        {
            Native.Madvise(r.Range, (nuint)HugeBytes, Native.MADV_HUGEPAGE);
            _ = Volatile.Read(ref *(byte*)r.Range);
            var neighbour = Entry(r.Range + pageSize);
            bool huge = neighbour.Present;
            bool zero = huge && (!neighbour.Exclusive || neighbour.FileOrSharedAnon);
            rules.Add(new(HugeZeroPage, B(zero),
                $"a MADV_HUGEPAGE read fault of an aligned {HugeBytes >> 20} MiB range: the next page {Hex(neighbour.Raw)} " +
                (huge ? zero ? "(the huge zero page)" : "(present, exclusive: a fresh THP)" : $"(not present: {pageSize / 1024} KiB pages)") +
                $"; {ThpZeroPagePath}: {sysfsZero}"));
            if (zero)
            {
                // The huge zero page as pagemap shows it, then a write to another of its pages: a fresh THP (the
                // neighbour present and exclusive, 6.18+) or a split into zero-page PTEs (the neighbour shared).
                rules.Add(new(PagemapHugeZeroIsFile, B(neighbour.FileOrSharedAnon),
                    $"the huge zero page in pagemap: {Hex(neighbour.Raw)} ({(neighbour.FileOrSharedAnon ? "FILE" : "not FILE")})"));
                Volatile.Write(ref *(byte*)(r.Range + 7 * (nint)pageSize), (byte)1);
                var after = Entry(r.Range + pageSize);
                bool allocates = after.Present && after.Exclusive;
                rules.Add(new(HugeZeroWriteAllocatesThp, B(allocates),
                    $"a write to another page of the huge zero page, then the next page {Hex(after.Raw)} " +
                    (allocates ? "(present, exclusive: a fresh THP replaced it)" : "(not exclusive: split into zero-page PTEs)")));
            }
        }
        finally { Unmap(r); }
        return rules;
    }
}
