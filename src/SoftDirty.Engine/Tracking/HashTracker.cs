using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>The Hash method: snapshot the hashes of every present page, compare with the next snapshot.</summary>
internal sealed class HashTracker : IDirtyTracker
{
    private readonly Func<MemoryMapping, bool>? _selector;
    // Its own random key: the process it watches cannot choose a change that keeps a page's hash (PageHashKey).
    private readonly PageHashKey _key = PageHashKey.NewRandom();
    private PageHashSnapshot? _snapshot;

    /// <summary>A Hash tracker of <paramref name="source"/>, limited to the mappings <paramref name="selector"/> accepts.</summary>
    public HashTracker(IPageSource source, PageHashAlgorithm algorithm = PageHashAlgorithm.Fast128, Func<MemoryMapping, bool>? selector = null)
    {
        Source = source;
        Algorithm = algorithm;
        _selector = selector;
    }

    /// <inheritdoc/>
    public TrackingMethod Method => TrackingMethod.Hash;
    /// <inheritdoc/>
    public IPageSource Source { get; }
    /// <summary>The page hash used.</summary>
    public PageHashAlgorithm Algorithm { get; }
    /// <inheritdoc/>
    public string Description { get; set; } = "Hash: every present page read (process_vm_readv, or /proc/PID/mem where that is refused) and hashed; a page counts when its bytes differ.";
    /// <summary>The last snapshot (null before the first reset).</summary>
    public PageHashSnapshot? Snapshot => _snapshot;

    /// <inheritdoc/>
    public void Reset(CancellationToken cancel = default) =>
        _snapshot = PageHashSnapshot.Take(Source, PageWalk.DataSpans(Source.ReadMappings(false), _selector), Algorithm, _key, cancel);

    /// <inheritdoc/>
    public DirtyPageSet Collect(bool rearm = true, CancellationToken cancel = default)
    {
        if (_snapshot is null) throw new InvalidOperationException("Reset the tracker before collecting.");
        var clock = Stopwatch.StartNew();
        var mappings = Source.ReadMappings(false);
        var spans = PageWalk.DataSpans(mappings, _selector);
        var now = PageHashSnapshot.Take(Source, spans, Algorithm, _key, cancel);
        var ranges = PageHashSnapshot.Diff(_snapshot, now, spans);
        if (rearm) _snapshot = now;
        // A mapping pagemap cannot show (VM_PFNMAP: a perf_event ring, device memory) has no page to hash, though the kernel or
        // a device writes it: its pages count as unreadable, so the caller says that writes there are not seen (round 22).
        ulong unseen = Unseen(mappings);
        return new DirtyPageSet(Method, Source.PageSize, ranges, now.PageCount, clock.Elapsed) { UnreadablePages = now.UnreadablePages + unseen, UnopenedObjectPages = now.UnopenedObjectPages, FirstUnopenedObject = now.FirstUnopenedObject };
    }

    // The VM_PFNMAP pages of the last look and the mappings they were counted for (DeviceMappings.CandidateKey): smaps, which
    // costs a walk of every page table, is read again only when those mappings change.
    private string? _deviceKey;
    private ulong _devicePages;

    private ulong Unseen(IReadOnlyList<MemoryMapping> mappings)
    {
        var key = Images.DeviceMappings.CandidateKey(mappings, _selector);
        if (key is null) return 0;
        if (key != _deviceKey)
        {
            _devicePages = Images.DeviceMappings.Pages(Source, mappings, _selector);
            _deviceKey = key;
        }
        return _devicePages;
    }

    /// <inheritdoc/>
    public void Dispose() => _snapshot = null;
}
