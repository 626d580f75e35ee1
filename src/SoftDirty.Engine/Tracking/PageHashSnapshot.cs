using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>
/// Page hashes of present pages, 16 bytes a page, kept per region in address order. An absent page holds
/// zeros; a page that could not be read has no hash and never counts as changed. Of a real or emulated process, the pages of memory that
/// ends with it (a memfd, shared anonymous or System V memory, a deleted file) that it does not map are hashed from the object
/// (<see cref="Images.UnnamedObjectPages"/>), as a save reads them: another process's write or a write(2) there changes what
/// the process reads and what an image holds, and a watch counted none of it (round 24: 0 of 4 pages). Where the object cannot
/// be opened, those pages are unknown: never counted, and said (<see cref="UnopenedObjectPages"/>).
/// </summary>
internal sealed class PageHashSnapshot
{
    private readonly List<ulong> _starts = new();
    private readonly List<Hash128[]> _hashes = new();

    /// <summary>
    /// An empty snapshot of pages of <paramref name="pageSize"/> bytes hashed with <paramref name="algorithm"/>
    /// (Fast128 under <paramref name="key"/>: snapshots compared with each other share one).
    /// </summary>
    public PageHashSnapshot(int pageSize, PageHashAlgorithm algorithm, PageHashKey key)
    {
        PageSize = pageSize;
        Algorithm = algorithm;
        Key = key;
        Zero = PageHash.ZeroPage(algorithm, pageSize, key);
    }

    /// <summary>Marks a page whose bytes could not be read.</summary>
    internal static readonly Hash128 Unknown;

    /// <summary>The page size in bytes.</summary>
    public int PageSize { get; }
    /// <summary>The page hash used.</summary>
    public PageHashAlgorithm Algorithm { get; }
    /// <summary>The key of Fast128.</summary>
    internal PageHashKey Key { get; }
    internal Hash128 Zero { get; }
    /// <summary>Pages hashed.</summary>
    public ulong PageCount { get; private set; }
    /// <summary>Present pages that could not be read (their hash stays unknown: a change there cannot be seen).</summary>
    public ulong UnreadablePages { get; private set; }
    /// <summary>Pages of memory that ends with the process, not mapped in it, whose object could not be opened (their hashes are unknown).</summary>
    public ulong UnopenedObjectPages { get; private set; }
    /// <summary>The first mapping counted in <see cref="UnopenedObjectPages"/>, for the warning.</summary>
    public string? FirstUnopenedObject { get; private set; }
    /// <summary>The ranges of <see cref="UnopenedObjectPages"/>, ascending: no page there has a hash, nor is it absent (zeros).</summary>
    private List<AddressRange> _unopened = [];
    /// <summary>Bytes of hashes held: 16 a page.</summary>
    public ulong HashBytes => PageCount * 16;

    /// <summary>Regions held.</summary>
    public int RegionCount => _starts.Count;
    internal (ulong Start, Hash128[] Hashes) Region(int i) => (_starts[i], _hashes[i]);

    /// <summary>Adds a region (regions come in ascending address order).</summary>
    internal Hash128[] Add(ulong start, ulong end)
    {
        var h = new Hash128[(end - start) / (ulong)PageSize];
        _starts.Add(start);
        _hashes.Add(h);
        PageCount += (ulong)h.Length;
        return h;
    }

    /// <summary>The hash of the page at <paramref name="address"/>, or false where no present page was hashed.</summary>
    internal bool TryGet(ulong address, out Hash128 hash)
    {
        int i = _starts.BinarySearch(address);
        if (i < 0) i = ~i - 1;
        if (i >= 0)
        {
            ulong index = (address - _starts[i]) / (ulong)PageSize;
            if (index < (ulong)_hashes[i].Length) { hash = _hashes[i][index]; return true; }
        }
        hash = default;
        return false;
    }

    /// <summary>Sets the hash of a page hashed here (in a region <see cref="Add"/> made); elsewhere, nothing.</summary>
    private void Set(ulong address, Hash128 hash)
    {
        int i = _starts.BinarySearch(address);
        if (i < 0) i = ~i - 1;
        if (i < 0) return;
        ulong index = (address - _starts[i]) / (ulong)PageSize;
        if (index < (ulong)_hashes[i].Length) _hashes[i][index] = hash;
    }

    /// <summary>Whether <paramref name="address"/> is in a range of <see cref="UnopenedObjectPages"/>.</summary>
    internal bool IsUnopened(ulong address) => DirtyPageSet.Contains(_unopened, address);

    /// <summary>
    /// Hashes the present and swapped pages of <paramref name="spans"/> (the zero page needs no read), and the pages of memory
    /// that ends with the process that it does not map, from their object.
    /// </summary>
    public static PageHashSnapshot Take(IPageSource source, IReadOnlyList<PageSpan> spans, PageHashAlgorithm algorithm, PageHashKey key, CancellationToken cancel = default)
    {
        var snap = new PageHashSnapshot(source.PageSize, algorithm, key);
        var toRead = new List<AddressRange>();
        var targets = new List<(ulong Start, Hash128[] Hashes)>();
        var shared = new List<AddressRange>();
        using var objects = Images.UnnamedObjectPages.For(source, spans, keepUnopened: true);
        var gaps = new List<AddressRange>();
        // The pages of such objects below `until` that no region of the process covers: regions to hash from the object (in
        // address order among the process's own), or unknown where it cannot be opened.
        void ObjectGaps(ulong until)
        {
            if (objects is null) return;
            gaps.Clear();
            gaps.AddRange(objects.GapsBelow(until));
            foreach (var g in gaps)
            {
                targets.Add((g.Start, snap.Add(g.Start, g.End)));
                toRead.Add(g);
            }
        }
        foreach (var r in PageWalk.PresentRegions(source, spans, shared, cancel: cancel))
        {
            ObjectGaps(r.Start);
            objects?.Covered(r.End);
            var h = snap.Add(r.Start, r.End);
            targets.Add((r.Start, h));
            if ((r.Categories & PageCategory.PfnZero) != 0) Array.Fill(h, snap.Zero);
            else toRead.Add(new AddressRange(r.Start, r.End));
        }
        ObjectGaps(ulong.MaxValue);
        if (objects is not null)
        {
            snap._unopened = objects.UnopenedRanges!;
            snap._unopened.Sort((x, y) => x.Start.CompareTo(y.Start));
            snap.UnopenedObjectPages = objects.UnopenedPages;
            snap.FirstUnopenedObject = objects.FirstUnopened;
        }
        int pageSize = source.PageSize;
        int t = 0;
        // A page gone past the end of its file when read (truncated since it was found: the process gets SIGBUS there) holds
        // nothing: hashed as the zero page, as an increment records it zero where its chain had data, so the next Diff counts it
        // once. Left unknown, it was counted by no sample, then or later (round 33). A page unmapped since keeps Unknown.
        void PastEnd(ulong address) => snap.Set(address, snap.Zero);
        if (objects is not null) objects.PastEnd = PastEnd;
        snap.UnreadablePages = PageWalk.ReadChunks(source, toRead, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (address, data) =>
        {
            // A run may span regions that touch (ReadChunks joins pages adjacent in memory): each page goes to
            // the region that holds it.
            for (int off = 0; off < data.Length; off += pageSize)
            {
                ulong a = address + (ulong)off;
                while (a >= targets[t].Start + (ulong)targets[t].Hashes.Length * (ulong)pageSize) t++;
                targets[t].Hashes[(a - targets[t].Start) / (ulong)pageSize] = PageHash.Compute(algorithm, data.Slice(off, pageSize), key);
            }
        }, cancel: cancel, sharedAnonymous: shared, gone: PageWalk.GoneSince(source, spans, PastEnd), objects: objects);
        return snap;
    }

    /// <summary>
    /// The pages whose content differs between <paramref name="before"/> and <paramref name="after"/>: hashed in
    /// both with different hashes, hashed only in one with a hash other than the zero page's (and, for pages
    /// that left, still inside <paramref name="spans"/>). A page unknown in either (unreadable, or of an object that could not be
    /// opened) is never counted.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static List<AddressRange> Diff(PageHashSnapshot before, PageHashSnapshot after, IReadOnlyList<PageSpan> spans)
    {
        if (before.Algorithm != after.Algorithm || before.Key != after.Key) throw new ArgumentException("Snapshots hashed with different hashes or keys cannot be compared.", nameof(after));
        ulong ps = (ulong)after.PageSize;
        var changed = new List<AddressRange>();
        var b = new RangeListBuilder();
        for (int i = 0; i < after.RegionCount; i++)
        {
            var (start, hashes) = after.Region(i);
            for (int k = 0; k < hashes.Length; k++)
            {
                var now = hashes[k];
                if (now == Unknown) continue;
                ulong addr = start + (ulong)k * ps;
                var old = before.TryGet(addr, out var h) ? h : before.IsUnopened(addr) ? Unknown : before.Zero;
                if (old != Unknown && old != now) b.Add(addr, addr + ps);
            }
        }
        changed.AddRange(b.Build());
        // Pages that were present and are gone (MADV_DONTNEED, munmap and map again) now read as zeros.
        var gone = new RangeListBuilder();
        int s = 0;
        for (int i = 0; i < before.RegionCount; i++)
        {
            var (start, hashes) = before.Region(i);
            for (int k = 0; k < hashes.Length; k++)
            {
                var old = hashes[k];
                if (old == Unknown || old == before.Zero) continue;
                ulong addr = start + (ulong)k * ps;
                if (after.TryGet(addr, out _) || after.IsUnopened(addr)) continue;
                while (s < spans.Count && spans[s].End <= addr) s++;
                if (s < spans.Count && spans[s].Start <= addr) gone.Add(addr, addr + ps);
            }
        }
        var goneRanges = gone.Build();
        if (goneRanges.Count == 0) return changed;
        changed.AddRange(goneRanges);
        changed.Sort((x, y) => x.Start.CompareTo(y.Start));
        var merged = new RangeListBuilder();
        foreach (var r in changed) merged.Add(r.Start, r.End);
        return merged.Build();
    }
}
