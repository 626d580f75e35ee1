using System;
using System.Collections.Generic;
using System.Linq;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>PageMapReader over FakePageSource: pread and PAGEMAP_SCAN paths, chunking, short reads, span selection.</summary>
public class PageMapReaderTests
{
    private const int Ps = FakePageSource.Ps;

    private static readonly PagemapFlags[] FilterFlags =
    {
        PagemapFlags.Present, PagemapFlags.Swapped, PagemapFlags.SoftDirty, PagemapFlags.Exclusive,
        PagemapFlags.FileOrSharedAnon, PagemapFlags.Guard,
    };

    private static PageFilter RandomFilter(Random rng)
    {
        var f = new PageFilter();
        foreach (var fl in FilterFlags)
        {
            int k = rng.Next(4);
            if (k == 1) f = f.Require(fl, true);
            else if (k == 2) f = f.Require(fl, false);
        }
        return f;
    }

    /// <summary>What the reader must yield: every page of every span, in order, that passes the filter.</summary>
    private static List<PageHit> Expected(FakePageSource src, IEnumerable<PageSpan> spans, PageFilter filter)
    {
        var hits = new List<PageHit>();
        foreach (var s in spans)
            for (ulong a = s.Start; a < s.End && a / Ps < src.TaskEndPage; a += Ps)
            {
                var e = src.Get(a / Ps);
                if (filter.Matches(e)) hits.Add(new PageHit(a, e, s.Mapping));
            }
        return hits;
    }

    private static FakePageSource ThreeMappings(int seed, out List<PageSpan> spans)
    {
        var rng = new Random(seed);
        var src = new FakePageSource();
        ulong a = 0x5555_0000_0000UL;
        for (int i = 0; i < 3; i++)
        {
            ulong pages = (ulong)rng.Next(1, 1500);
            var m = src.AddMapping(a, a + pages * Ps, i == 0 ? "/usr/bin/fake" : "", i == 0 ? MappingKind.File : MappingKind.Anonymous);
            src.FillRandom(rng, m.Start, m.End, maxRun: rng.Next(1, 12));
            a = m.End + (ulong)rng.Next(0, 3) * Ps; // adjacent or with a gap
        }
        spans = PageMapReader.SpansOf(src.Mappings);
        return src;
    }

    [Theory]
    [InlineData(1)] [InlineData(2)] [InlineData(3)] [InlineData(4)] [InlineData(5)]
    [InlineData(6)] [InlineData(7)] [InlineData(8)] [InlineData(9)] [InlineData(10)]
    [InlineData(11)] [InlineData(12)] [InlineData(13)] [InlineData(14)] [InlineData(15)]
    [InlineData(16)] [InlineData(17)] [InlineData(18)] [InlineData(19)] [InlineData(20)]
    public void PreadAndPagemapScanYieldIdenticalHits(int seed)
    {
        var src = ThreeMappings(seed, out var spans);
        var rng = new Random(seed * 7919);
        src.WalkEndQuirk = seed % 2 == 0;
        for (int round = 0; round < 8; round++)
        {
            var filter = round == 0 ? new PageFilter() : RandomFilter(rng);
            int chunk = rng.Next(1, 700);
            var expected = Expected(src, spans, filter);
            var pread = new PageMapReader(src, chunk).Read(spans, filter, PageReadMethod.Pread).ToList();
            var scan = new PageMapReader(src, chunk).Read(spans, filter, PageReadMethod.PagemapScan).ToList();
            var auto = new PageMapReader(src, chunk).Read(spans, filter, PageReadMethod.Auto).ToList();
            Assert.Equal(expected, pread);
            Assert.Equal(expected, scan);
            Assert.Equal(expected, auto);
        }
    }

    [Fact]
    public void ABufferGrownBetweenSpansYieldsEveryPage()
    {
        // The pread buffer starts small and grows to a chunk: a one-page span, then spans past a chunk, read with the
        // default chunk by one reader, give every page in order.
        var rng = new Random(4242);
        var src = new FakePageSource();
        var small = src.AddMapping(0x10_0000_0000UL, 0x10_0000_0000UL + Ps);
        var large = src.AddMapping(0x20_0000_0000UL, 0x20_0000_0000UL + (ulong)(PageMapReader.DefaultChunkEntries * 2 + 77) * Ps);
        var middle = src.AddMapping(0x30_0000_0000UL, 0x30_0000_0000UL + 900UL * Ps);
        src.FillRandom(rng, small.Start, small.End, maxRun: 1);
        src.FillRandom(rng, large.Start, large.End, maxRun: 9);
        src.FillRandom(rng, middle.Start, middle.End, maxRun: 3);
        var spans = PageMapReader.SpansOf(src.Mappings);
        var filter = new PageFilter();
        var expected = Expected(src, spans, filter);
        foreach (var method in new[] { PageReadMethod.Pread, PageReadMethod.PagemapScan })
        {
            var reader = new PageMapReader(src);
            var copies = new List<PageHit>();
            foreach (var batch in reader.ReadBatches(spans, filter, method)) copies.AddRange(batch.ToArray());
            Assert.Equal(expected, copies);
            Assert.Equal(expected, new PageMapReader(src).Read(spans, filter, method).ToList());
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ManyScanBatchesAreResumedCorrectly(bool walkEndQuirk)
    {
        // Alternating present / none pages: with a PRESENT filter each present page is its own region,
        // so 3000 regions need six calls of 512.
        var src = new FakePageSource { WalkEndQuirk = walkEndQuirk };
        var m = src.AddMapping(0x10_0000_0000UL, 0x10_0000_0000UL + 6000UL * Ps);
        for (int i = 0; i < 6000; i += 2) src.Set(m.Start + (ulong)i * Ps, PagemapEntry.ForPresent((ulong)i + 1));
        var filter = new PageFilter().Require(PagemapFlags.Present, true);
        var spans = PageMapReader.SpansOf(src.Mappings);
        var hits = new PageMapReader(src).Read(spans, filter, PageReadMethod.PagemapScan).ToList();
        Assert.Equal(3000, hits.Count);
        Assert.Equal(Enumerable.Range(0, 3000).Select(i => m.Start + (ulong)i * 2 * Ps), hits.Select(h => h.Address));
        Assert.True(src.ScanCalls >= 6, $"{src.ScanCalls} scan calls");
        Assert.All(hits, h => Assert.Same(m, h.Mapping));
        // Regions a page apart are read with one pread each batch (ScanCoalesceGapPages): at most the span.
        Assert.InRange(src.EntriesRead, 3000, 6000);
        Assert.True(src.ReadCalls <= src.ScanCalls, $"{src.ReadCalls} preads for {src.ScanCalls} scans");
    }

    [Fact]
    public void CoalesceJoinsOnlyRegionsCloserThanTheGap()
    {
        var regions = new[]
        {
            new PageRegion(0x1000, 0x2000, PageCategory.Present),
            new PageRegion(0x3000, 0x4000, PageCategory.Present | PageCategory.SoftDirty),
            new PageRegion(0x10_0000, 0x10_1000, PageCategory.Present),
        };
        var joined = PageMapReader.Coalesce(regions, 16 * Ps);
        Assert.Equal(new[] { new PageRegion(0x1000, 0x4000, PageCategory.Present | PageCategory.SoftDirty), regions[2] }, joined);
        Assert.Equal(3, PageMapReader.Coalesce(regions, Ps).Count);
    }

    [Fact]
    public void AutoPrefersPreadOnAnEmulatedKernelUnlessTheRangeIsHuge()
    {
        var src = new FakePageSource { Features = new KernelFeatures { PagemapScan = true, Emulated = true } };
        var f = new PageFilter().Require(PagemapFlags.SoftDirty, true);
        var reader = new PageMapReader(src);
        Assert.Equal(PageReadMethod.Pread, reader.Resolve(PageReadMethod.Auto, f, 262_144));
        Assert.Equal(PageReadMethod.PagemapScan, reader.Resolve(PageReadMethod.Auto, f, PageMapReader.EmulatedPreadPreferredPages + 1));
        Assert.Equal(PageReadMethod.PagemapScan, reader.Resolve(PageReadMethod.PagemapScan, f, 1));
    }

    [Fact]
    public void PagemapScanReadsOnlyCandidateRegions()
    {
        var src = new FakePageSource();
        var m = src.AddMapping(0x7000_0000_0000UL, 0x7000_0000_0000UL + 100_000UL * Ps);
        src.Set(m.Start + 17 * Ps, PagemapEntry.ForPresent(5, PagemapFlags.SoftDirty));
        src.Set(m.Start + 99_999UL * Ps, PagemapEntry.ForSwapped(1, 9, PagemapFlags.SoftDirty));
        var filter = new PageFilter().Require(PagemapFlags.SoftDirty, true);
        var hits = new PageMapReader(src).Read(PageMapReader.SpansOf(src.Mappings), filter, PageReadMethod.PagemapScan).ToList();
        Assert.Equal(new[] { m.Start + 17 * Ps, m.Start + 99_999UL * Ps }, hits.Select(h => h.Address));
        Assert.Equal(2, src.EntriesRead);
    }

    [Fact]
    public void SpansLargerThanTheDefaultChunkAreReadInChunks()
    {
        var src = new FakePageSource();
        const int pages = 40_000;
        var m = src.AddMapping(0x1000_0000UL, 0x1000_0000UL + pages * (ulong)Ps);
        src.FillRandom(new Random(3), m.Start, m.End);
        var spans = PageMapReader.SpansOf(src.Mappings);
        var hits = new PageMapReader(src).Read(spans, new PageFilter(), PageReadMethod.Pread).ToList();
        Assert.Equal(pages, hits.Count);
        Assert.Equal(PageMapReader.DefaultChunkEntries, src.MaxPreadLength);
        Assert.Equal(3, src.PreadCalls);
        Assert.Equal(Expected(src, spans, new PageFilter()), hits);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(23)]
    [InlineData(24)]
    [InlineData(1000)]
    public void ChunkBoundariesLoseAndRepeatNothing(int chunk)
    {
        var src = new FakePageSource();
        var m = src.AddMapping(0x40_0000UL, 0x40_0000UL + 23UL * Ps);
        for (int i = 0; i < 23; i++) src.Set(m.Start + (ulong)i * Ps, PagemapEntry.ForPresent((ulong)i + 100));
        var hits = new PageMapReader(src, chunk).Read(PageMapReader.SpansOf(src.Mappings), new PageFilter(), PageReadMethod.Pread).ToList();
        Assert.Equal(Enumerable.Range(0, 23).Select(i => (m.Start + (ulong)i * Ps, (ulong?)(ulong)(i + 100))), hits.Select(h => (h.Address, h.Entry.Pfn)));
        Assert.Equal((23 + chunk - 1) / chunk, src.PreadCalls);
        Assert.True(src.MaxPreadLength <= chunk);
        // Consecutive preads cover the span exactly.
        ulong next = m.Start / Ps;
        foreach (var (first, len) in src.Preads) { Assert.Equal(next, first); next += (ulong)len; }
        Assert.Equal(m.End / Ps, next);
    }

    [Theory]
    [InlineData(PageReadMethod.Pread, 7)]
    [InlineData(PageReadMethod.Pread, 16 * 1024)]
    [InlineData(PageReadMethod.PagemapScan, 7)]
    public void ShortReadAtTheEndOfTheAddressSpaceStopsCleanly(PageReadMethod method, int chunk)
    {
        var src = new FakePageSource();
        var m = src.AddMapping(0x7fff_0000_0000UL, 0x7fff_0000_0000UL + 100UL * Ps);
        for (int i = 0; i < 100; i++) src.Set(m.Start + (ulong)i * Ps, PagemapEntry.ForPresent(1));
        src.TaskEndPage = m.Start / Ps + 50;
        var beyond = src.AddMapping(0xffff_ffff_ff60_0000UL, 0xffff_ffff_ff60_1000UL, "[vvar]", MappingKind.Other);
        var spans = new List<PageSpan> { new(m.Start, m.End, m), new(beyond.Start, beyond.End, beyond) };
        var filter = method == PageReadMethod.PagemapScan ? new PageFilter().Require(PagemapFlags.Present, true) : new PageFilter();
        var reader = new PageMapReader(src, chunk);
        ulong progress = 0;
        reader.Progress = p => progress = p;
        var hits = reader.Read(spans, filter, method).ToList();
        Assert.Equal(50, hits.Count);
        Assert.Equal(m.Start + 49UL * Ps, hits[^1].Address);
        Assert.Equal(101UL, progress);
    }

    [Fact]
    public void ProgressReportsPagesWalked()
    {
        var src = new FakePageSource();
        src.AddMapping(0x10000, 0x20000);
        src.AddMapping(0x30000, 0x32000);
        var seen = new List<ulong>();
        var reader = new PageMapReader(src) { Progress = seen.Add };
        _ = reader.Read(PageMapReader.SpansOf(src.Mappings), new PageFilter(), PageReadMethod.Pread).ToList();
        Assert.Equal(new ulong[] { 16, 18 }, seen);
    }

    [Fact]
    public void ReadIsLazyAndCancellable()
    {
        var src = new FakePageSource();
        src.AddMapping(0x10000, 0x10000 + 100UL * Ps);
        using var cts = new System.Threading.CancellationTokenSource();
        var e = new PageMapReader(src, 10).Read(PageMapReader.SpansOf(src.Mappings), new PageFilter(), PageReadMethod.Pread, cts.Token).GetEnumerator();
        Assert.Equal(0, src.PreadCalls);
        Assert.True(e.MoveNext());
        cts.Cancel();
        for (int i = 0; i < 9; i++) Assert.True(e.MoveNext()); // the rest of the chunk already read
        Assert.Throws<OperationCanceledException>(() => e.MoveNext());
    }

    // ---------------- method resolution ----------------

    [Fact]
    public void AutoResolvesToPreadWithoutAFilter()
    {
        var reader = new PageMapReader(new FakePageSource(pagemapScan: true));
        Assert.Equal(PageReadMethod.Pread, reader.Resolve(PageReadMethod.Auto, new PageFilter()));
    }

    [Theory]
    [InlineData(PagemapFlags.SoftDirty, true)]
    [InlineData(PagemapFlags.Swapped, true)]
    public void AutoResolvesToPagemapScanWhenTheFilterAsksForRarePages(PagemapFlags flag, bool set)
    {
        var f = new PageFilter().Require(flag, set);
        Assert.Equal(PageReadMethod.PagemapScan, new PageMapReader(new FakePageSource(pagemapScan: true)).Resolve(PageReadMethod.Auto, f));
        Assert.Equal(PageReadMethod.Pread, new PageMapReader(new FakePageSource(pagemapScan: false)).Resolve(PageReadMethod.Auto, f));
    }

    // Measured (tests/Bench.ps1): for present pages (or the absence of a rare flag) the scan walks the page
    // tables a second time around the entries pread must read anyway, and loses to pread alone.
    [Theory]
    [InlineData(PagemapFlags.Present, true)]
    [InlineData(PagemapFlags.Present, false)]
    [InlineData(PagemapFlags.SoftDirty, false)]
    [InlineData(PagemapFlags.Swapped, false)]
    public void AutoResolvesToPreadWhenTheFilterAsksForCommonPages(PagemapFlags flag, bool set)
    {
        var f = new PageFilter().Require(flag, set);
        var reader = new PageMapReader(new FakePageSource(pagemapScan: true));
        Assert.Equal(PageReadMethod.Pread, reader.Resolve(PageReadMethod.Auto, f, 0, out var why));
        Assert.False(string.IsNullOrEmpty(why));
    }

    [Fact]
    public void AutoResolvesToPreadForAFilterTheKernelCannotPreselect()
    {
        var f = new PageFilter().Require(PagemapFlags.Exclusive, true);
        Assert.Equal(PageReadMethod.Pread, new PageMapReader(new FakePageSource(pagemapScan: true)).Resolve(PageReadMethod.Auto, f));
    }

    [Fact]
    public void ExplicitMethodsAreKeptOrRefused()
    {
        var f = new PageFilter().Require(PagemapFlags.Present, true);
        var with = new PageMapReader(new FakePageSource(pagemapScan: true));
        Assert.Equal(PageReadMethod.Pread, with.Resolve(PageReadMethod.Pread, f));
        Assert.Equal(PageReadMethod.PagemapScan, with.Resolve(PageReadMethod.PagemapScan, new PageFilter()));
        var without = new PageMapReader(new FakePageSource(pagemapScan: false));
        var ex = Assert.Throws<EngineException>(() => without.Resolve(PageReadMethod.PagemapScan, f));
        Assert.Equal(EngineError.PagemapScanNotSupported, ex.Error);
        Assert.Equal("fake kernel without PAGEMAP_SCAN", ex.Message);
        // Read resolves too, on first enumeration.
        Assert.Throws<EngineException>(() => without.Read(new List<PageSpan>(), f, PageReadMethod.PagemapScan).ToList());
    }

    // ---------------- span selection ----------------

    private static List<MemoryMapping> Maps() => MapsParser.Parse(
        "0000000000010000-0000000000014000 rw-p 00000000 00:00 0 [heap]\n" +
        "0000000000020000-0000000000030000 r--p 00000000 fe:00 9 /lib/x.so\n" +
        "0000000000030000-0000000000031000 rw-p 00000000 00:00 0 \n" +
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n");

    [Fact]
    public void SpansOfSkipsVsyscall()
    {
        var maps = Maps();
        var spans = PageMapReader.SpansOf(maps);
        Assert.Equal(3, spans.Count);
        Assert.DoesNotContain(spans, s => s.Mapping!.Kind == MappingKind.Vsyscall);
        Assert.Equal(new[] { (0x10000UL, 0x14000UL), (0x20000UL, 0x30000UL), (0x30000UL, 0x31000UL) }, spans.Select(s => (s.Start, s.End)));
        Assert.Same(maps[0], spans[0].Mapping);
        Assert.Empty(PageMapReader.SpansOf(maps, m => m.Kind == MappingKind.Vsyscall));
        Assert.Equal("/lib/x.so", Assert.Single(PageMapReader.SpansOf(maps, m => m.Kind == MappingKind.File)).Mapping!.Path);
    }

    [Fact]
    public void SpansOfTheRealSelfMapsSkipsOnlyVsyscall()
    {
        var maps = MapsParser.Parse(MapsParserTests.Fixture("maps-self.txt"));
        var spans = PageMapReader.SpansOf(maps);
        Assert.Equal(maps.Count - 1, spans.Count);
        Assert.All(spans, s => Assert.True(s.End < 0x8000_0000_0000UL));
    }

    [Fact]
    public void SpansOfRangeClipsToMappingsAndCountsUnmappedBytes()
    {
        var spans = PageMapReader.SpansOfRange(Maps(), 0x12000, 0x20000, Ps, out var unmapped);
        Assert.Equal(new[] { (0x12000UL, 0x14000UL), (0x20000UL, 0x30000UL), (0x30000UL, 0x31000UL) }, spans.Select(s => (s.Start, s.End)));
        Assert.Equal(0x20000UL - 0x2000 - 0x10000 - 0x1000, unmapped);
        Assert.Equal(new[] { "[heap]", "/lib/x.so", "" }, spans.Select(s => s.Mapping!.Path));
    }

    [Fact]
    public void SpansOfRangeInsideOneMapping()
    {
        var s = Assert.Single(PageMapReader.SpansOfRange(Maps(), 0x21000, 0x2000, Ps, out var unmapped));
        Assert.Equal((0x21000UL, 0x23000UL), (s.Start, s.End));
        Assert.Equal(0UL, unmapped);
    }

    [Fact]
    public void SpansOfRangeOutsideEveryMapping()
    {
        Assert.Empty(PageMapReader.SpansOfRange(Maps(), 0x40000, 0x3000, Ps, out var unmapped));
        Assert.Equal(0x3000UL, unmapped);
        Assert.Empty(PageMapReader.SpansOfRange(Maps(), 0xffffffffff600000, 0x1000, Ps, out unmapped));
        Assert.Equal(0x1000UL, unmapped);
    }

    [Theory]
    [InlineData(0x10001UL, 0x1000UL)]   // unaligned address
    [InlineData(0x10800UL, 0x1000UL)]
    [InlineData(0x10000UL, 0x1001UL)]   // unaligned length
    [InlineData(0x10000UL, 0x800UL)]
    [InlineData(0x10000UL, 0UL)]        // zero length
    [InlineData(0xFFFF_FFFF_FFFF_F000UL, 0x2000UL)] // overflow
    public void SpansOfRangeRejectsBadRanges(ulong start, ulong length)
    {
        var ex = Assert.Throws<EngineException>(() => PageMapReader.SpansOfRange(Maps(), start, length, Ps, out _));
        Assert.Equal(EngineError.InvalidArgument, ex.Error);
    }

    [Fact]
    public void ReadOfASpansOfRangeYieldsOnlyTheRange()
    {
        var src = new FakePageSource();
        var m = src.AddMapping(0x100000, 0x200000);
        src.FillRandom(new Random(9), m.Start, m.End);
        var spans = PageMapReader.SpansOfRange(src.Mappings, 0x0F0000, 0x20000, Ps, out var unmapped);
        Assert.Equal(0x10000UL, unmapped);
        var hits = new PageMapReader(src).Read(spans, new PageFilter(), PageReadMethod.Pread).ToList();
        Assert.Equal(16, hits.Count);
        Assert.Equal(0x100000UL, hits[0].Address);
        Assert.Equal(0x10F000UL, hits[^1].Address);
    }

    // ---------------- ScanRegions ----------------

    private static FakePageSource Alternating(out List<PageSpan> spans)
    {
        var src = new FakePageSource { WalkEndQuirk = true };
        var a = src.AddMapping(0x10_0000_0000UL, 0x10_0000_0000UL + 1500UL * Ps);
        var b = src.AddMapping(0x20_0000_0000UL, 0x20_0000_0000UL + 1500UL * Ps);
        foreach (var m in new[] { a, b })
            for (int i = 0; i < 1500; i += 2) src.Set(m.Start + (ulong)i * Ps, PagemapEntry.ForPresent(1));
        spans = PageMapReader.SpansOf(src.Mappings);
        return src;
    }

    [Fact]
    public void ScanRegionsResumesAcrossBatchesAndSpans()
    {
        var src = Alternating(out var spans);
        var template = new PagemapScanRequest { CategoryMask = PageCategory.Present, ReturnMask = PageCategory.Present };
        var regions = new PageMapReader(src).ScanRegions(spans, template).ToList();
        Assert.Equal(1500, regions.Count);
        Assert.All(regions, r => Assert.Equal((ulong)Ps, r.End - r.Start));
        Assert.Equal(regions.OrderBy(r => r.Start).Select(r => r.Start).Distinct(), regions.Select(r => r.Start));
        Assert.True(src.ScanCalls >= 4);
    }

    [Theory]
    [InlineData(1UL)]
    [InlineData(700UL)]
    [InlineData(751UL)] // crosses into the second span
    [InlineData(1500UL)]
    public void ScanRegionsHonoursMaxPagesOverAllSpans(ulong maxPages)
    {
        var src = Alternating(out var spans);
        var template = new PagemapScanRequest { CategoryMask = PageCategory.Present, ReturnMask = PageCategory.Present, MaxPages = maxPages };
        var regions = new PageMapReader(src).ScanRegions(spans, template).ToList();
        Assert.Equal(maxPages, regions.Aggregate(0UL, (n, r) => n + (r.End - r.Start) / Ps));
    }
}
