using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// ProcPageSource and KernelProbe against this machine's real /proc (Linux; skipped with the reason
/// elsewhere). Memory comes from private mmaps with MADV_NOHUGEPAGE, so the tests control which pages are
/// touched and each touch faults in one page whatever the THP mode.
/// </summary>
public unsafe class ProcPageSourceTests
{
    private static readonly int Ps = Environment.SystemPageSize;

    /// <summary>
    /// A private mapping whose pages fault in one at a time whatever the THP mode: MADV_NOHUGEPAGE keeps
    /// THP and mTHP faults out of it (and keeps it from merging with a neighbour), so one touched page is
    /// one present page. Without THP in the kernel there is nothing to keep out.
    /// </summary>
    private sealed class Region : IDisposable
    {
        public Region(int pages, int flags = Native.MAP_PRIVATE | Native.MAP_ANONYMOUS, int prot = Native.PROT_READ | Native.PROT_WRITE)
        {
            Length = (nuint)(pages * Ps);
            Address = Native.Mmap(0, Length, prot, flags, -1, 0);
            Assert.NotEqual((nint)(-1), Address);
            if (Directory.Exists("/sys/kernel/mm/transparent_hugepage"))
                Assert.True(Native.Madvise(Address, Length, Native.MADV_NOHUGEPAGE) == 0, "madvise(MADV_NOHUGEPAGE): errno " + Marshal.GetLastPInvokeError());
        }
        public nint Address { get; }
        public nuint Length { get; }
        public ulong Start => (ulong)Address;
        public ulong End => (ulong)Address + Length;
        public void Touch(int page) => ((byte*)Address)[page * Ps] = 1;
        public void Dispose() => Native.Munmap(Address, Length);
    }

    private static PagemapEntry ReadOne(ProcPageSource src, ulong address)
    {
        Span<PagemapEntry> e = stackalloc PagemapEntry[1];
        Assert.Equal(1, src.ReadPagemap(address / (ulong)Ps, e));
        return e[0];
    }

    [HostFact]
    public void TouchedAlignedAllocReadsPresent()
    {
        void* p = NativeMemory.AlignedAlloc((nuint)Ps, (nuint)Ps);
        try
        {
            ((byte*)p)[0] = 42;
            using var src = ProcPageSource.Open(Environment.ProcessId);
            var e = ReadOne(src, (ulong)p);
            Assert.True(e.Present, e.ToString());
            Assert.False(e.Swapped);
            Assert.False(e.FileOrSharedAnon);
            if (KernelProbe.Current.PfnVisible) Assert.NotNull(e.Pfn); else Assert.Null(e.Pfn);
        }
        finally { NativeMemory.AlignedFree(p); }
    }

    [HostFact]
    public void PagemapReflectsWhichPagesWereTouched()
    {
        using var r = new Region(8);
        r.Touch(1); r.Touch(4);
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var entries = new PagemapEntry[8];
        Assert.Equal(8, src.ReadPagemap(r.Start / (ulong)Ps, entries));
        Assert.Equal(new[] { false, true, false, false, true, false, false, false }, entries.Select(e => e.Present));
        Assert.True(entries[1].Exclusive, entries[1].ToString()); // private anonymous, mapped once
        Assert.Equal(new PagemapEntry(entries[0].Raw & (ulong)PagemapFlags.SoftDirty), entries[0]); // none (soft-dirty at most)
    }

    [HostFact]
    public void SharedAnonymousPageIsFileOrSharedAnon()
    {
        using var r = new Region(1, Native.MAP_SHARED | Native.MAP_ANONYMOUS);
        r.Touch(0);
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var e = ReadOne(src, r.Start);
        Assert.True(e.Present && e.FileOrSharedAnon, e.ToString());
    }

    [HostFact]
    public void ReadingPastTheTaskSizeReadsShortWithoutError()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var entries = new PagemapEntry[4];
        Assert.Equal(0, src.ReadPagemap(0xffffffffff600000UL / (ulong)Ps, entries));
        // The reader walks [vsyscall] as an explicit span without error and finds nothing.
        var vsyscall = src.ReadMappings(false).Where(m => m.Kind == MappingKind.Vsyscall).Select(m => new PageSpan(m.Start, m.End, m)).ToList();
        Assert.Empty(new PageMapReader(src).Read(vsyscall, new PageFilter(), PageReadMethod.Pread));
    }

    [HostFact]
    public void ReadMappingsOfSelfFindsOwnRegionAndCounters()
    {
        using var r = new Region(4, prot: Native.PROT_READ); // read-only so it does not merge with a neighbour
        using var src = ProcPageSource.Open(Environment.ProcessId);
        Assert.Equal(Environment.ProcessId, src.ProcessId);
        Assert.Equal(File.ReadAllText("/proc/self/comm").TrimEnd('\n'), src.Name);
        var maps = src.ReadMappings(false);
        var m = Assert.Single(maps, m => m.Contains(r.Start));
        Assert.True(m.End >= r.End);
        Assert.Equal(Protection.Read, m.Protection);
        Assert.All(maps, x => Assert.Equal(Environment.ProcessId, x.ProcessId));
        var smaps = src.ReadMappings(true);
        var s = Assert.Single(smaps, x => x.Contains(r.Start));
        Assert.NotNull(s.Rss);
        Assert.Contains("rd", s.VmFlags);
        Assert.Contains(smaps, x => x.Kind == MappingKind.Heap || x.Kind == MappingKind.Stack);
    }

    [HostFact(HostNeeds.PagemapScan)]
    public void PagemapScanFindsATouchedPageAsPresent()
    {
        using var r = new Region(8);
        r.Touch(2); r.Touch(3); r.Touch(6);
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var req = new PagemapScanRequest { Start = r.Start, End = r.End, CategoryMask = PageCategory.Present, ReturnMask = PageCategory.Present };
        var regions = new PageRegion[8];
        int n = src.ScanPagemap(ref req, regions);
        Assert.Equal(new[]
        {
            new PageRegion(r.Start + 2UL * (ulong)Ps, r.Start + 4UL * (ulong)Ps, PageCategory.Present),
            new PageRegion(r.Start + 6UL * (ulong)Ps, r.Start + 7UL * (ulong)Ps, PageCategory.Present),
        }, regions.Take(n));
        Assert.Equal(r.End, req.WalkEnd);
    }

    [HostFact(HostNeeds.PagemapScan)]
    public void PagemapScanRejectsAnUnalignedStart()
    {
        using var r = new Region(1);
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var req = new PagemapScanRequest { Start = r.Start + 1, End = r.End, ReturnMask = PageCategory.Present };
        var ex = Assert.Throws<EngineException>(() => src.ScanPagemap(ref req, new PageRegion[1]));
        Assert.Equal(EngineError.InvalidArgument, ex.Error);
        Assert.Equal(Errno.EINVAL, ex.Errno);
    }

    [HostFact(HostNeeds.PagemapScan)]
    public void ReaderMethodsAgreeOnRealMemory()
    {
        using var r = new Region(2000);
        var rng = new Random(11);
        var touched = Enumerable.Range(0, 2000).Where(_ => rng.Next(3) == 0).ToList();
        foreach (var i in touched) r.Touch(i);
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var spans = new[] { new PageSpan(r.Start, r.End, null) };
        var filter = new PageFilter().Require(PagemapFlags.Present, true);
        var pread = new PageMapReader(src, 64).Read(spans, filter, PageReadMethod.Pread).Select(h => h.Address).ToList();
        var scan = new PageMapReader(src, 64).Read(spans, filter, PageReadMethod.PagemapScan).Select(h => h.Address).ToList();
        Assert.Equal(touched.Select(i => r.Start + (ulong)i * (ulong)Ps), pread);
        Assert.Equal(pread, scan);
    }

    [HostFact]
    public void ParallelReadsEqualSerialReadsOnRealMemory()
    {
        // Small chunks so that a 2000-page span is many chunk pairs, a tail and a short last chunk.
        using var r = new Region(2000);
        var rng = new Random(12);
        var touched = Enumerable.Range(0, 2000).Where(_ => rng.Next(5) == 0).ToList();
        foreach (var i in touched) r.Touch(i);
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var spans = new[] { new PageSpan(r.Start, r.End, null) };
        var filter = new PageFilter().Require(PagemapFlags.Present, true);
        var serial = new PageMapReader(src, 37).Read(spans, filter, PageReadMethod.Pread).Select(h => h.Address).ToList();
        var serialRanges = new PageMapReader(src, 37).ReadRanges(spans, new PageFilter(), PageReadMethod.Pread).Select(x => (x.Start, x.End, x.Flags)).ToList();
        AppContext.SetSwitch(PageMapReader.ParallelReadsSwitch, true);
        try
        {
            var parallel = new PageMapReader(src, 37).Read(spans, filter, PageReadMethod.Pread).Select(h => h.Address).ToList();
            var parallelRanges = new PageMapReader(src, 37).ReadRanges(spans, new PageFilter(), PageReadMethod.Pread).Select(x => (x.Start, x.End, x.Flags)).ToList();
            Assert.Equal(touched.Select(i => r.Start + (ulong)i * (ulong)Ps), serial);
            Assert.Equal(serial, parallel);
            Assert.Equal(serialRanges, parallelRanges);
        }
        finally { AppContext.SetSwitch(PageMapReader.ParallelReadsSwitch, false); }
    }

    [HostTheory]
    [InlineData(0)]
    [InlineData(-5)]
    [InlineData(int.MaxValue)]
    public void OpenOfANonexistentPidIsProcessNotFound(int pid)
    {
        var ex = Assert.Throws<EngineException>(() => ProcPageSource.Open(pid));
        Assert.Equal(EngineError.ProcessNotFound, ex.Error);
        Assert.Equal(pid, ex.Target);
    }

    private static Process StartSleep()
    {
        var p = Process.Start(new ProcessStartInfo("sleep", "30") { UseShellExecute = false })!;
        // Wait until it has exec'd sleep, so its maps are sleep's and not the fork's (a generous bound on the
        // monotonic clock: a busy machine may take its time; the test then asserts the name).
        long deadline = Environment.TickCount64 + 30_000;
        while (Environment.TickCount64 < deadline && File.ReadAllText($"/proc/{p.Id}/comm").Trim() != "sleep") System.Threading.Thread.Sleep(5);
        return p;
    }

    [HostTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadsAfterTheProcessExitedAreProcessExited(bool pagemapOpenedBefore)
    {
        using var p = StartSleep();
        try
        {
            using var src = ProcPageSource.Open(p.Id);
            Assert.Equal("sleep", src.Name);
            var maps = src.ReadMappings(false);
            Assert.NotEmpty(maps);
            var first = maps[0];
            var buf = new PagemapEntry[4];
            if (pagemapOpenedBefore)
                Assert.Equal(4, src.ReadPagemap(first.Start / (ulong)Ps, buf));
            p.Kill();
            p.WaitForExit();

            void Exited(Action a)
            {
                var ex = Assert.Throws<EngineException>(a);
                Assert.Equal(EngineError.ProcessExited, ex.Error);
                Assert.Equal(p.Id, ex.Target);
            }
            Exited(() => src.ReadPagemap(first.Start / (ulong)Ps, buf));
            Exited(() => src.ReadMappings(false));
            Exited(() => src.ReadMappings(true));
            if (KernelProbe.Current.PagemapScan)
                Exited(() =>
                {
                    var req = new PagemapScanRequest { Start = first.Start, End = first.End, CategoryMask = PageCategory.Present, ReturnMask = PageCategory.Present };
                    src.ScanPagemap(ref req, new PageRegion[4]);
                });
            // The reader passes the error on rather than a partial result.
            var spans = PageMapReader.SpansOf(maps);
            Assert.Throws<EngineException>(() => new PageMapReader(src).Read(spans, new PageFilter(), PageReadMethod.Pread).ToList());
        }
        finally
        {
            if (!p.HasExited) p.Kill();
        }
    }

    [HostFact]
    public void KernelProbeMatchesThisKernel()
    {
        var f = KernelProbe.Current;
        Assert.Same(f, KernelProbe.Current);
        Assert.Equal(File.ReadAllText("/proc/sys/kernel/osrelease").Trim(), f.KernelRelease);
        Assert.False(f.Emulated);

        // A kernel with CONFIG_MEM_SOFT_DIRTY marks a fresh VMA VM_SOFTDIRTY ("sd" in VmFlags).
        using (new Region(1, prot: Native.PROT_READ))
        {
            bool sdInSmaps = File.ReadAllLines("/proc/self/smaps")
                .Where(l => l.StartsWith("VmFlags:", StringComparison.Ordinal))
                .Any(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("sd"));
            Assert.Equal(sdInSmaps, f.SoftDirty);
        }
        if (f.SoftDirty) Assert.Null(f.SoftDirtyReason);
        else Assert.Contains("CONFIG_MEM_SOFT_DIRTY", f.SoftDirtyReason);

        // PAGEMAP_SCAN came in 6.7.
        var parts = f.KernelRelease.Split('.', '-');
        var version = new Version(int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(version >= new Version(6, 7), f.PagemapScan);
        if (f.PagemapScan) Assert.Null(f.PagemapScanReason); else Assert.NotNull(f.PagemapScanReason);
        Assert.Equal(f.PfnVisible, f.PfnVisibleReason is null);
        Assert.Equal(f.UffdWriteProtectAsync, f.UffdWriteProtectAsyncReason is null);
    }

    private const int CapSysAdminBit = 21;

    /// <summary>
    /// pagemap shows page frame numbers only to an opener with CAP_SYS_ADMIN in the initial user namespace
    /// (root, usually; not an unprivileged user, not root of a user namespace).
    /// </summary>
    private static bool HasCapSysAdminInInitialNamespace()
    {
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
        ulong caps = ulong.Parse(line["CapEff:".Length..].Trim(), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
        var uidMap = File.ReadAllText("/proc/self/uid_map").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        bool initialNamespace = uidMap is ["0", "0", "4294967295"];
        return initialNamespace && (caps & (1UL << CapSysAdminBit)) != 0;
    }

    [HostFact]
    public void PfnIsVisibleExactlyWithCapSysAdmin()
    {
        Assert.Equal(HasCapSysAdminInInitialNamespace(), KernelProbe.Current.PfnVisible);
        Assert.Equal(KernelProbe.Current.PfnVisible, KernelProbe.Current.PfnVisibleReason is null);
    }
}
