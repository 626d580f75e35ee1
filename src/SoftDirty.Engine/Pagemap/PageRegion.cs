using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>One region PAGEMAP_SCAN returns: [Start, End) with its categories (struct page_region).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct PageRegion : IEquatable<PageRegion>
{
    public ulong Start;
    public ulong End;
    public PageCategory Categories;

    public PageRegion(ulong start, ulong end, PageCategory categories)
    {
        Start = start; End = end; Categories = categories;
    }

    public bool Equals(PageRegion o) => Start == o.Start && End == o.End && Categories == o.Categories;
    public override bool Equals(object? obj) => obj is PageRegion r && Equals(r);
    public override int GetHashCode() => HashCode.Combine(Start, End, Categories);
    public override string ToString() => $"0x{Start:x}-0x{End:x} {Categories}";
}
