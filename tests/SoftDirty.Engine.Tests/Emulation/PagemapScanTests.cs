using System;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

/// <summary>PAGEMAP_SCAN as tools/testing/selftests/mm/pagemap_ioctl.c expects it.</summary>
public class PagemapScanTests
{
    private static (EmulatedProcess P, ulong A) TenPagesWritten(params int[] pages)
    {
        var p = New();
        ulong a = MapAnon(p, 10 * Page);
        p.Write(a, 10 * Page);
        Clear(p);
        foreach (int i in pages) p.Write(a + (ulong)i * Page, 8);
        return (p, a);
    }

    private static PagemapScanRequest SoftDirtyRequest(ulong a, ulong pages) => new()
    {
        Start = a, End = a + pages * Page, CategoryMask = PageCategory.SoftDirty, ReturnMask = PageCategory.SoftDirty,
    };

    [Fact]
    public void ArgumentChecks()
    {
        var p = New();
        ulong a = MapAnon(p, 4 * Page);
        var regions = new PageRegion[4];
        void Expect(PagemapScanRequest r, int errno)
        {
            var ex = Assert.Throws<EngineException>(() => p.ScanPagemap(ref r, regions));
            Assert.Equal(EngineError.InvalidArgument, ex.Error);
            Assert.Equal(errno, ex.Errno);
        }
        Expect(new PagemapScanRequest { Start = a, End = a + Page, Flags = (PagemapScanFlags)4 }, Errno.EINVAL);
        Expect(new PagemapScanRequest { Start = a, End = a + Page, CategoryMask = (PageCategory)0x200 }, Errno.EINVAL);
        Expect(new PagemapScanRequest { Start = a, End = a + Page, ReturnMask = (PageCategory)0x400 }, Errno.EINVAL);
        Expect(new PagemapScanRequest { Start = a, End = a + Page, CategoryInverted = (PageCategory)0x1000 }, Errno.EINVAL);
        Expect(new PagemapScanRequest { Start = a, End = a + Page, CategoryAnyOf = (PageCategory)0x800 }, Errno.EINVAL);
        Expect(new PagemapScanRequest { Start = a + 1, End = a + Page }, Errno.EINVAL);
        Expect(new PagemapScanRequest { Start = a + Page, End = a }, Errno.EFAULT);
        Expect(new PagemapScanRequest { Start = a, End = EmulatedProcess.TaskSize + Page }, Errno.EFAULT);
        var ok = new PagemapScanRequest { Start = a, End = a, ReturnMask = PageCategory.Present };
        Assert.Equal(0, p.ScanPagemap(ref ok, regions));
        Assert.Equal(a, ok.WalkEnd);
    }

    [Fact]
    public void NotSupportedOnOldKernel()
    {
        var p = New("6.1");
        var r = new PagemapScanRequest { Start = 0, End = Page };
        var ex = Assert.Throws<EngineException>(() => p.ScanPagemap(ref r, new PageRegion[1]));
        Assert.Equal(EngineError.PagemapScanNotSupported, ex.Error);
    }

    [Fact]
    public void EndIsRoundedUp()
    {
        var (p, a) = TenPagesWritten(0, 1);
        var r = SoftDirtyRequest(a, 0);
        r.End = a + Page + 1;
        Assert.Equal(new[] { new PageRegion(a, a + 2 * Page, PageCategory.SoftDirty) }, Scan(p, ref r));
        Assert.Equal(a + 2 * Page, r.WalkEnd);
    }

    [Fact]
    public void ContiguousEqualPagesMergeIntoRegions()
    {
        var (p, a) = TenPagesWritten(0, 1, 2, 5, 6);
        var r = SoftDirtyRequest(a, 10);
        Assert.Equal(new[]
        {
            new PageRegion(a, a + 3 * Page, PageCategory.SoftDirty),
            new PageRegion(a + 5 * Page, a + 7 * Page, PageCategory.SoftDirty),
        }, Scan(p, ref r));
        Assert.Equal(a + 10 * Page, r.WalkEnd);
        // Without a mask every page matches; regions split where the returned categories change.
        var all = new PagemapScanRequest { Start = a, End = a + 10 * Page, ReturnMask = PageCategory.SoftDirty | PageCategory.Present };
        var regions = Scan(p, ref all);
        Assert.Equal(4, regions.Length);
        Assert.Equal(new PageRegion(a + 3 * Page, a + 5 * Page, PageCategory.Present), regions[1]);
        // Inverted: the clean pages.
        var clean = new PagemapScanRequest { Start = a, End = a + 10 * Page, CategoryInverted = PageCategory.SoftDirty, CategoryMask = PageCategory.SoftDirty, ReturnMask = PageCategory.SoftDirty };
        Assert.Equal(new[] { new PageRegion(a + 3 * Page, a + 5 * Page, 0), new PageRegion(a + 7 * Page, a + 10 * Page, 0) }, Scan(p, ref clean));
    }

    [Fact]
    public void MaxPagesCutsAndSetsWalkEnd()
    {
        var (p, a) = TenPagesWritten(0, 1, 2, 5, 6);
        var r = SoftDirtyRequest(a, 10);
        r.MaxPages = 2;
        Assert.Equal(new[] { new PageRegion(a, a + 2 * Page, PageCategory.SoftDirty) }, Scan(p, ref r));
        Assert.Equal(a + 2 * Page, r.WalkEnd);
        r = SoftDirtyRequest(a, 10);
        r.MaxPages = 4;
        Assert.Equal(new[] { new PageRegion(a, a + 3 * Page, PageCategory.SoftDirty), new PageRegion(a + 5 * Page, a + 6 * Page, PageCategory.SoftDirty) }, Scan(p, ref r));
        Assert.Equal(a + 6 * Page, r.WalkEnd);
        r = SoftDirtyRequest(a, 10);
        r.MaxPages = 5;                                   // exactly all: the walk completes
        Assert.Equal(2, Scan(p, ref r).Length);
        Assert.Equal(a + 10 * Page, r.WalkEnd);
    }

    [Fact]
    public void VecLenCutsAndSetsWalkEnd()
    {
        var (p, a) = TenPagesWritten(0, 1, 2, 5, 6, 8);
        var r = SoftDirtyRequest(a, 10);
        Assert.Equal(new[] { new PageRegion(a, a + 3 * Page, PageCategory.SoftDirty) }, Scan(p, ref r, vecLen: 1));
        Assert.Equal(a + 5 * Page, r.WalkEnd);
        r.Start = r.WalkEnd;
        Assert.Equal(new[] { new PageRegion(a + 5 * Page, a + 7 * Page, PageCategory.SoftDirty) }, Scan(p, ref r, vecLen: 1));
        Assert.Equal(a + 8 * Page, r.WalkEnd);
    }

    [Fact]
    public void CategoriesOfPageKinds()
    {
        var p = New();
        ulong anon = MapAnon(p, 4 * Page);
        ulong file = p.Mmap(null, Page, Protection.Read, path: "/tmp/scan.bin").Start;
        ulong huge = MapAnon(p, EmulatedProcess.HugePageBytes, huge: true);
        p.Write(anon, 8);
        p.Read(anon + Page, 8);
        p.Write(anon + 2 * Page, 8);
        p.SwapOut(anon + 2 * Page, Page);
        p.Read(file, 8);
        p.Write(huge, 8);
        Clear(p);
        PageCategory Cat(ulong address)
        {
            var r = new PagemapScanRequest { Start = address, End = address + Page, ReturnMask = PagemapScanRequest.ValidCategories };
            var regions = Scan(p, ref r);
            return regions.Length == 0 ? (PageCategory)ulong.MaxValue : regions[0].Categories;
        }
        Assert.Equal(PageCategory.Present | PageCategory.Written, Cat(anon));
        Assert.Equal(PageCategory.Present | PageCategory.Written | PageCategory.PfnZero, Cat(anon + Page));
        Assert.Equal(PageCategory.Swapped | PageCategory.Written, Cat(anon + 2 * Page));
        Assert.Equal(PageCategory.Written, Cat(anon + 3 * Page));   // never touched: not uffd-wp, so WRITTEN (6.18)
        Assert.Equal(PageCategory.Present | PageCategory.Written | PageCategory.File, Cat(file));
        Assert.Equal(PageCategory.Present | PageCategory.Written | PageCategory.Huge, Cat(huge));
        p.Write(anon, 8);
        Assert.Equal(PageCategory.Present | PageCategory.Written | PageCategory.SoftDirty, Cat(anon));
        p.GuardInstall(anon + 3 * Page, Page);
        Assert.Equal(PageCategory.Swapped | PageCategory.Written | PageCategory.Guard, Cat(anon + 3 * Page));
        Assert.True(p.ReadEntry(anon + 3 * Page).Guard);
    }

    [Fact]
    public void CheckWriteProtectAsyncOnUnregisteredVmaIsEperm()
    {
        var p = New();
        ulong a = MapAnon(p, 4 * Page);
        p.Write(a, 4 * Page);
        var r = new PagemapScanRequest
        {
            Start = a, End = a + 4 * Page, Flags = PagemapScanFlags.WriteProtectMatching | PagemapScanFlags.CheckWriteProtectAsync,
            CategoryMask = PageCategory.Written, ReturnMask = PageCategory.Written,
        };
        var ex = Assert.Throws<EngineException>(() => p.ScanPagemap(ref r, new PageRegion[4]));
        Assert.Equal(EngineError.PermissionDenied, ex.Error);
        Assert.Equal(Errno.EPERM, ex.Errno);
        r.Flags = PagemapScanFlags.WriteProtectMatching;   // skipped silently
        Assert.Empty(Scan(p, ref r));
        r.Flags = 0;                                        // unregistered: every present page is WRITTEN
        Assert.Equal(new[] { new PageRegion(a, a + 4 * Page, PageCategory.Written) }, Scan(p, ref r));
    }

    [Fact]
    public void UffdAsyncWrittenGetAndClear()
    {
        var p = New();
        ulong a = MapAnon(p, 10 * Page);
        p.Write(a, 5 * Page);
        p.RegisterUffdWriteProtectAsync(a, 10 * Page);
        var r = new PagemapScanRequest
        {
            Start = a, End = a + 10 * Page, Flags = PagemapScanFlags.WriteProtectMatching | PagemapScanFlags.CheckWriteProtectAsync,
            CategoryMask = PageCategory.Written, ReturnMask = PageCategory.Written,
        };
        Assert.Empty(Scan(p, ref r));
        p.Write(a + Page, 8);
        p.Write(a + 4 * Page, Page);
        p.Write(a + 7 * Page, 8);                    // an unpopulated page (marker)
        p.Read(a + 8 * Page, 8);                     // reads do not count
        Assert.Equal(new[]
        {
            new PageRegion(a + Page, a + 2 * Page, PageCategory.Written),
            new PageRegion(a + 4 * Page, a + 5 * Page, PageCategory.Written),
            new PageRegion(a + 7 * Page, a + 8 * Page, PageCategory.Written),
        }, Scan(p, ref r));
        Assert.Empty(Scan(p, ref r));                // get-and-clear
        p.Write(a + 4 * Page, 8);
        Assert.Equal(new[] { new PageRegion(a + 4 * Page, a + 5 * Page, PageCategory.Written) }, Scan(p, ref r));
        Assert.Equal(4, p.Faults.UffdWriteProtectFaults);
        var allowed = new PagemapScanRequest { Start = a, End = a + 10 * Page, CategoryMask = PageCategory.WriteProtectAllowed, ReturnMask = PageCategory.WriteProtectAllowed };
        Assert.Equal(new[] { new PageRegion(a, a + 10 * Page, PageCategory.WriteProtectAllowed) }, Scan(p, ref allowed));
    }

    [Fact]
    public void UffdWriteProtectMatchingWithMaxPagesProtectsOnlyReported()
    {
        var p = New();
        ulong a = MapAnon(p, 8 * Page);
        p.RegisterUffdWriteProtectAsync(a, 8 * Page);
        p.Write(a, 8 * Page);
        var r = new PagemapScanRequest
        {
            Start = a, End = a + 8 * Page, Flags = PagemapScanFlags.WriteProtectMatching | PagemapScanFlags.CheckWriteProtectAsync,
            CategoryMask = PageCategory.Written, ReturnMask = PageCategory.Written, MaxPages = 3,
        };
        Assert.Equal(new[] { new PageRegion(a, a + 3 * Page, PageCategory.Written) }, Scan(p, ref r));
        Assert.Equal(a + 3 * Page, r.WalkEnd);
        r.MaxPages = 0;
        Assert.Equal(new[] { new PageRegion(a + 3 * Page, a + 8 * Page, PageCategory.Written) }, Scan(p, ref r));
    }

    [Fact]
    public void UffdOnThpSplitsAndOldKernel()
    {
        // A write to a uffd-wp THP (WP_ASYNC) splits it and unprotects the written page only: Debian 6.12 and 7.3
        // report that one page WRITTEN, no longer Huge (round 21, regression-thp thp-uffdwp); the emulator used
        // to unprotect, and report, all 512.
        var p = New();
        ulong a = MapAnon(p, EmulatedProcess.HugePageBytes, huge: true);
        p.Write(a, 8);
        p.RegisterUffdWriteProtectAsync(a, EmulatedProcess.HugePageBytes);
        p.Write(a + 3 * Page, 8);
        var r = new PagemapScanRequest
        {
            Start = a, End = a + EmulatedProcess.HugePageBytes, Flags = PagemapScanFlags.WriteProtectMatching,
            CategoryMask = PageCategory.Written, ReturnMask = PageCategory.Written | PageCategory.Huge,
        };
        Assert.Equal(new[] { new PageRegion(a + 3 * Page, a + 4 * Page, PageCategory.Written) }, Scan(p, ref r));
        Assert.Empty(Scan(p, ref r));
        var old = New("6.1");
        ulong b = MapAnon(old);
        var ex = Assert.Throws<EngineException>(() => old.RegisterUffdWriteProtectAsync(b, Page));
        Assert.Equal(EngineError.InvalidArgument, ex.Error);
    }

    [Fact]
    public void UffdRegisterSkipsHolesTakesFilesAndRefusesEmptyRanges()
    {
        var p = New(noSoftDirty: true);
        ulong a = MapAnon(p, 4 * Page);
        p.Munmap(a + Page, Page);
        p.Mmap(a + 2 * Page, Page, Protection.Read | Protection.Write, path: "/tmp/f", flags: MmapFlags.Shared | MmapFlags.Fixed);
        p.RegisterUffdWriteProtectAsync(a, 4 * Page);   // a hole at a + Page, a file mapping at a + 2 pages: as 6.18
        var r = new PagemapScanRequest { Start = a, End = a + 4 * Page, ReturnMask = PageCategory.WriteProtectAllowed };
        Assert.Equal(new[] { new PageRegion(a, a + Page, PageCategory.WriteProtectAllowed), new PageRegion(a + 2 * Page, a + 4 * Page, PageCategory.WriteProtectAllowed) },
            Scan(p, ref r));
        Assert.Equal(PagemapFlags.Swapped | PagemapFlags.UffdWriteProtected, p.ReadEntry(a + 2 * Page).Flags);   // a marker
        Assert.Equal(0UL, p.ReadEntry(a + Page).Raw);                                                          // none in the hole
        var ex = Assert.Throws<EngineException>(() => p.RegisterUffdWriteProtectAsync(a + Page, Page));
        Assert.Equal(Errno.EINVAL, ex.Errno);
    }
}
