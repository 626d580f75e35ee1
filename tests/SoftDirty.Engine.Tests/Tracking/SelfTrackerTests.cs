using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Trackers on this very process (the one case where userfaultfd may register the memory). The region has
/// MADV_NOHUGEPAGE, so a write dirties one page whatever the THP mode (a THP would be written as a whole).
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed unsafe class SelfTrackerTests : IDisposable
{
    private const int Pages = 64;
    private const int MADV_NOHUGEPAGE = 15;
    private static readonly int Ps = Environment.SystemPageSize;
    private readonly nint _region;
    private readonly ulong _start;

    public SelfTrackerTests()
    {
        _region = Native.Mmap(0, (nuint)(Pages * Ps), Native.PROT_READ | Native.PROT_WRITE, Native.MAP_PRIVATE | Native.MAP_ANONYMOUS, -1, 0);
        Assert.NotEqual(Native.MAP_FAILED, _region);
        if (System.IO.Directory.Exists("/sys/kernel/mm/transparent_hugepage"))
            Assert.Equal(0, Native.Madvise(_region, (nuint)(Pages * Ps), MADV_NOHUGEPAGE));
        _start = (ulong)_region;
        for (int i = 0; i < Pages; i++) ((byte*)_region)[i * Ps] = (byte)(i + 1);
    }

    public void Dispose() => Native.Munmap(_region, (nuint)(Pages * Ps));

    private bool Mine(MemoryMapping m) => m.Start < _start + Pages * (ulong)Ps && m.End > _start;
    private ulong[] InRegion(DirtyPageSet set) =>
        set.Ranges.SelectMany(r => Enumerable.Range(0, (int)(r.Size / (ulong)Ps)).Select(i => r.Start + (ulong)i * (ulong)Ps))
            .Where(a => a >= _start && a < _start + Pages * (ulong)Ps).Select(a => (a - _start) / (ulong)Ps).ToArray();

    [HostFact]
    public void Hash_OnThisProcess_FindsExactlyThePagesChanged()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        using var t = new HashTracker(src, PageHashAlgorithm.Fast128, Mine);
        t.Reset();
        ((byte*)_region)[2 * Ps + 5] = 0xAB;
        ((byte*)_region)[30 * Ps] = 31; // the same value: not a change
        ((byte*)_region)[61 * Ps + Ps - 1] = 0xCD;
        Native.Madvise(_region + 10 * Ps, (nuint)Ps, Native.MADV_DONTNEED);
        Assert.Equal(new ulong[] { 2, 10, 61 }, InRegion(t.Collect()));
        Assert.Empty(InRegion(t.Collect()));
    }

    [HostFact(HostNeeds.UffdWriteProtectAsync)]
    public void WriteProtect_OnThisProcess_GetsAndResetsWrites()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        Assert.True(WriteProtectTracker.IsSupported(src, out var why), "the kernel probe found userfaultfd WP_ASYNC, the tracker not: " + why);
        using var t = new WriteProtectTracker(src, Mine);
        t.Reset();
        ((byte*)_region)[1 * Ps] = 9;
        for (int i = 5; i <= 7; i++) ((byte*)_region)[i * Ps + 1] = 9;
        Assert.Equal(new ulong[] { 1, 5, 6, 7 }, InRegion(t.Collect(rearm: false)));
        Assert.Equal(new ulong[] { 1, 5, 6, 7 }, InRegion(t.Collect(rearm: true)));
        Assert.Empty(InRegion(t.Collect()));
        ((byte*)_region)[33 * Ps] = 33; // identical bytes still count: it was a write
        Assert.Equal(new ulong[] { 33 }, InRegion(t.Collect()));
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync)]
    public void WriteProtect_OnThisProcess_IsSupportedAndAutoChoosesIt()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        Assert.True(WriteProtectTracker.IsSupported(src, out _));
        // Auto: soft-dirty where the kernel has it, else write-protect.
        Assert.Equal(src.Features.SoftDirty ? TrackingMethod.SoftDirty : TrackingMethod.WriteProtect, DirtyTracker.Resolve(src, TrackingMethod.Auto, out _));
    }
}
