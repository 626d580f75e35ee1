using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

[Collection(WorkflowCollection.Name)]
public class FakeTrackerTests
{
    [Theory]
    [InlineData(PageHashAlgorithm.Fast128)]
    [InlineData(PageHashAlgorithm.Sha256)]
    public void Hash_ReportsChangedBytes_NotIdenticalWrites_AndDiscardedPages(PageHashAlgorithm algorithm)
    {
        using var p = new FakeProcess(64);
        for (int i = 0; i < 64; i++) p.WriteRandom(i);
        using var t = new HashTracker(p, algorithm);
        t.Reset();
        p.Write(3, 1); p.Write(4, 2); p.Write(40, 3);
        p.Write(20, p.Content(20)[0]); // the same byte again: no change
        p.Discard(50);                 // now reads as zeros
        var set = t.Collect();
        Assert.Equal(new[] { (p.Address(3), p.Address(5)), (p.Address(40), p.Address(41)), (p.Address(50), p.Address(51)) },
            set.Ranges.Select(r => (r.Start, r.End)).ToArray());
        Assert.Equal(4UL, set.PageCount);
        Assert.Equal(63UL, set.PagesScanned);
        Assert.Equal(0UL, t.Collect().PageCount);
        Assert.Equal(16UL * 63, t.Snapshot!.HashBytes);
    }

    [Fact]
    public void SoftDirty_ReportsWrittenPages_EvenWithIdenticalBytes_AndRearms()
    {
        using var p = new FakeProcess(32, softDirty: true);
        using var t = new SoftDirtyTracker(p);
        p.WriteRandom(1);
        t.Reset();
        p.Write(1, p.Content(1)[0]);
        p.Write(9, 5);
        var set = t.Collect(rearm: false);
        Assert.Equal(new[] { p.Address(1), p.Address(9) }, set.Ranges.Select(r => r.Start).ToArray());
        Assert.Equal(2UL, t.Collect(rearm: true).PageCount);
        Assert.Equal(0UL, t.Collect().PageCount);
    }

    [Fact]
    public void SoftDirty_RefusedWhereTheKernelLacksIt()
    {
        using var p = new FakeProcess(4, softDirty: false);
        var ex = Assert.Throws<EngineException>(() => new SoftDirtyTracker(p));
        Assert.Equal(EngineError.SoftDirtyNotSupported, ex.Error);
    }

    [Fact]
    public void Auto_PicksSoftDirty_ElseHash_AndSaysWhy()
    {
        using var sd = new FakeProcess(4, softDirty: true);
        using var none = new FakeProcess(4, softDirty: false);
        Assert.Equal(TrackingMethod.SoftDirty, DirtyTracker.Resolve(sd, TrackingMethod.Auto, out var r1));
        Assert.Contains("SoftDirty", r1);
        Assert.Equal(TrackingMethod.Hash, DirtyTracker.Resolve(none, TrackingMethod.Auto, out var r2));
        Assert.Contains("Hash", r2);
    }
}
