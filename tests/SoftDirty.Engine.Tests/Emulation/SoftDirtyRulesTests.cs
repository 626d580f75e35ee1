using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

/// <summary>Every row of the reference's section 3 table: what sets or clears soft-dirty.</summary>
public class SoftDirtyRulesTests
{
    [Fact]
    public void FirstWriteFaultsAndSetsSoftDirty()
    {
        var p = New();
        ulong a = MapAnon(p);
        Clear(p);
        Assert.False(Check(p, a));
        p.Write(a, 8);
        var e = p.ReadEntry(a);
        Assert.True(e.Present && e.SoftDirty && e.Exclusive);
        Assert.Equal(1, p.Faults.WriteFaults);
        Assert.Equal(EmulatedProcess.PageBytes, p.ReadMappings(true)[0].PrivateDirty);
    }

    [Fact]
    public void WriteToWritablePteTakesNoFaultAndChangesNothing()
    {
        var p = New();
        ulong a = MapAnon(p);
        p.Write(a, 8);
        var before = p.Faults;
        var entry = p.ReadEntry(a);
        p.Write(a + 64, 8);
        Assert.Equal(before, p.Faults);
        Assert.Equal(entry, p.ReadEntry(a));
    }

    [Fact]
    public void WriteAfterClearTakesSoftDirtyWriteProtectFault()
    {
        var p = New();
        ulong a = MapAnon(p);
        p.Write(a, 8);
        Clear(p);
        Assert.False(Check(p, a));
        p.Write(a, 8);
        Assert.True(Check(p, a));
        Assert.Equal(1, p.Faults.SoftDirtyWriteProtectFaults);
        Assert.Equal(0, p.Faults.CowFaults);
    }

    [Fact]
    public void ReadFaultMapsZeroPageNotSoftDirty()
    {
        var p = New(privileged: true);
        ulong a = MapAnon(p, 2 * Page);
        Clear(p);
        p.Read(a, 2 * Page);
        var e0 = p.ReadEntry(a);
        var e1 = p.ReadEntry(a + Page);
        Assert.True(e0.Present && !e0.SoftDirty && !e0.Exclusive && !e0.FileOrSharedAnon);
        Assert.Equal(e0.Pfn, e1.Pfn);   // the one shared zero page
        Assert.Equal(2, p.Faults.ReadFaults);
        Assert.Equal(0UL, p.RssBytes);
        var r = new PagemapScanRequest { Start = a, End = a + 2 * Page, ReturnMask = PageCategory.PfnZero | PageCategory.Present };
        Assert.Equal(new[] { new PageRegion(a, a + 2 * Page, PageCategory.PfnZero | PageCategory.Present) }, Scan(p, ref r));
        p.Write(a, 8);                   // copy-on-write from the zero page
        Assert.True(Check(p, a));
        Assert.NotEqual(e0.Pfn, p.ReadEntry(a).Pfn);
        Assert.Equal(1, p.Faults.CowFaults);
    }

    [Fact]
    public void ReadNeverSetsSoftDirty()
    {
        var p = New();
        ulong a = MapAnon(p);
        p.Write(a, 8);
        Clear(p);
        p.Read(a, Page);
        Assert.False(Check(p, a));
    }

    [Fact]
    public void WriteFaultOnSharedMappingSetsSoftDirty()
    {
        var p = New();
        ulong a = p.Mmap(null, Page, RW, flags: MmapFlags.Shared).Start;
        Clear(p);
        p.Read(a, 8);
        Assert.False(Check(p, a));
        p.Write(a, 8);
        Assert.True(Check(p, a));
        Assert.True(p.ReadEntry(a).FileOrSharedAnon);
        Assert.Equal(1, p.Faults.SoftDirtyWriteProtectFaults);   // the read mapped it read-only (write notification)
    }

    [Fact]
    public void NewMappingHasVmSoftDirtyOnEveryPage()
    {
        var p = New();
        ulong a = MapAnon(p, 3 * Page);
        var m = p.ReadMappings(true).Single();
        Assert.True(m.SoftDirty);
        Assert.Contains("sd", m.VmFlags);
        Assert.Equal(new[] { "rd", "wr", "mr", "mw", "me", "ac", "sd" }, m.VmFlags);
        for (ulong i = 0; i < 3; i++) Assert.Equal((ulong)PagemapFlags.SoftDirty, p.ReadEntry(a + i * Page).Raw);
    }

    [Fact]
    public void MmapMergedIntoNeighbourMakesWholeVmaSoftDirty()
    {
        var p = New("6.1");
        ulong a = MapAnon(p, 2 * Page);
        p.Munmap(a + Page, Page);
        Clear(p);
        p.Mmap(a + Page, Page, RW, flags: MmapFlags.Fixed);
        Assert.Single(p.ReadMappings(false));
        Assert.True(Check(p, a));
    }

    [Theory, MemberData(nameof(AllProfiles), MemberType = typeof(Sd))]
    public void MremapMoveMakesMovedPtesSoftDirty(string profile)
    {
        var p = New(profile);
        ulong a = MapAnon(p, 2 * Page);
        ulong target = MapAnon(p, 4 * Page, Protection.Read);   // a different protection: no merge
        p.Write(a, 2 * Page);
        p.SwapOut(a + Page, Page);
        Clear(p);
        p.Mremap(a, 2 * Page, target + Page, 2 * Page);
        Assert.True(Check(p, target + Page));            // present, moved
        Assert.True(Check(p, target + 2 * Page));        // swap entry, moved
        Assert.True(p.ReadEntry(target + 2 * Page).Swapped);
        Assert.Equal(0UL, p.ReadEntry(a).Raw);           // old range unmapped
        Assert.False(p.ReadMappings(true).Single(m => m.Start == target + Page).SoftDirty);
    }

    [Fact]
    public void VmaSplitKeepsFlagsOnBothSides()
    {
        var p = New();
        ulong a = MapAnon(p, 3 * Page);
        p.Mprotect(a + Page, Page, Protection.Read);
        var maps = p.ReadMappings(true);
        Assert.Equal(3, maps.Count);
        Assert.All(maps, m => Assert.True(m.SoftDirty));
        Clear(p);
        p.Mprotect(a + Page, Page, RW);
        Assert.All(p.ReadMappings(true), m => Assert.False(m.SoftDirty));
    }

    [Fact]
    public void ForkCopiesSoftDirtyAndCowSetsItOnlyInTheWriter()
    {
        var parent = New();
        ulong a = MapAnon(parent, 2 * Page);
        parent.Write(a, 2 * Page);
        Clear(parent);
        parent.Write(a, 8);                      // page 0 soft-dirty, page 1 clean
        var child = parent.Fork();
        Assert.NotEqual(parent.ProcessId, child.ProcessId);
        Assert.True(Check(child, a));
        Assert.False(Check(child, a + Page));
        Assert.False(child.ReadEntry(a).Exclusive);   // shared until written
        Assert.False(parent.ReadMappings(true)[0].SoftDirty == true);
        Clear(parent);
        Clear(child);
        parent.Write(a + Page, 8);
        Assert.True(Check(parent, a + Page));
        Assert.False(Check(child, a + Page));
        Assert.Equal(1, parent.Faults.CowFaults);
        Assert.True(parent.ReadEntry(a + Page).Exclusive);
        Assert.True(child.ReadEntry(a + Page).Exclusive);   // the parent copied away
        child.Write(a + Page, 8);                        // reuse, no copy
        Assert.True(Check(child, a + Page));
        Assert.Equal(1, child.Faults.CowFaults);
    }

    [Fact]
    public void ForkedChildReadsSameContentUntilWritten()
    {
        var parent = New();
        ulong a = MapAnon(parent);
        parent.Write(a, Page, 0x5A);
        var child = parent.Fork();
        parent.Write(a, Page, 0x11);
        var buffer = new byte[Page];
        child.ReadPageContent(a, buffer);
        Assert.All(buffer, b => Assert.Equal(0x5A, b));
        parent.ReadPageContent(a, buffer);
        Assert.All(buffer, b => Assert.Equal(0x11, b));
    }

    [Fact]
    public void SwapKeepsSoftDirtyForPrivateAnonymous()
    {
        var p = New(privileged: true);
        ulong a = MapAnon(p, 2 * Page);
        p.Write(a, 2 * Page, 7);
        Clear(p);
        p.Write(a, 8);
        p.SwapOut(a, 2 * Page);
        var e0 = p.ReadEntry(a);
        Assert.True(e0.Swapped && e0.SoftDirty && !e0.Present);
        Assert.Equal(0, e0.SwapType);
        Assert.True(e0.SwapOffset > 0);
        Assert.False(p.ReadEntry(a + Page).SoftDirty);
        Assert.Equal(2 * Page, p.ReadMappings(true)[0].Swap);
        p.SwapIn(a, 2 * Page);
        Assert.True(Check(p, a));
        Assert.False(Check(p, a + Page));
        Assert.Equal(2, p.Faults.SwapIns);
        var content = new byte[Page];
        p.ReadPageContent(a + Page, content);
        Assert.All(content, b => Assert.Equal(7, b));
        p.SwapOut(a, Page);
        Clear(p);                                   // a swap entry loses only its soft-dirty bit
        Assert.False(Check(p, a));
        Assert.True(p.ReadEntry(a).Swapped);
        p.Write(a, 8);                              // swap-in by write fault
        Assert.True(Check(p, a));
    }

    [Fact]
    public void SharedMemoryLosesSoftDirtyOnSwap()
    {
        var p = New();
        ulong a = p.Mmap(null, Page, RW, flags: MmapFlags.Shared).Start;
        Clear(p);
        p.Write(a, Page, 3);
        Assert.True(Check(p, a));
        p.SwapOut(a, Page);
        Assert.Equal(0UL, p.ReadEntry(a).Raw);
        p.Read(a, 8);
        Assert.False(Check(p, a));
        var content = new byte[Page];
        p.ReadPageContent(a, content);
        Assert.All(content, b => Assert.Equal(3, b));
    }

    [Fact]
    public void ThpSplitInheritsAndCollapseSetsSoftDirty()
    {
        var p = New(privileged: true);
        ulong a = MapAnon(p, 2 * EmulatedProcess.HugePageBytes, huge: true);
        p.Write(a, 8);
        var head = p.ReadEntry(a);
        Assert.Equal(head.Pfn + 511, p.ReadEntry(a + 511 * Page).Pfn);
        p.SplitHugePage(a);
        Assert.Equal(0UL, p.ReadMappings(true)[0].AnonHugePages);
        for (ulong i = 0; i < 512; i += 37) Assert.True(Check(p, a + i * Page));
        Clear(p);
        Assert.False(Check(p, a + 5 * Page));
        p.CollapseHugePage(a);
        Assert.Equal(EmulatedProcess.HugePageBytes, p.ReadMappings(true)[0].AnonHugePages);
        Assert.True(Check(p, a + 5 * Page));
        var r = new PagemapScanRequest { Start = a, End = a + EmulatedProcess.HugePageBytes, ReturnMask = PageCategory.Huge | PageCategory.SoftDirty };
        Assert.Equal(new[] { new PageRegion(a, a + EmulatedProcess.HugePageBytes, PageCategory.Huge | PageCategory.SoftDirty) }, Scan(p, ref r));
    }

    [Fact]
    public void MunmapAndDontNeedLeaveOnlyVmSoftDirty()
    {
        var p = New();
        ulong a = MapAnon(p, 2 * Page);
        p.Write(a, 2 * Page);
        p.MadviseDontNeed(a, Page);
        Assert.Equal((ulong)PagemapFlags.SoftDirty, p.ReadEntry(a).Raw);   // VM_SOFTDIRTY still set
        Clear(p);
        p.MadviseDontNeed(a + Page, Page);
        Assert.Equal(0UL, p.ReadEntry(a + Page).Raw);
        Assert.Equal(0UL, p.RssBytes);
        p.Munmap(a, 2 * Page);
        Assert.Equal(0UL, p.ReadEntry(a).Raw);
        Assert.Empty(p.ReadMappings(false));
    }

    [Fact]
    public void UffdAsyncFirstWriteClearsWriteProtect()
    {
        var p = New();
        ulong a = MapAnon(p, 2 * Page);
        p.Write(a, 8);
        p.RegisterUffdWriteProtectAsync(a, 2 * Page);
        Assert.True(p.ReadEntry(a).UffdWriteProtected);
        Assert.True(p.ReadEntry(a + Page).UffdWriteProtected);   // marker on the empty page
        Assert.True(p.ReadEntry(a + Page).Swapped);
        Assert.Contains("uw", p.ReadMappings(true)[0].VmFlags);
        p.Write(a, 8);
        p.Write(a + Page, 8);
        Assert.False(p.ReadEntry(a).UffdWriteProtected);
        Assert.False(p.ReadEntry(a + Page).UffdWriteProtected);
        Assert.Equal(2, p.Faults.UffdWriteProtectFaults);
    }

    [Fact]
    public void ClearRefsYoungTypesAndPeakRss()
    {
        var p = New();
        ulong anon = MapAnon(p, 4 * Page);
        ulong file = p.Mmap(null, Page, RW, path: "/tmp/young", flags: MmapFlags.Shared).Start;
        p.Write(anon, 4 * Page);
        p.Write(file, 8);
        Assert.Equal(4 * Page, p.ReadMappings(true).Single(m => m.Start == anon).Referenced);
        p.ClearRefs(ClearRefsType.Anonymous);
        Assert.Equal(0UL, p.ReadMappings(true).Single(m => m.Start == anon).Referenced);
        Assert.Equal(Page, p.ReadMappings(true).Single(m => m.Start == file).Referenced);
        p.ClearRefs(ClearRefsType.Mapped);
        Assert.Equal(0UL, p.ReadMappings(true).Single(m => m.Start == file).Referenced);
        p.Read(anon, 8);
        p.ClearRefs(ClearRefsType.All);
        Assert.All(p.ReadMappings(true), m => Assert.Equal(0UL, m.Referenced));
        Assert.Equal(5 * Page, p.PeakRssBytes);
        p.MadviseDontNeed(anon, 4 * Page);
        Assert.Equal(5 * Page, p.PeakRssBytes);
        p.ClearRefs(ClearRefsType.PeakRss);
        Assert.Equal(Page, p.PeakRssBytes);
    }
}
