using System;

namespace SoftDirty;

/// <summary>The flag bits of a /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).</summary>
[Flags]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1711", Justification = "The kernel's name for these bits; users' scripts name the type.")]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PagemapFlags : ulong
{
    /// <summary>No flag set.</summary>
    None = 0,
    /// <summary>Bit 55: the page was written since the last clear_refs "4" (or its VMA has VM_SOFTDIRTY).</summary>
    SoftDirty = 1UL << 55,
    /// <summary>Bit 56: the page is certainly mapped by this process alone (present pages only).</summary>
    Exclusive = 1UL << 56,
    /// <summary>Bit 57: userfaultfd write-protected.</summary>
    UffdWriteProtected = 1UL << 57,
    /// <summary>Bit 58: guard region (MADV_GUARD_INSTALL, 6.15+).</summary>
    Guard = 1UL << 58,
    /// <summary>Bit 61: file page or shared anonymous page.</summary>
    FileOrSharedAnon = 1UL << 61,
    /// <summary>Bit 62: swapped out (or another non-present PTE: migration entry, marker).</summary>
    Swapped = 1UL << 62,
    /// <summary>Bit 63: present in RAM.</summary>
    Present = 1UL << 63,
}
