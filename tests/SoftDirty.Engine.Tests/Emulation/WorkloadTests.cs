using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

public class WorkloadTests
{
    private static (WorkloadResult Result, ulong[] Entries) RunOnce(WorkloadPattern pattern, int seed)
    {
        var p = New();
        ulong a = MapAnon(p, 256 * Page);
        var result = EmulatedWorkload.Run(p, a, 256 * Page, pattern, 5000, 0.3, seed);
        var entries = new PagemapEntry[256];
        p.ReadPagemap(a >> 12, entries);
        return (result, entries.Select(e => e.Raw).ToArray());
    }

    [Theory]
    [InlineData(WorkloadPattern.Sequential)]
    [InlineData(WorkloadPattern.Random)]
    [InlineData(WorkloadPattern.HotSet)]
    [InlineData(WorkloadPattern.Zipf)]
    public void DeterministicForASeed(WorkloadPattern pattern)
    {
        var (r1, e1) = RunOnce(pattern, 42);
        var (r2, e2) = RunOnce(pattern, 42);
        Assert.Equal(r1.Faults, r2.Faults);
        Assert.Equal(r1.Writes, r2.Writes);
        Assert.Equal(e1, e2);
        Assert.Equal(5000, r1.Accesses);
        Assert.Equal(r1.Accesses, r1.Reads + r1.Writes);
        Assert.InRange(r1.Writes, 1200, 1800);
    }

    [Fact]
    public void SequentialTouchesEveryPageOnceWithFaultsByKind()
    {
        var p = New();
        ulong a = MapAnon(p, 64 * Page);
        var first = EmulatedWorkload.Run(p, a, 64 * Page, WorkloadPattern.Sequential, 64, 1.0, 1);
        Assert.Equal(64, first.Faults.WriteFaults);
        Assert.Equal(64UL * Page, p.RssBytes);
        var again = EmulatedWorkload.Run(p, a, 64 * Page, WorkloadPattern.Sequential, 640, 1.0, 1);
        Assert.Equal(0, again.Faults.Total);
        Clear(p);
        var tracked = EmulatedWorkload.Run(p, a, 64 * Page, WorkloadPattern.Sequential, 128, 1.0, 1);
        Assert.Equal(64, tracked.Faults.SoftDirtyWriteProtectFaults);
        var r = new PagemapScanRequest { Start = a, End = a + 64 * Page, CategoryMask = PageCategory.SoftDirty, ReturnMask = PageCategory.SoftDirty };
        Assert.Equal(new[] { new PageRegion(a, a + 64 * Page, PageCategory.SoftDirty) }, Scan(p, ref r));
    }

    [Fact]
    public void HotSetConcentratesWrites()
    {
        var p = New();
        ulong a = MapAnon(p, 1000 * Page);
        Clear(p);
        EmulatedWorkload.Run(p, a, 1000 * Page, WorkloadPattern.HotSet, 300, 1.0, 3);
        var r = new PagemapScanRequest { Start = a, End = a + 1000 * Page, CategoryMask = PageCategory.SoftDirty, ReturnMask = PageCategory.SoftDirty };
        var dirty = Scan(p, ref r, 1000).Sum(x => (long)((x.End - x.Start) / Page));
        Assert.InRange(dirty, 50, 200);
    }

    [Fact]
    public void TraceReplay()
    {
        var p = New();
        ulong a = MapAnon(p, 4 * Page);
        Clear(p);
        var result = EmulatedWorkload.Replay(p, new[]
        {
            "op,address,length",
            $"write,0x{a:x}",
            $"read,{a + Page}",
            "# comment",
            "",
            $"write,0x{a + 2 * Page - 4:x},8",
        });
        Assert.Equal(3, result.Accesses);
        Assert.Equal(2, result.Writes);
        Assert.True(Check(p, a));
        Assert.True(Check(p, a + Page));
        Assert.True(Check(p, a + 2 * Page));
        Assert.False(Check(p, a + 3 * Page));
        var ex = Assert.Throws<EngineException>(() => EmulatedWorkload.Replay(p, new[] { $"write,{a}", "poke,1" }));
        Assert.Equal(EngineError.InvalidArgument, ex.Error);
        Assert.Contains("line 2", ex.Message);
        Assert.True(Check(p, a));
    }
}

public class ReadMemoryTests
{
    [Fact]
    public void ReadsLikeProcPidMemWithoutFaulting()
    {
        var p = New();
        ulong a = MapAnon(p, 2 * Page);
        p.Mmap(a + 2 * Page, Page, Protection.None, flags: MmapFlags.Fixed);
        p.Write(a + Page - 2, 4, 9);
        var faults = p.Faults;
        var buffer = new byte[4 * Page];
        Assert.Equal((int)(3 * Page), p.ReadMemory(a, buffer));     // stops at the unmapped fourth page
        Assert.Equal(new byte[] { 0, 9, 9, 9, 9, 0 }, buffer[(int)(Page - 3)..(int)(Page + 3)]);
        Assert.Equal(faults, p.Faults);
        Assert.Equal(0, p.ReadMemory(a + 3 * Page, buffer));
        Assert.Equal(0UL, p.ReadEntry(a + 2 * Page).Raw & (ulong)PagemapFlags.Present);
    }
}
