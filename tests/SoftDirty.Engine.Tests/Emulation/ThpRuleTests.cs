using System;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// The THP rules measured in round 21 on Debian's 6.1, 6.12, 7.2 and 7.3 (booted with transparent_hugepage=always,
/// madvise, never and use_zero_page=0) and the 6.18 host: tests/scenarios/regression-thp.scenario, whose recorded prints
/// tests/Pester/Security.Round21.Kernel.Tests.ps1 compares whole. Each fact here is one of those prints, counted.
/// </summary>
public class ThpRuleTests
{
    private static readonly ulong Huge = EmulatedProcess.HugePageBytes;
    private static readonly int Pages = (int)(EmulatedProcess.HugePageBytes / Page);

    private static PagemapEntry[] Entries(EmulatedProcess p, ulong a)
    {
        var e = new PagemapEntry[Pages];
        p.ReadPagemap(a / Page, e);
        return e;
    }

    private static int Count(PagemapEntry[] e, Func<PagemapEntry, bool> what) => Array.FindAll(e, x => what(x)).Length;

    [Theory]
    [InlineData("6.1", 1)]
    [InlineData("6.12", 1)]
    [InlineData("6.18", 512)]
    [InlineData("7.2", 512)]
    [InlineData("7.3", 512)]
    public void AWriteAfterAReadOfTheHugeZeroPage(string profile, int exclusive)
    {
        // thp-zero-then-write: 6.12 splits the huge zero PMD and copies one page; 6.18 on map a fresh THP (all 512 exclusive).
        var p = New(profile);
        ulong a = MapAnon(p, Huge, huge: true);
        Clear(p);   // VM_SOFTDIRTY of the new mapping off: only written pages read soft-dirty
        p.Read(a, 1);
        p.Write(a + 7 * Page, 1);
        var e = Entries(p, a);
        Assert.Equal(Pages, Count(e, x => x.Present));
        Assert.Equal(exclusive, Count(e, x => x.Exclusive));
        Assert.Equal(exclusive, Count(e, x => x.SoftDirty));
    }

    [Theory]
    [InlineData("6.1", true)]
    [InlineData("6.18", true)]
    [InlineData("7.2", true)]
    [InlineData("7.3", false)]
    public void TheHugeZeroPageIsFileInPagemapUntil73(string profile, bool file)
    {
        var p = New(profile);
        ulong a = MapAnon(p, Huge, huge: true);
        p.Read(a, 1);
        var e = Entries(p, a);
        Assert.Equal(Pages, Count(e, x => x.Present));
        Assert.Equal(file ? Pages : 0, Count(e, x => x.FileOrSharedAnon));
        Assert.Equal(0, Count(e, x => x.Exclusive));
    }

    [Theory]
    [InlineData("6.12")]
    [InlineData("7.3")]
    public void AWriteToAUffdWriteProtectedThpUnprotectsOnePage(string profile)
    {
        // thp-uffdwp (use_zero_page=0): the PMD splits; 511 pages keep uffd-wp, the written one is WRITTEN alone.
        var p = new EmulatedProcess("test", KernelProfile.Get(profile).WithThpSettings(TransparentHugePageMode.Always, hugeZeroPage: false));
        ulong a = MapAnon(p, Huge, huge: true);
        p.Write(a, 1);
        p.RegisterUffdWriteProtectAsync(a, Huge);
        p.Write(a + 3 * Page, 1);
        var e = Entries(p, a);
        Assert.Equal(Pages - 1, Count(e, x => x.UffdWriteProtected));
        Assert.False(e[3].UffdWriteProtected);
        var r = new PagemapScanRequest { Start = a, End = a + Huge, ReturnMask = PageCategory.Written | PageCategory.Huge };
        Assert.Equal(new[] { new PageRegion(a + 3 * Page, a + 4 * Page, PageCategory.Written) },
            Array.FindAll(Scan(p, ref r), x => x.Categories != 0));
    }

    [Theory]
    [InlineData("6.1", false)]
    [InlineData("6.12", true)]
    [InlineData("7.3", true)]
    public void ASplitAfterClearRefsCarriesTheDirtyBitFrom612(string profile, bool softDirty)
    {
        // thp-split-after-clear: a THP written, clear_refs 4, MADV_DONTNEED of one page splits it.
        var p = New(profile);
        ulong a = MapAnon(p, Huge, huge: true);
        p.Write(a, 1);
        Clear(p);
        p.MadviseDontNeed(a + 100 * Page, Page);
        var e = Entries(p, a);
        Assert.Equal(Pages - 1, Count(e, x => x.Present));
        Assert.Equal(softDirty ? Pages - 1 : 0, Count(e, x => x.Present && x.SoftDirty));
    }

    [Theory]
    [InlineData("6.1", 512, 0)]
    [InlineData("6.12", 1, 511)]
    [InlineData("6.18", 512, 0)]
    [InlineData("7.2", 512, 0)]
    [InlineData("7.3", 512, 0)]
    public void TheExclusiveBitOfAForkedThpFollowsTheHeadPageBut612(string profile, int dropsHead, int dropsRest)
    {
        // thp-fork-child-drops-head and -rest: the parent's PMD-mapped THP after the child dropped page 0, or pages 1-511.
        foreach (var (first, count, expected) in new[] { (0UL, 1UL, dropsHead), (1UL, (ulong)Pages - 1, dropsRest) })
        {
            var parent = New(profile);
            ulong a = MapAnon(parent, Huge, huge: true);
            parent.Write(a, 1);
            var child = parent.Fork();
            child.MadviseDontNeed(a + first * Page, count * Page);
            Assert.Equal(expected, Count(Entries(parent, a), x => x.Exclusive));
        }
    }
}
