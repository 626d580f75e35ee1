using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>PAGEMAP_SCAN page categories (include/uapi/linux/fs.h, PAGE_IS_*).</summary>
[Flags]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PageCategory : ulong
{
    None = 0,
    /// <summary>The VMA is registered for userfaultfd async write-protect (PAGE_IS_WPALLOWED).</summary>
    WriteProtectAllowed = 1UL << 0,
    /// <summary>Written since it was last write-protected through userfaultfd (PAGE_IS_WRITTEN).</summary>
    Written = 1UL << 1,
    /// <summary>File-backed or shared (PAGE_IS_FILE).</summary>
    File = 1UL << 2,
    Present = 1UL << 3,
    Swapped = 1UL << 4,
    /// <summary>Mapped to the zero page (PAGE_IS_PFNZERO).</summary>
    PfnZero = 1UL << 5,
    /// <summary>Part of a transparent or hugetlb huge page (PAGE_IS_HUGE).</summary>
    Huge = 1UL << 6,
    SoftDirty = 1UL << 7,
    /// <summary>Guard region (PAGE_IS_GUARD, 6.15+).</summary>
    Guard = 1UL << 8,
}

/// <summary>PAGEMAP_SCAN flags (PM_SCAN_*).</summary>
[Flags]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PagemapScanFlags : ulong
{
    None = 0,
    /// <summary>Write-protect the pages that match (get-and-clear of WRITTEN).</summary>
    WriteProtectMatching = 1UL << 0,
    /// <summary>Fail with EPERM on a VMA not registered for async write-protect.</summary>
    CheckWriteProtectAsync = 1UL << 1,
}

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

/// <summary>
/// The PAGEMAP_SCAN request as the kernel takes it (struct pm_scan_arg, every field a u64), minus the
/// output vector, which travels as a Span.
/// </summary>
public struct PagemapScanRequest
{
    /// <summary>Every category bit the kernel knows (PM_SCAN_CATEGORIES, 0x1FF).</summary>
    public const PageCategory ValidCategories = (PageCategory)0x1FF;
    /// <summary>Every flag the kernel knows.</summary>
    public const PagemapScanFlags ValidFlags = PagemapScanFlags.WriteProtectMatching | PagemapScanFlags.CheckWriteProtectAsync;
    /// <summary>sizeof(struct pm_scan_arg).</summary>
    public const ulong ArgSize = 96;
    /// <summary>_IOWR('f', 16, struct pm_scan_arg).</summary>
    public const uint IoctlRequest = 0xC0606610;

    public ulong Start;
    public ulong End;
    public PagemapScanFlags Flags;
    /// <summary>0 means unlimited.</summary>
    public ulong MaxPages;
    public PageCategory CategoryInverted;
    public PageCategory CategoryMask;
    public PageCategory CategoryAnyOf;
    public PageCategory ReturnMask;
    /// <summary>Output: where the walk stopped.</summary>
    public ulong WalkEnd;

    /// <summary>The kernel's matching rule: invert, then all of mask and (if set) any of anyof.</summary>
    public readonly bool Matches(PageCategory categories)
    {
        var c = categories ^ CategoryInverted;
        if ((c & CategoryMask) != CategoryMask) return false;
        if (CategoryAnyOf != PageCategory.None && (c & CategoryAnyOf) == 0) return false;
        return true;
    }
}
