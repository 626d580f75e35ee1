using System;

namespace SoftDirty;

/// <summary>Folds a stream of pages into <see cref="PageRange"/>s: a range ends at a gap, a flag change or a new mapping.</summary>
internal sealed class PageRangeBuilder
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
    public PageRange? Add(ulong address, PagemapEntry entry, MemoryMapping? mapping) =>
        AddRun(address, address + (ulong)_pageSize, entry.Flags, mapping);

    /// <summary>Adds a run of pages with equal flags, [start, end); returns the range it closed, if any.</summary>
    public PageRange? AddRun(ulong start, ulong end, PagemapFlags flags, MemoryMapping? mapping)
    {
        var open = _open;
        if (open is not null && open.End == start && open.Flags == flags && ReferenceEquals(_openMapping, mapping))
        {
            open.End = end;
            return null;
        }
        _open = new PageRange(_processId, start, end, flags, mapping?.DisplayName, _pageSize);
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
