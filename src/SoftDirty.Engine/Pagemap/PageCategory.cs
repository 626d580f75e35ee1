using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>PAGEMAP_SCAN page categories (include/uapi/linux/fs.h, PAGE_IS_*).</summary>
[Flags]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PageCategory : ulong
{
    /// <summary>No category.</summary>
    None = 0,
    /// <summary>The VMA is registered for userfaultfd async write-protect (PAGE_IS_WPALLOWED).</summary>
    WriteProtectAllowed = 1UL << 0,
    /// <summary>Written since it was last write-protected through userfaultfd (PAGE_IS_WRITTEN).</summary>
    Written = 1UL << 1,
    /// <summary>File-backed or shared (PAGE_IS_FILE).</summary>
    File = 1UL << 2,
    /// <summary>Present in RAM (PAGE_IS_PRESENT).</summary>
    Present = 1UL << 3,
    /// <summary>Swapped out (PAGE_IS_SWAPPED).</summary>
    Swapped = 1UL << 4,
    /// <summary>Mapped to the zero page (PAGE_IS_PFNZERO).</summary>
    PfnZero = 1UL << 5,
    /// <summary>Part of a transparent or hugetlb huge page (PAGE_IS_HUGE).</summary>
    Huge = 1UL << 6,
    /// <summary>Soft-dirty (PAGE_IS_SOFT_DIRTY).</summary>
    SoftDirty = 1UL << 7,
    /// <summary>Guard region (PAGE_IS_GUARD, 6.15+).</summary>
    Guard = 1UL << 8,
}
