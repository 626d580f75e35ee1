using System;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests.Tracking;

[Collection(WorkflowCollection.Name)]
public class WorkflowTests
{
    [Fact]
    public void Watch_OnAWorkloadDriver_UsesEmulatedTime()
    {
        using var p = new FakeProcess(256) { WriteRate = 1000, HotFirst = 64, HotCount = 16 };
        using var t = new HashTracker(p);
        var samples = DirtyWatch.Run(t, TimeSpan.FromSeconds(0.5), null, TimeSpan.FromSeconds(2), CancellationToken.None).ToList();
        Assert.Equal(4, samples.Count);
        Assert.Equal(new[] { 0.5, 1.0, 1.5, 2.0 }, samples.Select(s => s.Elapsed).ToArray());
        Assert.All(samples, s => Assert.Equal(16UL, s.DirtyPages));
        Assert.All(samples, s => Assert.Equal(32.0, s.Rate));
        Assert.All(samples, s => Assert.All(s.Ranges, r => Assert.InRange(r.Start, p.Address(64), p.Address(79))));
    }

    [Theory]
    [InlineData(0.0013)]
    [InlineData(0.0055)]
    [InlineData(0.0199)]
    public void IntervalClock_ForARealProcess_NeverWakesBeforeTheInterval(double seconds)
    {
        // A timed wait rounds to whole milliseconds and may wake early; the clock sleeps on to its deadline,
        // so what it controls is a lower bound on the monotonic clock (how late it wakes is the machine's).
        var source = new FakePageSource();
        var interval = TimeSpan.FromSeconds(seconds);
        for (int i = 0; i < 20; i++)
        {
            long start = Stopwatch.GetTimestamp();
            IntervalClock.Wait(source, interval, CancellationToken.None);
            Assert.True(Stopwatch.GetElapsedTime(start) >= interval);
        }
    }

    [Fact]
    public void IntervalClock_Cancelled_ThrowsAtOnce()
    {
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.Throws<OperationCanceledException>(() => IntervalClock.Wait(new FakePageSource(), TimeSpan.FromHours(1), cancel.Token));
    }

    [Theory]
    [InlineData(100e6, true, PreCopyStopReason.Converged)]
    [InlineData(10e3, false, PreCopyStopReason.NotConverging)]
    public void PreCopy_ConvergesWhenTheLinkOutrunsTheWrites(double bandwidth, bool converged, PreCopyStopReason reason)
    {
        using var p = new FakeProcess(1024) { WriteRate = 200, HotFirst = 0, HotCount = 1024 };
        for (int i = 0; i < 1024; i++) p.WriteRandom(i);
        using var t = new HashTracker(p);
        var records = PreCopyMigration.Run(t, new PreCopyOptions { Bandwidth = bandwidth, MaxIterations = 20, StopThreshold = 4 }, CancellationToken.None).ToList();
        var rounds = records.OfType<PreCopyRound>().ToList();
        var summary = Assert.Single(records.OfType<PreCopySummary>());
        Assert.Equal(1024UL, rounds[0].PagesSent);
        Assert.Equal(converged, summary.Converged);
        Assert.Equal(reason, summary.StopReason);
        Assert.Equal(PreCopyPhase.StopAndCopy, rounds[^1].Phase);
        Assert.Equal(rounds.Aggregate(0UL, (a, r) => a + r.PagesSent), summary.TotalPagesSent);
        Assert.Equal(1, p.FreezeCount);
        Assert.False(p.Frozen);
        // Each live round's duration is its bytes at the bandwidth, in emulated time.
        Assert.Equal(rounds[0].BytesSent / bandwidth, rounds[0].RoundSeconds, 6);
    }

    [Fact]
    public void Chart_DrawsTheHotRegionInItsRows()
    {
        var pts = Enumerable.Range(1, 5).Select(i => (IDirtyTimelinePoint)new DirtyPageSample
        {
            Index = i, Elapsed = i, Rate = 10 * i, PageSize = 4096,
            Ranges = new[] { new AddressRange(0x10000 + 0x30000, 0x10000 + 0x38000) },
        }).Append(new DirtyPageSample { Index = 6, Elapsed = 6, Rate = 1, PageSize = 4096, Ranges = new[] { new AddressRange(0x10000, 0x11000) } }).ToList();
        var svg = DirtyChart.Render(pts, "t <&>");
        Assert.Contains("t &lt;&amp;&gt;", svg);
        var bands = DirtyChart.Bands(pts);
        Assert.Single(bands);
        Assert.Equal(DirtyChart.Rows, bands[0].Rows);
        Assert.True(svg.Split("fill=\"#d7301f\"").Length - 1 >= 5);
        System.Xml.Linq.XDocument.Parse(svg); // well-formed
    }
}
