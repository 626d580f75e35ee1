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

    public int ProcessId { get; }
    public ulong Start { get; }
    /// <summary>Exclusive end address.</summary>
    public ulong End { get; }
    public int PageSize { get; }
    public ulong Size => End - Start;
    public ulong PageCount => (End - Start) / (ulong)PageSize;
    /// <summary>The region's categories, masked by the request's return mask.</summary>
    public PageCategory Categories { get; }
    public string? Mapping { get; }

    public override string ToString() => $"0x{Start:x}-0x{End:x} ({PageCount} pages) {Categories}";
}
