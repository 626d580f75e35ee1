namespace SoftDirty;

/// <summary>A region PAGEMAP_SCAN returned for a process, with the mapping it lies in.</summary>
public sealed class PageScanRegion
{
    internal PageScanRegion(int processId, PageRegion region, string? mapping, int pageSize)
    {
        ProcessId = processId;
        Start = region.Start;
        End = region.End;
        Categories = region.Categories;
        Mapping = mapping;
        PageSize = pageSize;
    }

    /// <summary>The process id.</summary>
    public int ProcessId { get; }
    /// <summary>The first address.</summary>
    public ulong Start { get; }
    /// <summary>Exclusive end address.</summary>
    public ulong End { get; }
    /// <summary>The page size in bytes.</summary>
    public int PageSize { get; }
    /// <summary>End - Start, in bytes.</summary>
    public ulong Size => End - Start;
    /// <summary>The number of pages, (End - Start) / PageSize.</summary>
    public ulong PageCount => (End - Start) / (ulong)PageSize;
    /// <summary>The region's categories, masked by the request's return mask.</summary>
    public PageCategory Categories { get; }
    /// <summary>The mapping the pages belong to (path or pseudo-name).</summary>
    public string? Mapping { get; }

    /// <inheritdoc/>
    public override string ToString() => $"0x{Start:x}-0x{End:x} ({PageCount} pages) {Categories}";
}
