using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// PAGEMAP_SCAN of a large span in two halves at once (<see cref="PageMapReader.SplitScans"/>), on a real mapping of
/// this process twice the split threshold: the same pages and ranges, in the same order, as pread and as one scan;
/// an enumeration stopped early or cancelled leaves no walk running.
/// </summary>
public sealed unsafe class SplitScanTests : IDisposable
{
    private const int MapNoReserve = 0x4000;
    private static readonly int Ps = Environment.SystemPageSize;
    private readonly ulong _pages = 2 * PageMapReader.SplitScanPages + 3; // odd: the halves differ by a page
    private readonly nint _address;
    private readonly ulong[] _touched;

    public SplitScanTests()
    {
        // PROT_NONE reserves address space only (no commit charge, whatever vm.overcommit_memory says); the pages
        // touched below are made writable one by one.
        _address = Native.Mmap(0, (nuint)(_pages * (ulong)Ps), Native.PROT_NONE, Native.MAP_PRIVATE | Native.MAP_ANONYMOUS | MapNoReserve, -1, 0);
        Assert.NotEqual((nint)(-1), _address);
        // One page a fault whatever the THP mode, so one touched page is one present page.
        if (Directory.Exists("/sys/kernel/mm/transparent_hugepage"))
            Assert.True(Native.Madvise(_address, (nuint)(_pages * (ulong)Ps), Native.MADV_NOHUGEPAGE) == 0, "madvise: errno " + Marshal.GetLastPInvokeError());
        ulong mid = _pages / 2;
        var rng = new Random(20261202);
        var touched = new SortedSet<ulong> { 0, 1, mid - 2, mid - 1, mid, mid + 1, _pages - 1 }; // runs across the split
        while (touched.Count < 600) touched.Add((ulong)rng.NextInt64(0, (long)_pages));
        foreach (var p in touched)
        {
            Assert.True(Native.Mprotect(_address + (nint)(p * (ulong)Ps), (nuint)Ps, Native.PROT_READ | Native.PROT_WRITE) == 0, "mprotect: errno " + Marshal.GetLastPInvokeError());
            ((byte*)_address)[p * (ulong)Ps] = 1;
        }
        _touched = touched.ToArray();
    }

    public void Dispose() => Native.Munmap(_address, (nuint)(_pages * (ulong)Ps));

    private List<PageSpan> Spans() => new() { new PageSpan((ulong)_address, (ulong)_address + _pages * (ulong)Ps, null) };

    private static PageFilter Present => new(PagemapFlags.Present, PagemapFlags.Present);

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan)]
    public void SplitScan_YieldsWhatPreadAndOneScanYield_InOrder()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var split = new PageMapReader(src) { SplitScans = true }.Read(Spans(), Present, PageReadMethod.PagemapScan).Select(h => h.Address).ToList();
        var serial = new PageMapReader(src) { SplitScans = false }.Read(Spans(), Present, PageReadMethod.PagemapScan).Select(h => h.Address).ToList();
        var pread = new PageMapReader(src).Read(Spans(), Present, PageReadMethod.Pread).Select(h => h.Address).ToList();
        var expected = _touched.Select(p => (ulong)_address + p * (ulong)Ps).ToList();
        Assert.Equal(expected, pread);
        Assert.Equal(expected, serial);
        Assert.Equal(expected, split);
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan)]
    public void SplitScan_Ranges_JoinAcrossTheSplit()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var split = new PageMapReader(src) { SplitScans = true }.ReadRanges(Spans(), Present, PageReadMethod.PagemapScan).Select(r => (r.Start, r.End)).ToList();
        var pread = new PageMapReader(src).ReadRanges(Spans(), Present, PageReadMethod.Pread).Select(r => (r.Start, r.End)).ToList();
        Assert.Equal(pread, split);
        ulong mid = (ulong)_address + _pages / 2 * (ulong)Ps;
        Assert.Contains(split, r => r.Start < mid && r.End > mid); // pages mid-2 .. mid+1: one range, not two
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan)]
    public void SplitScan_StoppedEarlyOrCancelled_EndsItsWalk()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        var reader = new PageMapReader(src) { SplitScans = true };
        Assert.Single(reader.Read(Spans(), Present, PageReadMethod.PagemapScan).Take(1));
        using var cancel = new CancellationTokenSource();
        var hits = 0;
        Assert.ThrowsAny<OperationCanceledException>(() =>
        {
            foreach (var _ in reader.Read(Spans(), Present, PageReadMethod.PagemapScan, cancel.Token))
                if (++hits == 2) cancel.Cancel();
        });
        // The reader is whole afterwards: its next read (which reuses its buffers) is exact.
        Assert.Equal(_touched.Length, reader.Read(Spans(), Present, PageReadMethod.PagemapScan).Count());
    }
}
