using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// The rules of the kernel's own page moves measured in round 24 on Debian's 6.1, 6.12, 7.2 and 7.3 (tests/vm/matrix.sh:
/// KSM running, tests/scenarios/vm/ksm-thp.scenario; two NUMA nodes, migrate.scenario), whose recorded prints
/// tests/Pester/Security.Round24.Kernel.Tests.ps1 compares whole. Each fact here is one of those prints.
/// </summary>
public class PageMoveRuleTests
{
    // Two pages of the same bytes written after the clear, merged: the later page scanned is merged in place and keeps its
    // bit, the earlier is mapped to it anew and reads clean; both read present and not exclusive (mapped twice).
    private static (EmulatedProcess, ulong) WrittenThenMerged(string profile)
    {
        var p = New(profile);
        ulong a = MapAnon(p, 2 * Page);
        p.Write(a, 2 * Page, 5);
        Clear(p);
        p.Write(a, 2 * Page, 7);
        p.MadviseMergeable(a, 2 * Page, mergeable: true);
        p.KsmScan();
        return (p, a);
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("6.12")]
    [InlineData("7.3")]
    public void AMergeDropsTheSoftDirtyBitOfThePageMappedToTheKsmPage(string profile)
    {
        var (p, a) = WrittenThenMerged(profile);
        var e = Entries(p, a, 2);
        Assert.False(e[0].SoftDirty);
        Assert.True(e[1].SoftDirty);
        Assert.All(e, x => Assert.True(x.Present && !x.Exclusive));
    }

    [Theory]
    [InlineData("6.1")]
    [InlineData("7.3")]
    public void AfterThePartnersWriteTheMergedPageReadsExclusiveAndClean(string profile)
    {
        // ksm-sole-mapping: the case that made an increment miss page 0 (the module now compares such memory by content).
        var (p, a) = WrittenThenMerged(profile);
        p.Write(a + Page, 1);
        var e = Entries(p, a, 2);
        Assert.True(e[0].Present && e[0].Exclusive && !e[0].SoftDirty);
        Assert.True(e[1].Exclusive && e[1].SoftDirty);
        // A write to the KSM page mapped once copies it (a KSM page is never reused) and is soft-dirty.
        p.Write(a, 1);
        Assert.True(Entries(p, a, 1)[0].SoftDirty);
    }

    [Theory]
    [InlineData("6.1", true)]
    [InlineData("6.12", false)]
    [InlineData("7.3", false)]
    public void UnmergingWritesOn61AndUnsharesLater(string profile, bool written)
    {
        // ksm-unmerged: 6.1's break_ksm is a write fault; 6.12+ unshare, keeping the bit the merge dropped.
        var (p, a) = WrittenThenMerged(profile);
        p.MadviseMergeable(a, 2 * Page, mergeable: false);
        var e = Entries(p, a, 2);
        Assert.Equal(written, e[0].SoftDirty);
        Assert.True(e[1].SoftDirty);
        Assert.All(e, x => Assert.True(x.Present && x.Exclusive));
    }

    [Fact]
    public void AMergeDropsUffdWpWhichReadsAsWritten()
    {
        // ksm-uffdwp (7.3): pages 2 and 3 were not written after the write-protect; 2 is mapped to 3's KSM page and loses it.
        var p = New("7.3");
        ulong a = MapAnon(p, 4 * Page);
        p.Write(a, 4 * Page, 1);
        p.RegisterUffdWriteProtectAsync(a, 4 * Page);
        p.UffdWriteProtect(a, 4 * Page);
        p.Write(a, 2 * Page, 2);
        p.MadviseMergeable(a, 4 * Page, mergeable: true);
        p.KsmScan();
        var e = Entries(p, a, 4);
        Assert.Equal(new[] { false, false, false, true }, Array.ConvertAll(e, x => x.UffdWriteProtected));
    }

    [Theory]
    [InlineData("6.1", 0)]
    [InlineData("6.12", 3)]
    [InlineData("7.3", 3)]
    public void TheFolioSplitMapsZeroFilledPagesToTheZeroPageFrom612KeepingSoftDirty(string profile, int zeroPages)
    {
        // thp-split-zeroed-after-clear: three pages zeroed after the clear; every page stays soft-dirty (the PMD was).
        ulong huge = EmulatedProcess.HugePageBytes;
        var p = new EmulatedProcess("test", KernelProfile.Get(profile).WithThpSettings(TransparentHugePageMode.Always, hugeZeroPage: true));
        ulong a = (MapAnon(p, 2 * huge, huge: true) + huge - 1) & ~(huge - 1);
        p.Write(a, huge, 7);
        Assert.Equal(huge, Array.Find(p.ReadMappings(true).ToArray(), m => m.Start <= a && a < m.End)!.AnonHugePages);   // a THP
        Clear(p);
        p.Write(a + 5 * Page, 3 * Page, 0);
        p.SplitHugePages(a, huge);
        var e = Entries(p, a, (int)(huge / Page));
        Assert.All(e, x => Assert.True(x.Present && x.SoftDirty));
        Assert.Equal(zeroPages, Array.FindAll(e, x => !x.Exclusive).Length);
    }

    [Theory]
    [InlineData("6.1", 8)]
    [InlineData("6.12", 2)]
    [InlineData("7.3", 2)]
    public void AMigratedPageKeepsItsBitsAnd61AddsSoftDirtyWhereTheEntryWasDirty(string profile, int softDirty)
    {
        // migrate-written-after-clear: 8 pages written, cleared, 2 written again, all moved to another node.
        var p = New(profile);
        ulong a = MapAnon(p, 8 * Page);
        p.Write(a, 8 * Page);
        Clear(p);
        p.Write(a, 2 * Page);
        p.MigratePages(a, 8 * Page);
        var e = Entries(p, a, 8);
        Assert.Equal(softDirty, Array.FindAll(e, x => x.SoftDirty).Length);
        Assert.All(e, x => Assert.True(x.Present && x.Exclusive));
    }
}
