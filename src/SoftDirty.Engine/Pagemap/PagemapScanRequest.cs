using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>
/// The PAGEMAP_SCAN request as the kernel takes it (struct pm_scan_arg, every field a u64), minus the
/// output vector, which travels as a Span.
/// </summary>
internal struct PagemapScanRequest
{
    /// <summary>Every category bit the kernel knows (PM_SCAN_CATEGORIES, 0x1FF).</summary>
    public const PageCategory ValidCategories = (PageCategory)0x1FF;
    /// <summary>The categories of a kernel before guard regions (6.7 to 6.14): PAGE_IS_GUARD (bit 8) is an unknown bit there (EINVAL).</summary>
    public const PageCategory CategoriesBeforeGuard = ValidCategories & ~PageCategory.Guard;
    /// <summary>Every flag the kernel knows.</summary>
    public const PagemapScanFlags ValidFlags = PagemapScanFlags.WriteProtectMatching | PagemapScanFlags.CheckWriteProtectAsync;
    /// <summary>sizeof(struct pm_scan_arg).</summary>
    public const ulong ArgSize = 96;
    /// <summary>_IOWR('f', 16, struct pm_scan_arg).</summary>
    public const uint IoctlRequest = 0xC0606610;

    /// <summary>The first address to walk (page-aligned).</summary>
    public ulong Start { get; set; }
    /// <summary>The end of the walk (exclusive).</summary>
    public ulong End { get; set; }
    /// <summary>PM_SCAN_* flags.</summary>
    public PagemapScanFlags Flags { get; set; }
    /// <summary>0 means unlimited.</summary>
    public ulong MaxPages { get; set; }
    /// <summary>Categories inverted before matching (category_inverted).</summary>
    public PageCategory CategoryInverted { get; set; }
    /// <summary>Categories a page must all have (category_mask).</summary>
    public PageCategory CategoryMask { get; set; }
    /// <summary>Categories of which a page must have one, when any is set (category_anyof_mask).</summary>
    public PageCategory CategoryAnyOf { get; set; }
    /// <summary>Categories reported in the regions (return_mask).</summary>
    public PageCategory ReturnMask { get; set; }
    /// <summary>Output: where the walk stopped.</summary>
    public ulong WalkEnd { get; set; }

    /// <summary>The kernel's matching rule: invert, then all of mask and (if set) any of anyof.</summary>
    public readonly bool Matches(PageCategory categories)
    {
        var c = categories ^ CategoryInverted;
        if ((c & CategoryMask) != CategoryMask) return false;
        if (CategoryAnyOf != PageCategory.None && (c & CategoryAnyOf) == 0) return false;
        return true;
    }
}
