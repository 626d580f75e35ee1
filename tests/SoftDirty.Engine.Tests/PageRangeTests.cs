using System;
using System.Collections.Generic;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>PageRangeBuilder coalescing and PageFilter.</summary>
public class PageRangeTests
{
    private const int Ps = 4096;
    private static readonly MemoryMapping Heap = new() { Start = 0x10000, End = 0x40000, Path = "[heap]", Kind = MappingKind.Heap };
    private static readonly MemoryMapping Anon = new() { Start = 0x40000, End = 0x80000, Kind = MappingKind.Anonymous };

    private static PagemapEntry P(ulong pfn, PagemapFlags f = PagemapFlags.None) => PagemapEntry.ForPresent(pfn, f);

    private static List<PageRange> Build(PageRangeBuilder b, params (ulong Address, PagemapEntry Entry, MemoryMapping? Mapping)[] pages)
    {
        var result = new List<PageRange>();
        foreach (var (a, e, m) in pages)
            if (b.Add(a, e, m) is { } r) result.Add(r);
        if (b.Flush() is { } last) result.Add(last);
        return result;
    }

    [Fact]
    public void ContiguousPagesWithEqualFlagsCoalesceEvenWithDifferentPfns()
    {
        var b = new PageRangeBuilder(7, Ps);
        Assert.Null(b.Add(0x10000, P(100, PagemapFlags.SoftDirty), Heap));
        Assert.Null(b.Add(0x11000, P(5, PagemapFlags.SoftDirty), Heap));
        Assert.Null(b.Add(0x12000, P(9999, PagemapFlags.SoftDirty), Heap));
        var r = b.Flush();
        Assert.NotNull(r);
        Assert.Equal(7, r!.ProcessId);
        Assert.Equal(0x10000UL, r.Start);
        Assert.Equal(0x13000UL, r.End);
        Assert.Equal(3UL, r.PageCount);
        Assert.Equal(3UL * Ps, r.Size);
        Assert.Equal(Ps, r.PageSize);
        Assert.Equal(PagemapFlags.Present | PagemapFlags.SoftDirty, r.Flags);
        Assert.Equal("[heap]", r.Mapping);
        Assert.True(r.Present && r.SoftDirty);
        Assert.False(r.Swapped || r.Exclusive || r.Guard || r.UffdWriteProtected || r.FileOrSharedAnon);
        Assert.Equal("0x10000-0x13000 (3 pages) SoftDirty, Present", r.ToString());
    }

    [Fact]
    public void FlagChangeSplits()
    {
        var ranges = Build(new PageRangeBuilder(1, Ps),
            (0x10000, P(1), Heap), (0x11000, P(2), Heap),
            (0x12000, P(3, PagemapFlags.Exclusive), Heap),
            (0x13000, P(4), Heap),
            (0x14000, PagemapEntry.ForSwapped(1, 2), Heap), (0x15000, PagemapEntry.ForSwapped(1, 3), Heap),
            (0x16000, default, Heap));
        Assert.Equal(new[] { (0x10000UL, 0x12000UL), (0x12000UL, 0x13000UL), (0x13000UL, 0x14000UL), (0x14000UL, 0x16000UL), (0x16000UL, 0x17000UL) },
            ranges.ConvertAll(r => (r.Start, r.End)));
        Assert.True(ranges[1].Exclusive);
        Assert.True(ranges[3].Swapped);
        Assert.Equal(PagemapFlags.None, ranges[4].Flags);
    }

    [Fact]
    public void AddReturnsTheRangeItClosed()
    {
        var b = new PageRangeBuilder(1, Ps);
        Assert.Null(b.Add(0x10000, P(1), Heap));
        var closed = b.Add(0x11000, P(2, PagemapFlags.SoftDirty), Heap);
        Assert.NotNull(closed);
        Assert.Equal((0x10000UL, 0x11000UL), (closed!.Start, closed.End));
        Assert.Equal(0x11000UL, b.Flush()!.Start);
    }

    [Fact]
    public void AddressGapSplits()
    {
        var ranges = Build(new PageRangeBuilder(1, Ps),
            (0x10000, P(1), Heap), (0x11000, P(2), Heap), (0x13000, P(3), Heap), (0x14000, P(4), Heap));
        Assert.Equal(2, ranges.Count);
        Assert.Equal((0x10000UL, 0x12000UL, 2UL), (ranges[0].Start, ranges[0].End, ranges[0].PageCount));
        Assert.Equal((0x13000UL, 0x15000UL, 2UL), (ranges[1].Start, ranges[1].End, ranges[1].PageCount));
    }

    [Fact]
    public void GoingBackwardsSplits()
    {
        var ranges = Build(new PageRangeBuilder(1, Ps), (0x11000, P(1), Heap), (0x10000, P(2), Heap));
        Assert.Equal(2, ranges.Count);
    }

    [Fact]
    public void MappingChangeSplitsEvenWhenContiguousAndEqual()
    {
        var ranges = Build(new PageRangeBuilder(1, Ps),
            (0x3E000, P(1), Heap), (0x3F000, P(2), Heap), (0x40000, P(3), Anon), (0x41000, P(4), Anon));
        Assert.Equal(2, ranges.Count);
        Assert.Equal("[heap]", ranges[0].Mapping);
        Assert.Equal("[anon]", ranges[1].Mapping);
        Assert.Equal(0x40000UL, ranges[0].End);

        // Two mappings with the same name are still two VMAs.
        var twin = new MemoryMapping { Start = 0x40000, End = 0x50000, Path = "[heap]", Kind = MappingKind.Heap };
        Assert.Equal(2, Build(new PageRangeBuilder(1, Ps), (0x3F000, P(1), Heap), (0x40000, P(2), twin)).Count);
    }

    [Fact]
    public void NullMappingCoalesces()
    {
        var ranges = Build(new PageRangeBuilder(1, Ps), (0x1000, P(1), null), (0x2000, P(2), null));
        var r = Assert.Single(ranges);
        Assert.Null(r.Mapping);
        Assert.Equal(2UL, r.PageCount);
        Assert.Equal(2, Build(new PageRangeBuilder(1, Ps), (0x1000, P(1), null), (0x2000, P(2), Heap)).Count);
    }

    [Fact]
    public void FlushEmptiesTheBuilder()
    {
        var b = new PageRangeBuilder(1, Ps);
        Assert.Null(b.Flush());
        b.Add(0x10000, P(1), Heap);
        Assert.NotNull(b.Flush());
        Assert.Null(b.Flush());
        // A page contiguous with the flushed range starts a new one.
        Assert.Null(b.Add(0x11000, P(2), Heap));
        var r = b.Flush();
        Assert.Equal((0x11000UL, 0x12000UL), (r!.Start, r.End));
    }

    [Fact]
    public void LargePageSize()
    {
        var b = new PageRangeBuilder(1, 65536);
        b.Add(0x10000, P(1), null);
        b.Add(0x20000, P(2), null);
        var r = b.Flush()!;
        Assert.Equal(2UL, r.PageCount);
        Assert.Equal(0x20000UL, r.Size);
    }

    // ---------------- PageFilter ----------------

    [Fact]
    public void EmptyFilterMatchesEverything()
    {
        var f = new PageFilter();
        Assert.True(f.IsEmpty);
        Assert.Equal("all pages", f.ToString());
        foreach (var raw in new[] { 0UL, ulong.MaxValue, 1UL << 63, 1UL << 55 })
            Assert.True(f.Matches(new PagemapEntry(raw)));
        Assert.Equal((PageCategory.None, PageCategory.None), f.ToScanCategories());
    }

    [Fact]
    public void RequireSet()
    {
        var f = new PageFilter().Require(PagemapFlags.Present, true);
        Assert.False(f.IsEmpty);
        Assert.True(f.Matches(P(1)));
        Assert.True(f.Matches(P(0, PagemapFlags.SoftDirty)));
        Assert.False(f.Matches(PagemapEntry.ForSwapped(1, 1)));
        Assert.False(f.Matches(default));
    }

    [Fact]
    public void RequireClear()
    {
        var f = new PageFilter().Require(PagemapFlags.SoftDirty, false);
        Assert.Equal(PagemapFlags.SoftDirty, f.Mask);
        Assert.Equal(PagemapFlags.None, f.Value);
        Assert.True(f.Matches(P(1)));
        Assert.True(f.Matches(default));
        Assert.False(f.Matches(P(1, PagemapFlags.SoftDirty)));
        Assert.False(f.Matches(new PagemapEntry(1UL << 55)));
    }

    [Fact]
    public void RequireCombinesAndTheLastWordOnAFlagWins()
    {
        var f = new PageFilter().Require(PagemapFlags.Present, true).Require(PagemapFlags.SoftDirty, false).Require(PagemapFlags.Exclusive, true);
        Assert.True(f.Matches(P(1, PagemapFlags.Exclusive)));
        Assert.False(f.Matches(P(1, PagemapFlags.Exclusive | PagemapFlags.SoftDirty)));
        Assert.False(f.Matches(P(1)));
        var g = f.Require(PagemapFlags.Present, false);
        Assert.False(g.Matches(P(1, PagemapFlags.Exclusive)));
        Assert.True(g.Matches(new PagemapEntry((ulong)PagemapFlags.Exclusive)));
        var h = g.Require(PagemapFlags.Present, true);
        Assert.Equal(f.Mask, h.Mask);
        Assert.Equal(f.Value, h.Value);
    }

    [Fact]
    public void FilterIgnoresTheFrameBits()
    {
        var f = new PageFilter().Require(PagemapFlags.Present, true).Require(PagemapFlags.Swapped, false);
        Assert.True(f.Matches(P(PagemapEntry.FrameMask)));
    }

    [Fact]
    public void ConstructorMasksTheValue()
    {
        var f = new PageFilter(PagemapFlags.Present, PagemapFlags.Present | PagemapFlags.SoftDirty);
        Assert.Equal(PagemapFlags.Present, f.Value);
        Assert.True(f.Matches(P(1)));
    }

    [Theory]
    [InlineData(PagemapFlags.Present, true, PageCategory.Present, PageCategory.None)]
    [InlineData(PagemapFlags.Present, false, PageCategory.Present, PageCategory.Present)]
    [InlineData(PagemapFlags.Swapped, true, PageCategory.Swapped, PageCategory.None)]
    [InlineData(PagemapFlags.Swapped, false, PageCategory.Swapped, PageCategory.Swapped)]
    [InlineData(PagemapFlags.SoftDirty, true, PageCategory.SoftDirty, PageCategory.None)]
    [InlineData(PagemapFlags.SoftDirty, false, PageCategory.SoftDirty, PageCategory.SoftDirty)]
    [InlineData(PagemapFlags.Exclusive, true, PageCategory.None, PageCategory.None)]
    [InlineData(PagemapFlags.Guard, true, PageCategory.None, PageCategory.None)]
    [InlineData(PagemapFlags.FileOrSharedAnon, false, PageCategory.None, PageCategory.None)]
    [InlineData(PagemapFlags.UffdWriteProtected, true, PageCategory.None, PageCategory.None)]
    public void ToScanCategoriesOfOneFlag(PagemapFlags flag, bool set, PageCategory mask, PageCategory inverted)
    {
        Assert.Equal((mask, inverted), new PageFilter().Require(flag, set).ToScanCategories());
    }

    [Fact]
    public void ToScanCategoriesCombined()
    {
        var f = new PageFilter().Require(PagemapFlags.Present, false).Require(PagemapFlags.SoftDirty, true)
            .Require(PagemapFlags.Swapped, true).Require(PagemapFlags.Exclusive, false);
        var (mask, inverted) = f.ToScanCategories();
        Assert.Equal(PageCategory.Present | PageCategory.SoftDirty | PageCategory.Swapped, mask);
        Assert.Equal(PageCategory.Present, inverted);
    }

    /// <summary>The scan categories are a superset pre-filter: a page passing the filter always passes the kernel's test.</summary>
    [Fact]
    public void ScanCategoriesNeverRejectAPageTheFilterAccepts()
    {
        var rng = new Random(5);
        var flags = new[] { PagemapFlags.Present, PagemapFlags.Swapped, PagemapFlags.SoftDirty, PagemapFlags.Exclusive, PagemapFlags.FileOrSharedAnon };
        for (int i = 0; i < 2000; i++)
        {
            var f = new PageFilter();
            foreach (var fl in flags)
                if (rng.Next(3) is var k && k > 0) f = f.Require(fl, k == 1);
            var e = FakePageSource.RandomEntry(rng);
            var (mask, inv) = f.ToScanCategories();
            var req = new PagemapScanRequest { CategoryMask = mask, CategoryInverted = inv };
            bool kernelPasses = req.Matches(FakePageSource.CategoriesOf(e));
            if (f.Matches(e)) Assert.True(kernelPasses, $"{f} / {e}");
            // For filters on the three mapped flags alone the pre-filter is exact.
            if ((f.Mask & ~(PagemapFlags.Present | PagemapFlags.Swapped | PagemapFlags.SoftDirty)) == 0)
                Assert.Equal(f.Matches(e), kernelPasses);
        }
    }
}
