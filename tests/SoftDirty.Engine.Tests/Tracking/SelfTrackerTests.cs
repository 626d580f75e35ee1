using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Engine.Tests.Tracking;

/// <summary>Trackers on this very process (the one case where userfaultfd may register the memory).</summary>
[Collection(WorkflowCollection.Name)]
public unsafe class SelfTrackerTests : IDisposable
{
    private const int Pages = 64;
    private readonly nint _region;
    private readonly ulong _start;

    public SelfTrackerTests()
    {
        _region = Native.Mmap(0, Pages * 4096, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_PRIVATE | Native.MAP_ANONYMOUS, -1, 0);
        Assert.NotEqual(Native.MAP_FAILED, _region);
        _start = (ulong)_region;
        for (int i = 0; i < Pages; i++) ((byte*)_region)[i * 4096] = (byte)(i + 1);
    }

    public void Dispose() => Native.Munmap(_region, Pages * 4096);

    private bool Mine(MemoryMapping m) => m.Start < _start + Pages * 4096UL && m.End > _start;
    private ulong[] InRegion(DirtyPageSet set) =>
        set.Ranges.SelectMany(r => Enumerable.Range(0, (int)(r.Length / 4096)).Select(i => r.Start + (ulong)i * 4096))
            .Where(a => a >= _start && a < _start + Pages * 4096UL).Select(a => (a - _start) / 4096).ToArray();

    [Fact]
    public void Hash_OnThisProcess_FindsExactlyThePagesChanged()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        using var t = new HashTracker(src, PageHashAlgorithm.Fast128, Mine);
        t.Reset();
        ((byte*)_region)[2 * 4096 + 5] = 0xAB;
        ((byte*)_region)[30 * 4096] = 31; // the same value: not a change
        ((byte*)_region)[61 * 4096 + 4095] = 0xCD;
        Native.Madvise(_region + 10 * 4096, 4096, Native.MADV_DONTNEED);
        Assert.Equal(new ulong[] { 2, 10, 61 }, InRegion(t.Collect()));
        Assert.Empty(InRegion(t.Collect()));
    }

    [Fact]
    public void WriteProtect_OnThisProcess_GetsAndResetsWrites()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        if (!WriteProtectTracker.IsSupported(src, out var why)) { Assert.Fail("this kernel was expected to have userfaultfd WP_ASYNC: " + why); }
        using var t = new WriteProtectTracker(src, Mine);
        t.Reset();
        ((byte*)_region)[1 * 4096] = 9;
        for (int i = 5; i <= 7; i++) ((byte*)_region)[i * 4096 + 1] = 9;
        Assert.Equal(new ulong[] { 1, 5, 6, 7 }, InRegion(t.Collect(rearm: false)));
        Assert.Equal(new ulong[] { 1, 5, 6, 7 }, InRegion(t.Collect(rearm: true)));
        Assert.Empty(InRegion(t.Collect()));
        ((byte*)_region)[33 * 4096] = 33; // identical bytes still count: it was a write
        Assert.Equal(new ulong[] { 33 }, InRegion(t.Collect()));
    }

    [Fact]
    public void WriteProtect_OnThisProcess_IsSupportedAndAutoChoosesIt()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        Assert.True(WriteProtectTracker.IsSupported(src, out _));
        Assert.Equal(TrackingMethod.WriteProtect, DirtyTracker.Resolve(src, TrackingMethod.Auto, out _));
    }
}
