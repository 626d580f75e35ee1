using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

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
