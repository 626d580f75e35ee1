using System;

namespace SoftDirty;

/// <summary>One page of a process, decoded from its pagemap entry. Properties are computed from Raw.</summary>
public sealed class PageEntry
{
    public PageEntry(int processId, ulong start, PagemapEntry entry, string? mapping, int pageSize)
    {
        ProcessId = processId;
        Start = start;
        Raw = entry.Raw;
        Mapping = mapping;
        PageSize = pageSize;
    }

    public int ProcessId { get; }
    /// <summary>
    /// The page's virtual address (shown as Address). Named Start, as on PageRange and MemoryMapping, because
    /// an array's own Address method would hide a property named Address from member enumeration ($pages.Start).
    /// </summary>
    public ulong Start { get; }
    /// <summary>Exclusive end address: Start + PageSize.</summary>
    public ulong End => Start + (ulong)PageSize;
    public int PageSize { get; }
    /// <summary>The raw 64-bit pagemap entry.</summary>
    public ulong Raw { get; }
    /// <summary>The mapping the page belongs to (path or pseudo-name).</summary>
    public string? Mapping { get; }

    public PagemapEntry Entry => new(Raw);
    public PagemapFlags Flags => Entry.Flags;
    public ulong? Pfn => Entry.Pfn;
    public bool SoftDirty => Entry.SoftDirty;
    public bool Present => Entry.Present;
    public bool Swapped => Entry.Swapped;
    public int? SwapType => Entry.SwapType;
    public ulong? SwapOffset => Entry.SwapOffset;
    public bool FileOrSharedAnon => Entry.FileOrSharedAnon;
    public bool Exclusive => Entry.Exclusive;
    public bool UffdWriteProtected => Entry.UffdWriteProtected;
    public bool Guard => Entry.Guard;

    public override string ToString() => $"0x{Start:x} {Entry}";
}

/// <summary>A run of contiguous pages of one mapping whose pagemap flags are all equal.</summary>
public sealed class PageRange
{
    public PageRange(int processId, ulong start, ulong end, PagemapFlags flags, string? mapping, int pageSize)
    {
        ProcessId = processId;
        Start = start;
        End = end;
        Flags = flags;
        Mapping = mapping;
        PageSize = pageSize;
    }

    public int ProcessId { get; }
    public ulong Start { get; }
    /// <summary>Exclusive end address.</summary>
    public ulong End { get; internal set; }
    public int PageSize { get; }
    public ulong Size => End - Start;
    public ulong PageCount => (End - Start) / (ulong)PageSize;
    public PagemapFlags Flags { get; }
    public string? Mapping { get; }

    public bool SoftDirty => (Flags & PagemapFlags.SoftDirty) != 0;
    public bool Present => (Flags & PagemapFlags.Present) != 0;
    public bool Swapped => (Flags & PagemapFlags.Swapped) != 0;
    public bool FileOrSharedAnon => (Flags & PagemapFlags.FileOrSharedAnon) != 0;
    public bool Exclusive => (Flags & PagemapFlags.Exclusive) != 0;
    public bool UffdWriteProtected => (Flags & PagemapFlags.UffdWriteProtected) != 0;
    public bool Guard => (Flags & PagemapFlags.Guard) != 0;

    public override string ToString() => $"0x{Start:x}-0x{End:x} ({PageCount} pages) {Flags}";
}

/// <summary>Folds a stream of pages into <see cref="PageRange"/>s: a range ends at a gap, a flag change or a new mapping.</summary>
public sealed class PageRangeBuilder
{
    private readonly int _processId;
    private readonly int _pageSize;
    private PageRange? _open;
    private MemoryMapping? _openMapping;

    public PageRangeBuilder(int processId, int pageSize)
    {
        _processId = processId;
        _pageSize = pageSize;
    }

    /// <summary>Adds a page; returns the range it closed, if any.</summary>
    public PageRange? Add(ulong address, PagemapEntry entry, MemoryMapping? mapping)
    {
        var flags = entry.Flags;
        var open = _open;
        if (open is not null && open.End == address && open.Flags == flags && ReferenceEquals(_openMapping, mapping))
        {
            open.End = address + (ulong)_pageSize;
            return null;
        }
        _open = new PageRange(_processId, address, address + (ulong)_pageSize, flags, mapping?.DisplayName, _pageSize);
        _openMapping = mapping;
        return open;
    }

    /// <summary>Closes and returns the open range, if any.</summary>
    public PageRange? Flush()
    {
        var open = _open;
        _open = null;
        _openMapping = null;
        return open;
    }
}

/// <summary>A filter on pagemap flag bits: a page passes when (flags &amp; Mask) == Value.</summary>
public readonly struct PageFilter
{
    public PageFilter(PagemapFlags mask, PagemapFlags value)
    {
        Mask = mask;
        Value = value & mask;
    }

    public PagemapFlags Mask { get; }
    public PagemapFlags Value { get; }
    public bool IsEmpty => Mask == PagemapFlags.None;

    /// <summary>Adds the requirement that <paramref name="flag"/> be set (or clear).</summary>
    public PageFilter Require(PagemapFlags flag, bool set) =>
        new(Mask | flag, set ? Value | flag : Value & ~flag);

    public bool Matches(PagemapEntry entry) => (entry.Raw & (ulong)Mask) == (ulong)Value;

    /// <summary>
    /// The PAGEMAP_SCAN categories that every page passing this filter has (mask) and lacks (inverted):
    /// a superset pre-filter, as these categories mean the same as the pagemap bits.
    /// </summary>
    public (PageCategory Mask, PageCategory Inverted) ToScanCategories()
    {
        PageCategory mask = 0, inverted = 0;
        var filterMask = Mask;
        var filterValue = Value;
        void Map(PagemapFlags flag, PageCategory category)
        {
            if ((filterMask & flag) == 0) return;
            mask |= category;
            if ((filterValue & flag) == 0) inverted |= category;
        }
        Map(PagemapFlags.Present, PageCategory.Present);
        Map(PagemapFlags.Swapped, PageCategory.Swapped);
        Map(PagemapFlags.SoftDirty, PageCategory.SoftDirty);
        return (mask, inverted);
    }

    public override string ToString() => IsEmpty ? "all pages" : $"{Mask} == {Value}";
}
