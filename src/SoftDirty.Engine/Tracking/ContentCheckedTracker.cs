using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using SoftDirty.Emulation;

namespace SoftDirty.Tracking;

/// <summary>
/// SoftDirty and WriteProtect see a write only where it goes through the tracked process's own page table. A
/// page of a shared mapping (MAP_SHARED file, shmem, memfd, shared anonymous memory of a fork) or of a file
/// mapping that still maps the file's page changes when another process writes it, or when anything writes
/// the file (write(2), another mapping): no bit of this process's page table changes. This tracker joins
/// a page-table tracker of the other mappings with a <see cref="HashTracker"/> of those
/// (<see cref="ChangeableByOthers"/>), so such a change is found by its contents instead of being lost.
/// </summary>
internal sealed class ContentCheckedTracker : IDirtyTracker
{
    private readonly IDirtyTracker _pages;
    private readonly HashTracker _contents;
    private readonly ContentSelection _selection;
    // The mappings the page-table tracker had at the last look: one compared by content now (made read-only, or holding a
    // registered buffer) has no earlier hashes, so its present pages all count once.
    private List<AddressRange> _pageSide = new();

    private ContentCheckedTracker(IDirtyTracker pages, HashTracker contents, ContentSelection selection)
    {
        _pages = pages;
        _contents = contents;
        _selection = selection;
    }

    /// <summary>
    /// Whether other processes can change the pages of <paramref name="mapping"/> without a write through this
    /// process's page table: a shared mapping, or one of a file or of shared memory. A MAP_PRIVATE mapping of a memfd
    /// (MappingKind.SharedAnonymous, not Shared) maps the memfd's own pages until this process writes them, so write(2)
    /// to the memfd or another process's MAP_SHARED mapping of it changes them as it does a private file mapping's.
    /// </summary>
    public static bool ChangeableByOthers(MemoryMapping mapping) => mapping.Shared || mapping.Kind is MappingKind.File or MappingKind.SharedAnonymous;

    /// <summary>
    /// For a real process, <paramref name="create"/>'s tracker of the mappings no one else can change, joined with
    /// a Hash tracker of those others can; likewise for an emulated one that shares its memory with another (a fork's
    /// parent or child, whose writes to a shared mapping set no bit of this one's page table); for any other emulated
    /// one (no other writer), <paramref name="create"/>'s tracker of them all.
    /// </summary>
    /// <remarks>
    /// <paramref name="writableOnly"/>: <paramref name="create"/>'s tracker watches writable mappings only (WriteProtect), so
    /// the others are compared by content. Mappings holding io_uring registered buffers are always compared by content
    /// (<see cref="ContentSelection"/>).
    /// </remarks>
    public static IDirtyTracker Create(IPageSource source, Func<MemoryMapping, bool>? selector, PageHashAlgorithm algorithm,
        Func<Func<MemoryMapping, bool>?, IDirtyTracker> create, bool writableOnly = false)
    {
        if (!PageWalk.IsRealProcess(source) && PageWalk.Root(source) is not EmulatedProcess { SharesMemory: true }) return create(selector);
        var selection = new ContentSelection(source, selector, writableOnly);
        var contents = new HashTracker(source, algorithm, selection.ByContent);
        return new ContentCheckedTracker(create(selection.ByPageTable), contents, selection);
    }

    /// <summary>
    /// The page-table side's mappings now, for the next look. Without [vsyscall], which has no page table of the process
    /// (PAGEMAP_SCAN of it is EFAULT): when every mapping became compared by content (an io_uring, an AIO context), the next
    /// look walked it as a mapping that moved to content, and the watch ended with that error (round 19).
    /// </summary>
    private List<AddressRange> PageSide(IReadOnlyList<MemoryMapping> mappings) =>
        mappings.Where(m => m.Kind != MappingKind.Vsyscall && _selection.ByPageTable(m)).Select(m => new AddressRange(m.Start, m.End)).ToList();

    /// <inheritdoc/>
    public TrackingMethod Method => _pages.Method;
    /// <inheritdoc/>
    public IPageSource Source => _pages.Source;
    /// <inheritdoc/>
    public string Description => _pages.Description + " Pages of shared and file mappings (which other processes can change) are compared by content.";

    /// <inheritdoc/>
    public void Reset(CancellationToken cancel = default)
    {
        _selection.Refresh(cancel);
        _pages.Reset(cancel);
        _contents.Reset(cancel);
        var mappings = Source.ReadMappings(false);
        _pageSide = PageSide(mappings);
        _selection.Observe(mappings); // after the page side is taken: a mapping it moves to content counts once at the next look
    }

    /// <inheritdoc/>
    public DirtyPageSet Collect(bool rearm = true, CancellationToken cancel = default)
    {
        _selection.Refresh(cancel);
        var written = _pages.Collect(rearm, cancel);
        var changed = _contents.Collect(rearm, cancel);
        var both = Workflows.PreCopyMigration.Union(written, changed);
        var mappings = Source.ReadMappings(false);
        var moved = Moved(mappings);
        if (moved.Count > 0)
        {
            var present = new RangeListBuilder();
            foreach (var r in PageWalk.PresentRegions(Source, moved, cancel: cancel)) present.Add(r.Start, r.End);
            both = Workflows.PreCopyMigration.Union(both, new DirtyPageSet(written.Method, written.PageSize, present.Build(), 0, TimeSpan.Zero));
        }
        if (rearm)
        {
            _pageSide = PageSide(mappings);
            _selection.Observe(mappings); // (after the page side, as in Reset)
        }
        return new DirtyPageSet(written.Method, written.PageSize, both.Ranges, both.PagesScanned, both.CollectTime) { NewMappingRanges = written.NewMappingRanges, ResetElsewhere = written.ResetElsewhere, InexactReason = written.InexactReason, OverCountReason = written.OverCountReason, UnreadablePages = changed.UnreadablePages, UnopenedObjectPages = changed.UnopenedObjectPages, FirstUnopenedObject = changed.FirstUnopenedObject };
    }

    /// <summary>The parts of mappings compared by content now that the page-table tracker had at the last look.</summary>
    private List<PageSpan> Moved(IReadOnlyList<MemoryMapping> mappings)
    {
        var moved = new List<PageSpan>();
        foreach (var m in mappings)
        {
            if (!_selection.ByContent(m)) continue;
            foreach (var r in _pageSide)
            {
                ulong s = Math.Max(r.Start, m.Start), e = Math.Min(r.End, m.End);
                if (s < e) moved.Add(new PageSpan(s, e, m));
            }
        }
        moved.Sort((x, y) => x.Start.CompareTo(y.Start));
        return moved;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _pages.Dispose();
        _contents.Dispose();
    }
}
