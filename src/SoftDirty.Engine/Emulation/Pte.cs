using System;

namespace SoftDirty.Emulation;

/// <summary>
/// The emulator's packed 64-bit page table entry. The flag bits that pagemap reports sit at their pagemap
/// positions (soft-dirty 55, uffd-wp 57, guard 58, not-anonymous 61, swap 62, present 63) and the frame
/// (PFN, or swap type | offset &lt;&lt; 5) sits in bits 0-39, so a pagemap entry is one AND plus the VMA's
/// soft-dirty and the exclusive bit. Clearing soft-dirty and write permission is one AND-NOT
/// (<see cref="ClearSoftDirtyMask"/>) for present and swap entries alike, because swap entries never carry
/// <see cref="Writable"/>.
/// </summary>
internal static class Pte
{
    /// <summary>Bits 0-39: PFN of a present page, or swap type | offset &lt;&lt; 5 (0 for a marker).</summary>
    public const ulong FrameMask = (1UL << 40) - 1;
    /// <summary>Hardware write permission (x86 _PAGE_RW).</summary>
    public const ulong Writable = 1UL << 40;
    /// <summary>Hardware dirty (x86 _PAGE_DIRTY).</summary>
    public const ulong Dirty = 1UL << 41;
    /// <summary>Accessed / young (x86 _PAGE_ACCESSED).</summary>
    public const ulong Accessed = 1UL << 42;
    /// <summary>Bits 43-51: the entry's index in its leaf, kept only by the sparse leaf forms.</summary>
    public const int IndexShift = 43;
    public const ulong IndexMask = 511UL << IndexShift;
    /// <summary>Soft-dirty (x86 _PAGE_SOFT_DIRTY / _PAGE_SWP_SOFT_DIRTY): the pagemap bit 55.</summary>
    public const ulong SoftDirty = (ulong)PagemapFlags.SoftDirty;
    /// <summary>userfaultfd write-protected (present, swap or marker): the pagemap bit 57.</summary>
    public const ulong UffdWp = (ulong)PagemapFlags.UffdWriteProtected;
    /// <summary>Guard marker (MADV_GUARD_INSTALL): the pagemap bit 58, always with <see cref="Swap"/>.</summary>
    public const ulong Guard = (ulong)PagemapFlags.Guard;
    /// <summary>Internal: write-protected by fork for copy-on-write (classifies the next write fault).</summary>
    public const ulong CowProtected = 1UL << 59;
    /// <summary>The page is not anonymous (page cache or shmem): the pagemap FILE bit 61.</summary>
    public const ulong NotAnonymous = (ulong)PagemapFlags.FileOrSharedAnon;
    /// <summary>A non-present, non-none entry: swap entry or marker; the pagemap bit 62.</summary>
    public const ulong Swap = (ulong)PagemapFlags.Swapped;
    public const ulong Present = (ulong)PagemapFlags.Present;
    /// <summary>The flag bits copied unchanged into a pagemap entry.</summary>
    public const ulong PagemapFlagBits = SoftDirty | UffdWp | Guard | NotAnonymous | Swap | Present;
    /// <summary>What clear_refs "4" removes from every entry (pte_wrprotect + pte_clear_soft_dirty).</summary>
    public const ulong ClearSoftDirtyMask = SoftDirty | Writable;

    public static bool IsPresent(ulong pte) => (pte & Present) != 0;
    public static bool IsSwapOrMarker(ulong pte) => (pte & Swap) != 0;
    /// <summary>A marker is a non-present entry without a swap slot (uffd-wp marker or guard marker).</summary>
    public static bool IsMarker(ulong pte) => (pte & Swap) != 0 && (pte & FrameMask) == 0;
    public static ulong Frame(ulong pte) => pte & FrameMask;
    public static ulong SwapOffset(ulong pte) => (pte & FrameMask) >> PagemapEntry.SwapTypeBits;
    public static ulong MakeSwap(ulong offset) => Swap | ((offset << PagemapEntry.SwapTypeBits) & FrameMask);
}
