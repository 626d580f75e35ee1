using System;
using System.Threading;

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

    private ContentCheckedTracker(IDirtyTracker pages, HashTracker contents)
    {
        _pages = pages;
        _contents = contents;
    }

    /// <summary>
    /// Whether other processes can change the pages of <paramref name="mapping"/> without a write through this
    /// process's page table: a shared mapping, or one of a file.
    /// </summary>
    public static bool ChangeableByOthers(MemoryMapping mapping) => mapping.Shared || mapping.Kind == MappingKind.File;

    /// <summary>
    /// For a real process, <paramref name="create"/>'s tracker of the mappings no one else can change, joined with
    /// a Hash tracker of those others can; for an emulated one (no other writer), <paramref name="create"/>'s tracker of them all.
    /// </summary>
    public static IDirtyTracker Create(IPageSource source, Func<MemoryMapping, bool>? selector, PageHashAlgorithm algorithm,
        Func<Func<MemoryMapping, bool>?, IDirtyTracker> create)
    {
        if (!PageWalk.IsRealProcess(source)) return create(selector);
        var contents = new HashTracker(source, algorithm, m => ChangeableByOthers(m) && (selector is null || selector(m)));
        return new ContentCheckedTracker(create(m => !ChangeableByOthers(m) && (selector is null || selector(m))), contents);
    }

    /// <inheritdoc/>
    public TrackingMethod Method => _pages.Method;
    /// <inheritdoc/>
    public IPageSource Source => _pages.Source;
    /// <inheritdoc/>
    public string Description => _pages.Description + " Pages of shared and file mappings (which other processes can change) are compared by content.";

    /// <inheritdoc/>
    public void Reset(CancellationToken cancel = default)
    {
        _pages.Reset(cancel);
        _contents.Reset(cancel);
    }

    /// <inheritdoc/>
    public DirtyPageSet Collect(bool rearm = true, CancellationToken cancel = default)
    {
        var written = _pages.Collect(rearm, cancel);
        var changed = _contents.Collect(rearm, cancel);
        var both = Workflows.PreCopyMigration.Union(written, changed);
        return new DirtyPageSet(written.Method, written.PageSize, both.Ranges, both.PagesScanned, both.CollectTime) { NewMappingRanges = written.NewMappingRanges, ResetElsewhere = written.ResetElsewhere, InexactReason = written.InexactReason, UnreadablePages = changed.UnreadablePages };
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _pages.Dispose();
        _contents.Dispose();
    }
}
