using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>The SoftDirty method: clear_refs "4" resets, bit 55 (PAGE_IS_SOFT_DIRTY) of present or swapped pages collects.</summary>
internal sealed class SoftDirtyTracker : IDirtyTracker
{
    private readonly Func<MemoryMapping, bool>? _selector;
    private bool _armed;
    // The tracking epoch this tracker's last clear started (TrackingEpoch): another command's clear replaces it.
    private string? _epoch;

    public SoftDirtyTracker(IPageSource source, Func<MemoryMapping, bool>? selector = null)
    {
        if (!source.Features.SoftDirty)
            throw new EngineException(EngineError.SoftDirtyNotSupported,
                source.Features.SoftDirtyReason ?? "This kernel does not set the soft-dirty bit.", source.ProcessId);
        Source = source;
        _selector = selector;
    }

    public TrackingMethod Method => TrackingMethod.SoftDirty;
    public IPageSource Source { get; }
    public string Description { get; set; } = "SoftDirty: clear_refs \"4\" and bit 55 of pagemap.";

    public void Reset(CancellationToken cancel = default)
    {
        _epoch = Source.ClearRefs(ClearRefsType.SoftDirty, cancel);
        _armed = true;
    }

    public DirtyPageSet Collect(bool rearm = true, CancellationToken cancel = default)
    {
        if (!_armed) throw new InvalidOperationException("Reset the tracker before collecting.");
        var clock = Stopwatch.StartNew();
        List<PageSpan> spans;
        List<AddressRange> ranges;
        ulong scanned;
        bool elsewhere;
        bool exact = true;
        string? why = null;
        // Read and re-armed at one moment: a write between the two would be lost to every later collection (the
        // mappings too: the clear takes the bits of a mapping made after they were read).
        using (rearm ? SoftDirtyWindow.Stop(Source, cancel, out exact, out why) : null)
        {
            spans = PageWalk.DataSpans(Source.ReadMappings(false), _selector);
            ranges = Dirty(Source, spans, cancel, out scanned);
            // Cleared by another command or session since this tracker's last clear (Clear-SoftDirty, a save, another
            // watch): the bits set before that clear are gone, so every present page counts, and the caller says so.
            // An epoch that can no longer be read (the state folder became unusable: removed and planted by another user,
            // made a link) counts as another clear: a clear made meanwhile could not be recorded either.
            elsewhere = _epoch is not null && TrackingEpoch.Current(Source) != _epoch;
            if (rearm) _epoch = Source.ClearRefs(ClearRefsType.SoftDirty, cancel);
        }
        if (elsewhere)
        {
            var all = new RangeListBuilder();
            foreach (var r in PageWalk.PresentRegions(Source, spans, cancel: cancel)) all.Add(r.Start, r.End);
            ranges = all.Build();
        }
        return new DirtyPageSet(Method, Source.PageSize, ranges, scanned, clock.Elapsed) { ResetElsewhere = elsewhere, InexactReason = exact ? null : why };
    }

    /// <summary>The soft-dirty present or swapped pages of <paramref name="spans"/>.</summary>
    public static List<AddressRange> Dirty(IPageSource source, IReadOnlyList<PageSpan> spans, CancellationToken cancel, out ulong scanned)
    {
        var b = new RangeListBuilder();
        ulong ps = (ulong)source.PageSize;
        scanned = 0;
        foreach (var s in spans) scanned += (s.End - s.Start) / ps;
        if (source.Features.PagemapScan)
        {
            var template = new PagemapScanRequest
            {
                CategoryMask = PageCategory.SoftDirty,
                CategoryAnyOf = PageCategory.Present | PageCategory.Swapped,
                ReturnMask = PageCategory.SoftDirty,
            };
            foreach (var r in new PageMapReader(source).ScanRegions(spans, template, cancel)) b.Add(r.Start, r.End);
            return b.Build();
        }
        var reader = new PageMapReader(source);
        foreach (var hit in reader.Read(spans, new PageFilter().Require(PagemapFlags.SoftDirty, true), PageReadMethod.Pread, cancel))
            if (hit.Entry.Present || hit.Entry.Swapped) b.Add(hit.Address, hit.Address + ps);
        return b.Build();
    }

    public void Dispose() => _armed = false;
}
