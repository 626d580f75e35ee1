using System;
using System.Collections.Generic;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>
/// Which mappings a <see cref="ContentCheckedTracker"/> compares by content rather than trusting its page-table tracker:
/// those other processes can change (<see cref="ContentCheckedTracker.ChangeableByOthers"/>); those holding a buffer the
/// kernel writes through its own mapping (io_uring registered buffers, <see cref="PinnedBuffers"/>), at the last look or
/// now, so that a write made while a buffer was registered is found even when it was unregistered since; all of them
/// while the process holds an io_uring whose rings live in its own memory (IORING_SETUP_NO_MMAP: nothing says where), or has
/// pinned memory that its own registered buffers do not account for (an io_uring given to another process); all of them
/// where KSM touched the process (<see cref="KsmMergeable"/>: a merge drops the soft-dirty bit of a page written before it);
/// and, for a tracker of writable mappings only (WriteProtect), the mappings of a real process that are not private
/// anonymous memory, or past the 64 GiB of it the write tracking registers in all (<see cref="RegistrationBudget"/>), and the mappings not writable now: a page written and then made
/// read-only or PROT_NONE before the collection is found by its content, not a sample or a round later (or never). Of
/// those, only the ones that hold present or swapped pages (now or, in what was then the same place, at the last look) are compared: a reservation of
/// hundreds of GiB (the .NET GC's, a JVM's) has none, and walking its pagemap at every look would cost more than the rest.
/// The answer stays the same between two <see cref="Refresh"/> calls (once per reset or collection).
/// </summary>
internal sealed class ContentSelection
{
    private readonly IPageSource _source;
    private readonly Func<MemoryMapping, bool>? _selector;
    private readonly bool _readOnlyByContent;
    // A real process: its write tracking registers private anonymous memory only (WriteProtectTracker.Registers).
    private readonly bool _real;
    private List<AddressRange> _pinnedBefore = new(), _pinnedNow = new();
    private List<AddressRange> _holdingBefore = new(), _holdingNow = new();
    // An io_uring whose rings live in the process's own memory, or pinned memory no registered buffer of its own accounts
    // for (PinnedBuffers.WritesUnlocated): the kernel writes it, no one knows where, so every mapping is compared by content.
    private bool _ringsBefore, _ringsNow;
    // The writable private anonymous mappings past what the write tracking registers in all (RegistrationBudget), at the
    // last Refresh: compared by content, not counted whole at every look. Null where all fit (the usual case).
    private HashSet<ulong>? _pastBudget;

    /// <summary>A selection within <paramref name="selector"/>; <paramref name="readOnlyByContent"/>: the page-table tracker sees writable mappings only.</summary>
    public ContentSelection(IPageSource source, Func<MemoryMapping, bool>? selector, bool readOnlyByContent)
    {
        _source = source;
        _selector = selector;
        _readOnlyByContent = readOnlyByContent;
        _real = PageWalk.IsRealProcess(source);
    }

    /// <summary>Reads the process's registered kernel-written buffers again; those of the previous look still count until the next one.</summary>
    public void Refresh(CancellationToken cancel)
    {
        _pinnedBefore = _pinnedNow;
        _ringsBefore = _ringsNow;
        // One read of maps serves the whole look, made where a part of it needs one.
        IReadOnlyList<MemoryMapping>? listed = null;
        IReadOnlyList<MemoryMapping> Mappings() => listed ??= _source.ReadMappings(false);
        if (PageWalk.IsRealProcess(_source)) // (an emulated process has no io_uring, and its pid is no real one's)
        {
            _pinnedNow = PinnedBuffers.Read(_source.ProcessId, _source.PageSize);
            _ringsNow = PinnedBuffers.WritesUnlocated(_source.ProcessId, _source.PageSize, Mappings(), _pinnedNow);
            // Every mapping where KSM touched the process: a merged page loses its soft-dirty bit (KsmMergeable).
            _pinnedNow = KsmMergeable.With(_source, _pinnedNow);
        }
        if (!_readOnlyByContent) return;
        _pastBudget = _real ? PastBudget(Mappings()) : null;
        _holdingBefore = _holdingNow;
        _holdingNow = NotWritableHoldingPages(Mappings(), cancel);
    }

    /// <summary>
    /// After the page-table tracker's reset (<paramref name="mappings"/>: the mappings read then): the kernel-written
    /// buffers, and whether the kernel writes memory no one can locate, join the answer of this look for the next one. A
    /// buffer pinned (an io_uring registered, an AIO read submitted) between <see cref="Refresh"/> and the reset, written
    /// after the reset and gone before the next look, was seen by neither look's Refresh (round 19).
    /// </summary>
    public void Observe(IReadOnlyList<MemoryMapping> mappings)
    {
        if (!PageWalk.IsRealProcess(_source)) return;
        var pinned = PinnedBuffers.Read(_source.ProcessId, _source.PageSize);
        if (pinned.Count > 0)
        {
            var all = new List<AddressRange>(_pinnedNow);
            all.AddRange(pinned);
            _pinnedNow = all;
        }
        _ringsNow |= PinnedBuffers.WritesUnlocated(_source.ProcessId, _source.PageSize, mappings, pinned);
    }

    /// <summary>
    /// The starts of the selected mappings the write tracking would register but for its budget
    /// (<see cref="RegistrationBudget.Choose"/>); null where they fit in it together (read then without smaps).
    /// </summary>
    private HashSet<ulong>? PastBudget(IReadOnlyList<MemoryMapping> listed)
    {
        bool Wanted(MemoryMapping m) => (m.Protection & Protection.Write) != 0 && Selected(m) && WriteProtectTracker.Registers(m);
        ulong total = 0;
        foreach (var m in listed)
            if (Wanted(m)) total += m.End - m.Start;
        if (total <= RegistrationBudget.Bytes) return null;
        var withFlags = _source.ReadMappings(true);
        var chosen = RegistrationBudget.Choose(withFlags, Wanted);
        var past = new HashSet<ulong>();
        foreach (var m in withFlags)
            if (Wanted(m) && !chosen.Contains(m.Start)) past.Add(m.Start);
        return past;
    }

    /// <summary>The selected mappings that are not writable and hold present or swapped pages (PAGEMAP_SCAN skips the holes at once).</summary>
    private List<AddressRange> NotWritableHoldingPages(IReadOnlyList<MemoryMapping> mappings, CancellationToken cancel)
    {
        var spans = PageWalk.DataSpans(mappings, m => (m.Protection & Protection.Write) == 0 && !ContentCheckedTracker.ChangeableByOthers(m) && Selected(m));
        var holding = new List<AddressRange>();
        int i = 0;
        foreach (var r in PageWalk.PresentRegions(_source, spans, cancel: cancel, toRead: false))
        {
            while (i < spans.Count && spans[i].End <= r.Start) i++;
            if (i < spans.Count && spans[i].Start <= r.Start && (holding.Count == 0 || holding[^1].Start != spans[i].Start))
                holding.Add(new AddressRange(spans[i].Start, spans[i].End));
        }
        return holding;
    }

    /// <summary>Whether the caller's selection takes <paramref name="mapping"/> at all.</summary>
    public bool Selected(MemoryMapping mapping) => _selector is null || _selector(mapping);

    /// <summary>Whether <paramref name="mapping"/> is compared by content (within the selection).</summary>
    public bool ByContent(MemoryMapping mapping) => Selected(mapping) && IsContentMapping(mapping);

    /// <summary>Whether <paramref name="mapping"/> is left to the page-table tracker (within the selection).</summary>
    public bool ByPageTable(MemoryMapping mapping) => Selected(mapping) && !IsContentMapping(mapping);

    private bool IsContentMapping(MemoryMapping m) =>
        _ringsNow || _ringsBefore
        || ContentCheckedTracker.ChangeableByOthers(m)
        || (_readOnlyByContent && _real && (!WriteProtectTracker.Registers(m) || (_pastBudget?.Contains(m.Start) ?? false)))
        || (_readOnlyByContent && (m.Protection & Protection.Write) == 0 && (Overlaps(_holdingNow, m) || Overlaps(_holdingBefore, m)))
        || Overlaps(_pinnedNow, m) || Overlaps(_pinnedBefore, m);

    private static bool Overlaps(List<AddressRange> ranges, MemoryMapping m)
    {
        foreach (var r in ranges)
            if (r.Start < m.End && m.Start < r.End) return true;
        return false;
    }
}
