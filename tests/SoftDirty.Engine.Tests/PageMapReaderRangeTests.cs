using System;
using System.Collections.Generic;
using System.Linq;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// PageMapReader.ReadRanges (runs found by a vectorised search over the raw chunks) against the reference: every
/// passing page fed to PageRangeBuilder.Add one at a time. And PagemapSearch against a scalar loop.
/// </summary>
public class PageMapReaderRangeTests
{
    private const int Ps = FakePageSource.Ps;

    private static readonly PagemapEntry[] Kinds =
    {
        default,
        PagemapEntry.ForPresent(1),
        PagemapEntry.ForPresent(2, PagemapFlags.Exclusive),
        PagemapEntry.ForPresent(3, PagemapFlags.SoftDirty | PagemapFlags.Exclusive),
        PagemapEntry.ForSwapped(1, 7),
        PagemapEntry.ForSwapped(1, 8, PagemapFlags.SoftDirty),
    };

    /// <summary>Two adjacent mappings (a range never crosses between them) with random runs of the entry kinds.</summary>
    private static FakePageSource RandomSource(int seed, int pages, out List<PageSpan> spans)
    {
        var rng = new Random(seed);
        var src = new FakePageSource();
        var a = src.AddMapping(0x10_0000UL, 0x10_0000UL + (ulong)pages * Ps);
        var b = src.AddMapping(a.End, a.End + (ulong)pages * Ps, "/lib/x.so", MappingKind.File);
        foreach (var m in new[] { a, b })
            for (ulong addr = m.Start; addr < m.End;)
            {
                var kind = Kinds[rng.Next(Kinds.Length)];
                int run = rng.Next(1, 40);
                for (int i = 0; i < run && addr < m.End; i++, addr += Ps)
                    if (kind.Raw != 0) src.Set(addr, new PagemapEntry(kind.Raw + (ulong)rng.Next(0, 3))); // PFNs differ, flags do not
            }
        spans = PageMapReader.SpansOf(src.Mappings);
        return src;
    }

    private static List<(ulong, ulong, PagemapFlags, string?)> Reference(FakePageSource src, List<PageSpan> spans, PageFilter filter)
    {
        var b = new PageRangeBuilder(src.ProcessId, Ps);
        var result = new List<PageRange>();
        foreach (var hit in new PageMapReader(src).Read(spans, filter, PageReadMethod.Pread))
            if (b.Add(hit.Address, hit.Entry, hit.Mapping) is { } r) result.Add(r);
        if (b.Flush() is { } last) result.Add(last);
        return result.ConvertAll(r => (r.Start, r.End, r.Flags, r.Mapping));
    }

    private static readonly PageFilter[] Filters =
    {
        new PageFilter(),
        new PageFilter().Require(PagemapFlags.Present, true),
        new PageFilter().Require(PagemapFlags.Present, false),
        new PageFilter().Require(PagemapFlags.SoftDirty, true),
        new PageFilter().Require(PagemapFlags.Swapped, true),
        new PageFilter().Require(PagemapFlags.Present, true).Require(PagemapFlags.Exclusive, true),
    };

    public static IEnumerable<object[]> Cases()
    {
        for (int f = 0; f < Filters.Length; f++)
            foreach (var method in new[] { PageReadMethod.Pread, PageReadMethod.PagemapScan, PageReadMethod.Auto })
                foreach (int chunk in new[] { 1, 3, 64, 16 * 1024 })
                    yield return new object[] { f, method, chunk };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RangesEqualTheOnePageAtATimeBuilder(int filterIndex, PageReadMethod method, int chunk)
    {
        var filter = Filters[filterIndex];
        for (int seed = 0; seed < 5; seed++)
        {
            var src = RandomSource(seed, 700, out var spans);
            var expected = Reference(src, spans, filter);
            var ranges = new PageMapReader(src, chunk).ReadRanges(spans, filter, method).ToList();
            Assert.Equal(expected, ranges.ConvertAll(r => (r.Start, r.End, r.Flags, r.Mapping)));
            Assert.All(ranges, r => Assert.Equal(src.ProcessId, r.ProcessId));
            Assert.NotEmpty(expected);
        }
    }

    [Fact]
    public void ARangeSpansChunksWithoutSplitting()
    {
        var src = new FakePageSource();
        var m = src.AddMapping(0x20_0000UL, 0x20_0000UL + 100UL * Ps);
        for (int i = 0; i < 100; i++) src.Set(m.Start + (ulong)i * Ps, PagemapEntry.ForPresent((ulong)i));
        var ranges = new PageMapReader(src, 7).ReadRanges(PageMapReader.SpansOf(src.Mappings), new PageFilter(), PageReadMethod.Pread).ToList();
        var r = Assert.Single(ranges);
        Assert.Equal((m.Start, m.End), (r.Start, r.End));
        Assert.Equal(15, src.PreadCalls);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    public void VectorSearchEqualsAScalarLoop(int seed)
    {
        var rng = new Random(seed);
        var entries = new PagemapEntry[rng.Next(50, 300)];
        for (int i = 0; i < entries.Length; i++) entries[i] = rng.Next(4) == 0 ? Kinds[rng.Next(Kinds.Length)] : default;
        ulong[] masks = { (ulong)PagemapFlags.Present, PagemapEntry.FlagMask, (ulong)(PagemapFlags.Present | PagemapFlags.SoftDirty) };
        foreach (var mask in masks)
            foreach (var value in new[] { 0UL, (ulong)PagemapFlags.Present & mask })
                foreach (var equal in new[] { true, false })
                    for (int from = 0; from <= entries.Length; from++)
                    {
                        int expected = from;
                        while (expected < entries.Length && ((entries[expected].Raw & mask) == value) != equal) expected++;
                        Assert.Equal(expected, PagemapSearch.IndexOf(entries, from, mask, value, equal));
                    }
    }
}
