using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>One region PAGEMAP_SCAN returns: [Start, End) with its categories (struct page_region).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct PageRegion : IEquatable<PageRegion>
{
    /// <summary>The first address.</summary>
    public ulong Start;
    /// <summary>Exclusive end address.</summary>
    public ulong End;
    /// <summary>The categories every page of the region has, masked by the return mask.</summary>
    public PageCategory Categories;

    /// <summary>A region [start, end) with its categories.</summary>
    public PageRegion(ulong start, ulong end, PageCategory categories)
    {
        Start = start; End = end; Categories = categories;
    }

    /// <summary>Equal start, end and categories.</summary>
    public bool Equals(PageRegion o) => Start == o.Start && End == o.End && Categories == o.Categories;
    /// <summary>Equal start, end and categories.</summary>
    public static bool operator ==(PageRegion a, PageRegion b) => a.Equals(b);
    /// <summary>A different start, end or categories.</summary>
    public static bool operator !=(PageRegion a, PageRegion b) => !a.Equals(b);
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is PageRegion r && Equals(r);
    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Start, End, Categories);
    /// <summary>The range and categories, as "0x1000-0x3000 Present".</summary>
    public override string ToString() => $"0x{Start:x}-0x{End:x} {Categories}";
}
