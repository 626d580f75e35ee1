using System;

namespace SoftDirty;

/// <summary>A filter on pagemap flag bits: a page passes when (flags &amp; Mask) == Value.</summary>
internal readonly struct PageFilter
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
