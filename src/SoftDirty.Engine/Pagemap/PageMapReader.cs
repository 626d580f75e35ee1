using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Tasks;

namespace SoftDirty;

/// <summary>
/// Walks spans of a page source and yields the pages that pass a filter. The filter runs on the raw
/// entries before anything is allocated; the PAGEMAP_SCAN method lets the kernel skip what cannot match
/// and then applies the same filter to the pread entries, so both methods yield the same pages.
/// </summary>
internal sealed class PageMapReader
{
    /// <summary>Entries per pread: 16 Ki entries = 128 KiB of pagemap = 64 MiB of address space.</summary>
    public const int DefaultChunkEntries = 16 * 1024;
    /// <summary>Regions per PAGEMAP_SCAN call.</summary>
    public const int ScanRegionBatch = 512;

    private readonly IPageSource _source;
    /// <summary>Entries a pread takes at most (the chunk).</summary>
    private readonly int _chunkEntries;
    /// <summary>The pread buffer, grown to what the reads need up to a chunk (a small read or a scan that finds little allocates little).</summary>
    private PagemapEntry[]? _buffer;
    private PagemapEntry[]? _second;
    private PageHit[]? _hits;
    private readonly PageRegion[] _regions = new PageRegion[ScanRegionBatch];

    public PageMapReader(IPageSource source, int chunkEntries = DefaultChunkEntries)
    {
        _source = source;
        _chunkEntries = chunkEntries;
        _parallel = source is ProcPageSource && Environment.ProcessorCount > 1
            && AppContext.TryGetSwitch(ParallelReadsSwitch, out bool parallel) && parallel;
        SplitScans = source is ProcPageSource && Environment.ProcessorCount > 1
            && !(AppContext.TryGetSwitch(SerialScansSwitch, out bool serial) && serial);
    }

    /// <summary>
    /// Whether a PAGEMAP_SCAN over a span of at least <see cref="SplitScanPages"/> walks its second half on another
    /// thread meanwhile: the walk is CPU work in the kernel under the shared mmap lock, so two walks run side by side,
    /// and one thread wake-up per span costs nothing against a walk of a GiB or more (unlike a wake-up per 64 MiB
    /// chunk: <see cref="ParallelReadsSwitch"/>). By default for /proc on more than one core, unless
    /// <see cref="SerialScansSwitch"/> is set; tests set it either way.
    /// </summary>
    internal bool SplitScans { get; set; }

    /// <summary>The AppContext switch that keeps every PAGEMAP_SCAN on the calling thread.</summary>
    public const string SerialScansSwitch = "SoftDirty.Pagemap.SerialScans";

    /// <summary>Spans of at least this many pages (1 GiB of 4 KiB pages) are scanned in two halves at once.</summary>
    public const ulong SplitScanPages = 1UL << 18;

    /// <summary>Region batches the second half's walk may run ahead of the reader (bounded memory).</summary>
    private const int SplitScanQueuedBatches = 16;

    /// <summary>
    /// Whether chunks are read two at a time on two threads: pread of pagemap is CPU-bound in the kernel (the
    /// page-table walk under the shared mmap lock), so a second core could read the next chunk meanwhile. Only
    /// for /proc (independent preads of one descriptor), only past a span's first chunk, and off unless
    /// <see cref="ParallelReadsSwitch"/> is set: on the busy 2-core machine it was measured on (tests/Bench.ps1,
    /// "parallel reads over serial") the second thread's wake-up per chunk pair cost more than it saved (0.74-0.82x).
    /// </summary>
    private readonly bool _parallel;

    /// <summary>The AppContext switch that turns the two-thread reads on: [AppContext]::SetSwitch(name, $true).</summary>
    public const string ParallelReadsSwitch = "SoftDirty.Pagemap.ParallelReads";

    /// <summary>Called after each chunk with the pages walked so far.</summary>
    public Action<ulong>? Progress { get; set; }

    /// <summary>
    /// An emulated pagemap reads at memory speed (billions of entries a second), faster than any scan
    /// up to this many pages (16 GiB); beyond it, as in huge sparse mappings, PAGEMAP_SCAN skips the holes.
    /// </summary>
    public const ulong EmulatedPreadPreferredPages = 4UL << 20;

    /// <summary>
    /// PAGEMAP_SCAN regions closer than this many pages are read with one pread: a few KiB more of
    /// pagemap costs less than another system call.
    /// </summary>
    public const ulong ScanCoalesceGapPages = 256;

    /// <summary>The method Auto picks for a filter on this source; throws PagemapScanNotSupported when PagemapScan is asked for and missing.</summary>
    public PageReadMethod Resolve(PageReadMethod method, PageFilter filter, ulong pages = 0) => Resolve(method, filter, pages, out _);

    /// <summary>
    /// The method Auto picks, and why (for -Verbose). Measured on 6.18 (tests/Bench.ps1, pagemapAuto*): on a
    /// real process PAGEMAP_SCAN pays where the pages it must find are rare (a soft-dirty or swapped page: the
    /// kernel walks ~3-10x faster than pread and nothing is read where nothing matches); for present pages
    /// the pagemap must be read around every hit anyway (PFN, exclusive bit), so the scan is a second walk
    /// over the same page tables and loses to pread alone (0.6-0.9x on 1 page in 64 present).
    /// </summary>
    public PageReadMethod Resolve(PageReadMethod method, PageFilter filter, ulong pages, out string reason)
    {
        if (method == PageReadMethod.PagemapScan && !_source.Features.PagemapScan)
            throw new EngineException(EngineError.PagemapScanNotSupported,
                _source.Features.PagemapScanReason ?? "PAGEMAP_SCAN is not available for this process.", _source.ProcessId);
        if (method != PageReadMethod.Auto) { reason = "asked for"; return method; }
        if (!_source.Features.PagemapScan) { reason = "no PAGEMAP_SCAN: " + _source.Features.PagemapScanReason; return PageReadMethod.Pread; }
        var (mask, inverted) = filter.ToScanCategories();
        if (mask == PageCategory.None) { reason = "the filter gives PAGEMAP_SCAN nothing to skip by"; return PageReadMethod.Pread; }
        if (_source.Features.Emulated)
        {
            bool small = pages <= EmulatedPreadPreferredPages;
            reason = small ? $"an emulated pagemap of at most {EmulatedPreadPreferredPages:N0} pages reads faster than a scan" : "a large emulated space: the scan skips its holes";
            return small ? PageReadMethod.Pread : PageReadMethod.PagemapScan;
        }
        var rare = mask & ~inverted & RareCategories;
        if (rare != PageCategory.None) { reason = $"the kernel skips pages that are not {rare} without reading their entries"; return PageReadMethod.PagemapScan; }
        reason = "present or absent pages: pread reads each entry once, a scan would walk the page tables twice";
        return PageReadMethod.Pread;
    }

    /// <summary>The categories a filter can require that few pages have, so a PAGEMAP_SCAN for them skips most of a space.</summary>
    public const PageCategory RareCategories = PageCategory.SoftDirty | PageCategory.Swapped;

    /// <summary>The pages that pass the filter, one at a time (see <see cref="ReadBatches"/> for speed).</summary>
    public IEnumerable<PageHit> Read(IReadOnlyList<PageSpan> spans, PageFilter filter, PageReadMethod method, CancellationToken cancel = default)
    {
        foreach (var batch in ReadBatches(spans, filter, method, cancel))
            for (int i = 0; i < batch.Length; i++)
                yield return batch.Span[i];
    }

    /// <summary>
    /// The pages that pass the filter, a batch per pagemap chunk. A batch lives in a reused buffer: use it
    /// before asking for the next.
    /// </summary>
    public IEnumerable<ReadOnlyMemory<PageHit>> ReadBatches(IReadOnlyList<PageSpan> spans, PageFilter filter, PageReadMethod method, CancellationToken cancel = default)
    {
        foreach (var (span, address, buffer, count) in Chunks(spans, filter, method, cancel))
        {
            if (_hits is null || _hits.Length < count) _hits = new PageHit[buffer.Length];
            int n = Collect(buffer.AsSpan(0, count), address, (ulong)_source.PageSize, filter, span.Mapping, _hits);
            if (n > 0) yield return new ReadOnlyMemory<PageHit>(_hits, 0, n);
        }
    }

    /// <summary>
    /// Runs of contiguous pages of one mapping that pass the filter and have equal flags, built from the
    /// chunks directly (a vectorised search for where each run ends): the work per page is a compare, and an
    /// object is made per range only.
    /// </summary>
    public IEnumerable<PageRange> ReadRanges(IReadOnlyList<PageSpan> spans, PageFilter filter, PageReadMethod method, CancellationToken cancel = default)
    {
        var builder = new PageRangeBuilder(_source.ProcessId, _source.PageSize);
        var closed = new List<PageRange>();
        foreach (var (span, address, buffer, count) in Chunks(spans, filter, method, cancel))
        {
            AddRuns(buffer.AsSpan(0, count), address, (ulong)_source.PageSize, filter, span.Mapping, builder, closed);
            foreach (var r in closed) yield return r;
            closed.Clear();
        }
        if (builder.Flush() is { } last) yield return last;
    }

    /// <summary>Splits a chunk into runs of equal flags and adds those that pass the filter; the ranges they close go to <paramref name="closed"/>.</summary>
    private static void AddRuns(ReadOnlySpan<PagemapEntry> entries, ulong firstAddress, ulong pageSize, PageFilter filter, MemoryMapping? mapping,
        PageRangeBuilder builder, List<PageRange> closed)
    {
        var mask = (ulong)filter.Mask;
        var value = (ulong)filter.Value;
        int i = 0;
        while (i < entries.Length)
        {
            int end = PagemapSearch.RunEnd(entries, i);
            ulong raw = entries[i].Raw;
            if ((raw & mask) == value
                && builder.AddRun(firstAddress + (ulong)i * pageSize, firstAddress + (ulong)end * pageSize, (PagemapFlags)(raw & PagemapEntry.FlagMask), mapping) is { } done)
                closed.Add(done);
            i = end;
        }
    }

    /// <summary>
    /// The chunks of pagemap entries to filter, each read into the reused buffer (valid until the next):
    /// the span it lies in, the address of its first page and its entry count. The method decides which
    /// parts of each span are read at all.
    /// </summary>
    private IEnumerable<(PageSpan Span, ulong Address, PagemapEntry[] Buffer, int Count)> Chunks(IReadOnlyList<PageSpan> spans, PageFilter filter, PageReadMethod method, CancellationToken cancel)
    {
        ulong pages = 0;
        foreach (var span in spans) pages += (span.End - span.Start) / (ulong)_source.PageSize;
        var resolved = Resolve(method, filter, pages);
        ulong walked = 0;
        foreach (var original in spans)
        {
            // A live process may unmap or replace a mapping between the read of its maps and that of its pagemap:
            // each chunk is checked against the mapping after it is read, before it is handed on, and the rest of
            // a span whose mapping changed is read again under the mappings that are there now.
            var pending = new List<PageSpan> { original };
            int changes = 0;
            for (int k = 0; k < pending.Count; k++)
            {
                var span = pending[k];
                ulong verifiedTo = span.Start;
                bool changed = false;
                foreach (var (address, buffer, count) in SpanChunks(span, resolved, filter, cancel))
                {
                    if (span.Mapping is { } m && !_source.MappingUnchanged(m, address, address + (ulong)count * (ulong)_source.PageSize))
                    {
                        changed = true;
                        break;
                    }
                    yield return (span, address, buffer, count);
                    verifiedTo = address + (ulong)count * (ulong)_source.PageSize;
                }
                // A scan that found nothing read no chunk to check: the mapping must still be the one it scanned.
                if (!changed && span.Mapping is { } scanned && verifiedTo < span.End && !_source.MappingUnchanged(scanned, span.Start, span.End))
                    changed = true;
                if (!changed) continue;
                if (++changes > MappingChangeRetries)
                    throw new EngineException(EngineError.MappingsChanged,
                        $"The mappings of process {_source.ProcessId} ({_source.Name}) at 0x{span.Start:x}-0x{original.End:x} changed {changes} times while its page map was read " +
                        "(mmap, munmap, mremap or mprotect at the same time); the pages already given were checked, the rest is not given. Run the command again.", _source.ProcessId);
                pending.AddRange(Reselect(_source.ReadMappings(withCounters: false), verifiedTo, span.End));
            }
            walked += (original.End - original.Start) / (ulong)_source.PageSize;
            Progress?.Invoke(walked);
        }
    }

    /// <summary>Whether <see cref="ScanRegions"/> checks each batch against its span's mapping (MappingsChanged where it changed).</summary>
    public bool CheckScannedMappings { get; set; }

    /// <summary>How many times the mappings under one span may change during its read before the read gives up (MappingsChanged).</summary>
    public const int MappingChangeRetries = 8;

    /// <summary>
    /// Which mappings a span read again after its mapping changed may take (-Mapping's names); null: every one. Spans
    /// of an address range take whatever is mapped there now.
    /// </summary>
    public Func<MemoryMapping, bool>? Selector { get; set; }

    /// <summary>The spans of [start, end) under the mappings read now that the selector accepts.</summary>
    private List<PageSpan> Reselect(IReadOnlyList<MemoryMapping> mappings, ulong start, ulong end)
    {
        var spans = new List<PageSpan>();
        foreach (var m in mappings)
        {
            ulong s = Math.Max(start, m.Start), e = Math.Min(end, m.End);
            if (s < e && m.Kind != MappingKind.Vsyscall && (Selector?.Invoke(m) ?? true)) spans.Add(new PageSpan(s, e, m));
        }
        return spans;
    }

    /// <summary>The chunks of one span, by the method resolved for the read.</summary>
    private IEnumerable<(ulong Address, PagemapEntry[] Buffer, int Count)> SpanChunks(PageSpan span, PageReadMethod resolved, PageFilter filter, CancellationToken cancel)
    {
        // PAGEMAP_SCAN skips VM_PFNMAP VMAs ([vvar]) that pread reports: read those with pread.
        if (resolved == PageReadMethod.PagemapScan && span.Mapping?.Kind != MappingKind.Vvar)
        {
            var regions = SplitScans && (span.End - span.Start) / (ulong)_source.PageSize >= SplitScanPages
                ? ScanSpanSplit(span, filter, cancel) : ScanSpan(span, filter, _regions, cancel);
            foreach (var region in regions)
                foreach (var chunk in PreadSpan(region.Start, region.End, cancel))
                    yield return chunk;
        }
        else
        {
            foreach (var chunk in PreadSpan(span.Start, span.End, cancel))
                yield return chunk;
        }
    }

    /// <summary>The chunks of [start, end): address, buffer (one of two reused ones) and entry count.</summary>
    private IEnumerable<(ulong Address, PagemapEntry[] Buffer, int Count)> PreadSpan(ulong start, ulong end, CancellationToken cancel)
    {
        ulong pageSize = (ulong)_source.PageSize;
        ulong page = start / pageSize, last = end / pageSize;
        int chunk = _chunkEntries;
        while (page < last)
        {
            cancel.ThrowIfCancellationRequested();
            int want = (int)Math.Min((ulong)chunk, last - page);
            ulong next = page + (ulong)want;
            if (_parallel && page != start / pageSize && next < last)
            {
                // This chunk here, the next one on the thread pool, at once.
                int want2 = (int)Math.Min((ulong)chunk, last - next);
                var second = _second ??= GC.AllocateUninitializedArray<PagemapEntry>(chunk);
                var other = Task.Run(() => _source.ReadPagemap(next, second.AsSpan(0, want2)), cancel);
                var first = Buffer(want);
                int got1 = _source.ReadPagemap(page, first.AsSpan(0, want));
                int got2 = other.GetAwaiter().GetResult();
                if (got1 > 0) yield return (page * pageSize, first, got1);
                if (got1 < want) yield break; // past the end of the address space
                if (got2 > 0) yield return (next * pageSize, second, got2);
                if (got2 < want2) yield break;
                page = next + (ulong)got2;
                continue;
            }
            var buffer = Buffer(want);
            int got = _source.ReadPagemap(page, buffer.AsSpan(0, want));
            if (got > 0) yield return (page * pageSize, buffer, got);
            if (got < want) yield break; // past the end of the address space (e.g. [vsyscall])
            page += (ulong)got;
        }
    }

    /// <summary>
    /// The pread buffer with room for <paramref name="entries"/> (at most a chunk): grown by powers of two up to the
    /// chunk, so a reader that reads one page or a scan's few regions does not allocate a whole chunk (128 KiB).
    /// Not zeroed: every entry is written by a read before it is looked at.
    /// </summary>
    private PagemapEntry[] Buffer(int entries)
    {
        if (_buffer is { } b && b.Length >= entries) return b;
        int size = (int)Math.Min((uint)_chunkEntries, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(entries, MinBufferEntries)));
        return _buffer = GC.AllocateUninitializedArray<PagemapEntry>(Math.Max(size, entries));
    }

    /// <summary>The smallest pread buffer (512 entries: 4 KiB, one page of pagemap).</summary>
    private const int MinBufferEntries = 512;

    /// <summary>The filter's inner loop: copies the passing entries of a chunk into hits, skipping the others four at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Collect(ReadOnlySpan<PagemapEntry> entries, ulong firstAddress, ulong pageSize, PageFilter filter, MemoryMapping? mapping, PageHit[] hits)
    {
        var mask = (ulong)filter.Mask;
        var value = (ulong)filter.Value;
        int n = 0;
        if (mask == 0)
        {
            for (int i = 0; i < entries.Length; i++) hits[n++] = new PageHit(firstAddress + (ulong)i * pageSize, entries[i], mapping);
            return n;
        }
        for (int i = PagemapSearch.IndexOf(entries, 0, mask, value, equal: true); i < entries.Length;
             i = PagemapSearch.IndexOf(entries, i + 1, mask, value, equal: true))
            hits[n++] = new PageHit(firstAddress + (ulong)i * pageSize, entries[i], mapping);
        return n;
    }

    /// <summary>The regions of a span PAGEMAP_SCAN finds for the filter's categories, near neighbours joined (batch: the scan's reused output).</summary>
    private IEnumerable<PageRegion> ScanSpan(PageSpan span, PageFilter filter, PageRegion[] batch, CancellationToken cancel)
    {
        foreach (var regions in ScanBatches(span, filter, batch, cancel))
            foreach (var r in regions) yield return r;
    }

    /// <summary>
    /// <see cref="ScanSpan"/> with the span's second half walked on the thread pool meanwhile, its regions queued
    /// (at most <see cref="SplitScanQueuedBatches"/> batches ahead) and yielded after the first half's, so the order is
    /// the same. The worker is stopped and waited for however the enumeration ends: no thread uses the source after it.
    /// </summary>
    private IEnumerable<PageRegion> ScanSpanSplit(PageSpan span, PageFilter filter, CancellationToken cancel)
    {
        ulong pageSize = (ulong)_source.PageSize;
        ulong mid = (span.Start + (span.End - span.Start) / 2) / pageSize * pageSize;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        using var queue = new BlockingCollection<List<PageRegion>>(SplitScanQueuedBatches);
        var second = new PageSpan(mid, span.End, span.Mapping);
        var worker = Task.Run(() =>
        {
            try
            {
                foreach (var regions in ScanBatches(second, filter, new PageRegion[ScanRegionBatch], stop.Token))
                    queue.Add(regions, stop.Token);
            }
            finally { queue.CompleteAdding(); }
        }, stop.Token);
        try
        {
            foreach (var r in ScanSpan(new PageSpan(span.Start, mid, span.Mapping), filter, _regions, cancel)) yield return r;
            foreach (var regions in queue.GetConsumingEnumerable(cancel))
                foreach (var r in regions) yield return r;
            worker.GetAwaiter().GetResult(); // the second half's error, if it had one
        }
        finally
        {
            stop.Cancel();
            try { worker.Wait(CancellationToken.None); }
            catch (AggregateException) { } // its error was rethrown above, or the enumeration ended early
        }
    }

    /// <summary>The scan's batches over a span: each call's regions, near neighbours joined (a new list each).</summary>
    private IEnumerable<List<PageRegion>> ScanBatches(PageSpan span, PageFilter filter, PageRegion[] batch, CancellationToken cancel)
    {
        var (mask, inverted) = filter.ToScanCategories();
        ulong pos = span.Start;
        while (pos < span.End)
        {
            cancel.ThrowIfCancellationRequested();
            var req = new PagemapScanRequest
            {
                Start = pos,
                End = span.End,
                CategoryMask = mask,
                CategoryInverted = inverted,
                // With no category to ask for, every page matches; PRESENT as the return mask keeps regions few.
                ReturnMask = mask == PageCategory.None ? PageCategory.Present : mask,
            };
            int n = _source.ScanPagemap(ref req, batch);
            // Copy out (the region buffer is reused by the next scan), joining near neighbours.
            yield return Coalesce(batch.AsSpan(0, n), ScanCoalesceGapPages * (ulong)_source.PageSize);
            // Resume from the later of walk_end and the last region's end (the 6.18 walk_end quirk); a
            // result that did not fill the vector is complete.
            if (n < batch.Length) break;
            ulong next = Math.Max(req.WalkEnd, batch[n - 1].End);
            if (next <= pos) break;
            pos = next;
        }
    }

    /// <summary>Regions in order, with those less than <paramref name="gap"/> bytes apart joined.</summary>
    internal static List<PageRegion> Coalesce(ReadOnlySpan<PageRegion> regions, ulong gap)
    {
        var result = new List<PageRegion>(regions.Length);
        foreach (var r in regions)
        {
            if (result.Count > 0 && r.Start >= result[^1].End && r.Start - result[^1].End < gap)
            {
                var last = result[^1];
                result[^1] = new PageRegion(last.Start, r.End, last.Categories | r.Categories);
            }
            else result.Add(r);
        }
        return result;
    }

    /// <summary>
    /// PAGEMAP_SCAN over spans with one request's categories, flags and page limit: yields the regions the
    /// kernel returns, batch after batch, resuming where the walk stopped. MaxPages counts over all spans.
    /// </summary>
    /// <remarks>
    /// With <see cref="CheckScannedMappings"/> (Search-PageMap, which names each region's mapping) each batch is checked
    /// against its span's mapping before it is handed on. Where the mapping was unmapped or replaced meanwhile the rest
    /// of its span is left out, or, for a scan with WP_MATCHING (which may have write-protected what it found, so it is
    /// not repeated), MappingsChanged ends the read.
    /// </remarks>
    public IEnumerable<PageRegion> ScanRegions(IReadOnlyList<PageSpan> spans, PagemapScanRequest template, CancellationToken cancel = default)
    {

        ulong pagesLeft = template.MaxPages; // 0: unlimited
        ulong pageSize = (ulong)_source.PageSize;
        foreach (var span in spans)
        {
            ulong pos = span.Start;
            while (pos < span.End)
            {
                cancel.ThrowIfCancellationRequested();
                var req = template;
                req.Start = pos;
                req.End = span.End;
                req.MaxPages = pagesLeft;
                int n = _source.ScanPagemap(ref req, _regions);
                if (CheckScannedMappings && span.Mapping is { } m && !_source.MappingUnchanged(m, pos, span.End))
                {
                    // A scan that changed nothing leaves out what is gone (a process's own runtime maps and unmaps
                    // all the time); one that may have write-protected what it found cannot be run again.
                    if ((template.Flags & PagemapScanFlags.WriteProtectMatching) == 0) break;
                    throw new EngineException(EngineError.MappingsChanged,
                        $"The mapping of process {_source.ProcessId} ({_source.Name}) at 0x{m.Start:x}-0x{m.End:x} was unmapped or replaced while it was scanned; " +
                        "the regions already given were checked, the rest is not given. Run the command again.", _source.ProcessId);
                }
                for (int i = 0; i < n; i++)
                {
                    var r = _regions[i];
                    if (template.MaxPages != 0) pagesLeft -= Math.Min(pagesLeft, (r.End - r.Start) / pageSize);
                    yield return r;
                }
                if (template.MaxPages != 0 && pagesLeft == 0) yield break;
                if (n < _regions.Length) break; // short result: the walk finished
                ulong next = Math.Max(req.WalkEnd, _regions[n - 1].End);
                if (next <= pos) break;
                pos = next;
            }
        }
    }

    /// <summary>The spans of every mapping, or of those a selector accepts. [vsyscall] lies past the task size and is skipped.</summary>
    public static List<PageSpan> SpansOf(IReadOnlyList<MemoryMapping> mappings, Func<MemoryMapping, bool>? selector = null)
    {
        var spans = new List<PageSpan>(mappings.Count);
        foreach (var m in mappings)
        {
            if (m.Kind == MappingKind.Vsyscall) continue;
            if (selector is null || selector(m)) spans.Add(new PageSpan(m.Start, m.End, m));
        }
        return spans;
    }

    /// <summary>
    /// The parts of [start, start+length) that lie inside mappings; <paramref name="unmapped"/> gets the
    /// bytes that lie outside any. Throws InvalidArgument for an unaligned or empty range.
    /// </summary>
    public static List<PageSpan> SpansOfRange(IReadOnlyList<MemoryMapping> mappings, ulong start, ulong length, int pageSize, out ulong unmapped)
    {
        if (length == 0)
            throw new EngineException(EngineError.InvalidArgument, "The length is 0; give at least one page.", start);
        if (start % (ulong)pageSize != 0)
            throw new EngineException(EngineError.InvalidArgument, $"Address 0x{start:x} is not aligned to the page size ({pageSize} bytes).", start);
        if (length % (ulong)pageSize != 0)
            throw new EngineException(EngineError.InvalidArgument, $"Length {length} is not a multiple of the page size ({pageSize} bytes).", length);
        ulong end = start + length;
        if (end < start)
            throw new EngineException(EngineError.InvalidArgument, $"Address 0x{start:x} plus length {length} overflows.", start);
        var spans = new List<PageSpan>();
        ulong covered = 0;
        foreach (var m in mappings)
        {
            ulong s = Math.Max(start, m.Start), e = Math.Min(end, m.End);
            if (s >= e || m.Kind == MappingKind.Vsyscall) continue;
            spans.Add(new PageSpan(s, e, m));
            covered += e - s;
        }
        unmapped = length - covered;
        return spans;
    }
}
