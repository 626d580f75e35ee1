using System;
using System.Linq;
using System.Text;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// The emulator's rules for both sides of every switch the kernels differ in (zero page, huge zero page,
/// THP mode, WRITTEN without a page table), so a machine with one setting still tests the other, and the
/// Host profile against what the running kernel measured.
/// </summary>
public class KernelRuleTests
{
    private const ulong Page = EmulatedProcess.PageBytes;
    private const ulong Huge = EmulatedProcess.HugePageBytes;

    private static EmulatedProcess New(KernelProfile profile) => new("rules", profile);

    private static PageCategory Categories(EmulatedProcess p, ulong address)
    {
        var req = new PagemapScanRequest { Start = address, End = address + Page, ReturnMask = PagemapScanRequest.ValidCategories };
        var regions = new PageRegion[1];
        Assert.Equal(1, p.ScanPagemap(ref req, regions));
        return regions[0].Categories;
    }

    /// <summary>The categories without SOFT_DIRTY (a new VMA is VM_SOFTDIRTY: every page of it reads soft-dirty).</summary>
    private static PageCategory Plain(EmulatedProcess p, ulong address) => Categories(p, address) & ~PageCategory.SoftDirty;

    private static void ClearSoftDirty(EmulatedProcess p) => p.WriteClearRefs(Encoding.ASCII.GetBytes("4"));

    [Fact]
    public void WithTheZeroPage_AReadFaultMapsTheSharedZeroPage()
    {
        var p = New(KernelProfile.Default with { SharedZeroPage = true });
        ulong a = p.Mmap(null, 4 * Page, Protection.Read | Protection.Write).Start;
        ClearSoftDirty(p);
        p.Read(a, 1);
        var e = p.ReadEntry(a);
        Assert.True(e.Present);
        Assert.False(e.Exclusive);
        Assert.False(e.SoftDirty);
        Assert.Equal(PageCategory.Present | PageCategory.Written | PageCategory.PfnZero, Categories(p, a));
        Assert.Equal(0UL, p.RssBytes);
    }

    [Fact]
    public void WithoutTheZeroPage_AReadFaultMapsAFreshExclusivePage_DirtyInAWritableVma()
    {
        var p = New(KernelProfile.Default with { SharedZeroPage = false });
        ulong rw = p.Mmap(null, 4 * Page, Protection.Read | Protection.Write).Start;
        ulong ro = p.Mmap(null, 4 * Page, Protection.Read).Start;
        ClearSoftDirty(p);
        p.Read(rw, 1);
        p.Read(ro, 1);
        var e = p.ReadEntry(rw);
        Assert.True(e.Present);
        Assert.True(e.Exclusive);
        Assert.True(e.SoftDirty);   // pte_mkdirty sets soft-dirty in a writable VMA
        Assert.Equal(PageCategory.Present | PageCategory.Written | PageCategory.SoftDirty, Categories(p, rw));
        var r = p.ReadEntry(ro);
        Assert.True(r.Present);
        Assert.True(r.Exclusive);
        Assert.False(r.SoftDirty);
        Assert.Equal(PageCategory.Present | PageCategory.Written, Categories(p, ro));
        Assert.Equal(2 * Page, p.RssBytes);
    }

    [Fact]
    public void WithoutTheZeroPage_AForkSharesTheReadPage()
    {
        var p = New(KernelProfile.Default with { SharedZeroPage = false, SoftDirtyEnabled = false });
        ulong a = p.Mmap(null, Page, Protection.Read | Protection.Write).Start;
        p.Read(a, 1);
        var child = p.Fork();
        Assert.False(p.ReadEntry(a).Exclusive);
        Assert.False(child.ReadEntry(a).Exclusive);
        Assert.True(child.ReadEntry(a).Present);
    }

    [Theory]
    [InlineData(TransparentHugePageMode.Never, false, false)]
    [InlineData(TransparentHugePageMode.Never, true, false)]
    [InlineData(TransparentHugePageMode.Madvise, false, false)]
    [InlineData(TransparentHugePageMode.Madvise, true, true)]
    [InlineData(TransparentHugePageMode.Always, false, true)]
    [InlineData(TransparentHugePageMode.Always, true, true)]
    public void AWriteFaultMapsATransparentHugePageAsTheModeAllows(TransparentHugePageMode mode, bool madvised, bool huge)
    {
        var p = New(KernelProfile.Default with { TransparentHugePages = mode });
        ulong a = p.Mmap(null, Huge, Protection.Read | Protection.Write, flags: madvised ? MmapFlags.HugePage : MmapFlags.None).Start;
        Assert.Equal(0UL, a & (Huge - 1));
        p.Write(a, 1);
        Assert.Equal(huge, p.ReadEntry(a + Page).Present);
        Assert.Equal(huge, (Categories(p, a) & PageCategory.Huge) != 0);
    }

    [Fact]
    public void WithTheHugeZeroPage_AMadvisedReadMapsIt_WithoutItARealThp()
    {
        var with = New(KernelProfile.Default with { HugeZeroPage = true });
        ulong a = with.Mmap(null, Huge, Protection.Read | Protection.Write, flags: MmapFlags.HugePage).Start;
        with.Read(a, 1);
        Assert.Equal(PageCategory.Present | PageCategory.Written | PageCategory.Huge | PageCategory.PfnZero,
            Categories(with, a + Page) & ~PageCategory.SoftDirty);
        Assert.False(with.ReadEntry(a + Page).Exclusive);
        Assert.Equal(0UL, with.RssBytes);

        var without = New(KernelProfile.Default with { HugeZeroPage = false });
        ulong b = without.Mmap(null, Huge, Protection.Read | Protection.Write, flags: MmapFlags.HugePage).Start;
        without.Read(b, 1);
        Assert.Equal(PageCategory.Present | PageCategory.Written | PageCategory.Huge, Categories(without, b + Page) & ~PageCategory.SoftDirty);
        Assert.True(without.ReadEntry(b + Page).Exclusive);
        Assert.Equal(Huge, without.RssBytes);
    }

    [Fact]
    public void ScanReportsNeverTouchedPagesWrittenOnlyWhereAPageTableExists()
    {
        var p = New(KernelProfile.Default);
        ulong a = p.Mmap(null, Huge, Protection.Read | Protection.Write).Start;   // 2 MiB-aligned: its own page table
        Assert.Equal(PageCategory.None, Plain(p, a));
        p.Write(a + Huge - Page, 1);                                             // a fault elsewhere in the range
        Assert.Equal(PageCategory.Written, Plain(p, a));
        p.MadviseDontNeed(a + Huge - Page, Page);                                // the table stays
        Assert.Equal(PageCategory.Written, Plain(p, a));
    }

    [Fact]
    public void WithScanWrittenWithoutPageTable_EveryNeverTouchedPageIsWritten()
    {
        var p = New(KernelProfile.Default with { ScanWrittenWithoutPageTable = true });
        ulong a = p.Mmap(null, Huge, Protection.Read | Protection.Write).Start;
        Assert.Equal(PageCategory.Written, Plain(p, a));
    }

    [Fact]
    public void MunmapFreesThePageTableOnlyWhenNoMappingIsLeftInIts2MiBRange()
    {
        var p = New(KernelProfile.Default);
        ulong a = p.Mmap(null, Huge, Protection.Read | Protection.Write).Start;
        p.Write(a, 1);
        p.Munmap(a, Page);                                                        // the rest of the range is still mapped
        Assert.Equal(PageCategory.Written, Plain(p, a + Page));
        p.Munmap(a, Huge);
        p.Mmap(a, Huge, Protection.Read | Protection.Write, flags: MmapFlags.Fixed);
        Assert.Equal(PageCategory.None, Plain(p, a + Page));
    }

    [Fact]
    public void AnEmptyPageTableKeepsAFaultFromMappingATransparentHugePage()
    {
        var p = New(KernelProfile.Default with { TransparentHugePages = TransparentHugePageMode.Always });
        ulong a = p.Mmap(null, Huge, Protection.Read | Protection.Write).Start;
        p.Write(a, 1);
        Assert.True(p.ReadEntry(a + Page).Present);                               // a THP
        p.MadviseDontNeed(a + Page, Page);                                        // splits it: a PTE table now
        p.MadviseDontNeed(a, Huge);
        p.Write(a, 1);
        Assert.False(p.ReadEntry(a + Page).Present);                              // pmd not none: 4 KiB pages
    }

    [Fact]
    public void ProfilesAreRecordsThatKeepEveryRuleWhenCopied()
    {
        var p = KernelProfile.Get(KernelProfile.Linux61) with { SharedZeroPage = false, TransparentHugePages = TransparentHugePageMode.Always };
        var q = p.WithoutSoftDirty();
        Assert.False(q.SoftDirtyEnabled);
        Assert.Equal(p with { SoftDirtyEnabled = false }, q);
        Assert.True(q.LegacyMremapOrder);
        Assert.False(q.SharedZeroPage);
        Assert.Equal(TransparentHugePageMode.Always, q.TransparentHugePages);
        Assert.Contains(q.Rules, r => r.Name == nameof(KernelProfile.SharedZeroPage) && r.Value == "False");
    }

    [Theory]
    [InlineData("5.15.0-91-generic", KernelProfile.Linux61)]
    [InlineData("6.1.0-27-amd64", KernelProfile.Linux61)]
    [InlineData("6.17.2", KernelProfile.Linux612)]
    [InlineData("6.18.44-fc-v1045", KernelProfile.Linux618)]
    [InlineData("6.19.0-rc1", KernelProfile.Linux619)]
    [InlineData("7.2.0", KernelProfile.Linux72)]
    [InlineData("7.9.1", KernelProfile.Linux73)]
    public void TheNearestReleaseProfileAtOrBelowAVersionIsChosen(string release, string profile)
    {
        // 6.17 is below 6.18, so it gets 6.12's rules: the releases between are not modelled separately.
        Assert.Equal(profile, KernelProfile.ForVersion(KernelRules.ParseVersion(release)).Name);
    }

    [Fact]
    public void TheHostProfileCarriesTheMeasuredRules()
    {
        if (!OperatingSystem.IsLinux())
        {
            var e = Assert.Throws<EngineException>(() => KernelProfile.Get(KernelProfile.HostName));
            Assert.Equal(EngineError.PlatformNotSupported, e.Error);
            return;
        }
        var f = KernelProbe.Current;
        var host = KernelProfile.Get(KernelProfile.HostName);
        string Rule(string name) => f.Rules.Single(r => r.Name == name).Value;
        Assert.Equal(f.KernelRelease, host.HostRelease);
        Assert.Equal(f.SoftDirty, host.SoftDirtyEnabled);
        Assert.Equal(f.PagemapScan, host.HasPagemapScan);
        Assert.Equal(Rule(KernelRules.SharedZeroPage), host.SharedZeroPage.ToString());
        Assert.Equal(Rule(KernelRules.HugeZeroPage), host.HugeZeroPage.ToString());
        Assert.Equal(Rule(KernelRules.ScanWrittenWithoutPageTable), host.ScanWrittenWithoutPageTable.ToString());
        Assert.Equal(KernelRules.ReadThpMode().Mode, host.TransparentHugePages);
        // Round 21: the huge zero page's rules are measured where a read fault maps it, else the release profile's.
        var release = KernelProfile.ForVersion(KernelRules.ParseVersion(f.KernelRelease));
        bool hugeZeroSeen = Rule(KernelRules.HugeZeroPage) == bool.TrueString && Rule(KernelRules.ThpOnFault) == bool.TrueString;
        Assert.Equal(hugeZeroSeen, f.Rules.Any(r => r.Name == KernelRules.HugeZeroWriteAllocatesThp));
        Assert.Equal(hugeZeroSeen ? Rule(KernelRules.HugeZeroWriteAllocatesThp) : release.HugeZeroWriteAllocatesThp.ToString(), host.HugeZeroWriteAllocatesThp.ToString());
        Assert.Equal(hugeZeroSeen ? Rule(KernelRules.PagemapHugeZeroIsFile) : release.PagemapHugeZeroIsFile.ToString(), host.PagemapHugeZeroIsFile.ToString());
        Assert.All(f.Rules, r => Assert.False(string.IsNullOrWhiteSpace(r.Evidence), r.Name));
        foreach (var name in new[] { KernelRules.SoftDirty, KernelRules.PagemapScan, KernelRules.UffdWriteProtectAsync,
                     KernelRules.UffdWriteProtectUnpopulated, KernelRules.UnprivilegedUserfaultfd, KernelRules.GuardRegions,
                     KernelRules.SharedZeroPage, KernelRules.HugeZeroPage, KernelRules.TransparentHugePages, KernelRules.ThpOnFault,
                     KernelRules.ScanWrittenWithoutPageTable, KernelRules.PfnVisible, KernelRules.Swap })
            Assert.Contains(f.Rules, r => r.Name == name);
    }
}
