using System;
using System.Collections.Generic;
using System.Linq;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 29 (la57): PageMapReader over spans of a 5-level address space (a task size of 2^56 - 4 KiB), where the guests of
/// tests/vm/la57-cmdlets.sh map only a few pages: a span across 2^47 and one that ends at the 5-level task size, each
/// twice the split threshold, read by pread, by one PAGEMAP_SCAN and by a scan split in halves, give the same pages in
/// address order, none past the span and none left out.
/// </summary>
public sealed class PageMapReaderLa57Tests
{
    private const ulong TaskSize57 = (1UL << 56) - FakePageSource.Ps;
    private static readonly ulong Pages = 2 * PageMapReader.SplitScanPages + 3; // odd: the halves differ by a page

    public static TheoryData<ulong> Starts => new()
    {
        (1UL << 47) - PageMapReader.SplitScanPages * FakePageSource.Ps,  // across 2^47
        TaskSize57 - (2 * PageMapReader.SplitScanPages + 3) * FakePageSource.Ps, // up to the 5-level task size
    };

    [Theory]
    [MemberData(nameof(Starts))]
    public void ASpanAboveTheFourLevelSpace_ReadsTheSamePagesEveryWay(ulong start)
    {
        var src = new FakePageSource { TaskEndPage = TaskSize57 / FakePageSource.Ps };
        ulong end = start + Pages * FakePageSource.Ps;
        src.AddMapping(start, end);
        var rng = new Random(20261205);
        var touched = new SortedSet<ulong> { 0, 1, Pages / 2 - 1, Pages / 2, Pages - 1 };
        while (touched.Count < 300) touched.Add((ulong)rng.NextInt64(0, (long)Pages));
        foreach (var p in touched) src.Set(start + p * FakePageSource.Ps, PagemapEntry.ForPresent(p + 1, PagemapFlags.Exclusive));
        var expected = touched.Select(p => start + p * FakePageSource.Ps).ToList();
        var spans = new List<PageSpan> { new(start, end, src.Mappings[0]) };
        var present = new PageFilter(PagemapFlags.Present, PagemapFlags.Present);

        Assert.Equal(expected, new PageMapReader(src).Read(spans, present, PageReadMethod.Pread).Select(h => h.Address).ToList());
        Assert.Equal(expected, new PageMapReader(src) { SplitScans = false }.Read(spans, present, PageReadMethod.PagemapScan).Select(h => h.Address).ToList());
        Assert.Equal(expected, new PageMapReader(src) { SplitScans = true }.Read(spans, present, PageReadMethod.PagemapScan).Select(h => h.Address).ToList());
    }
}
