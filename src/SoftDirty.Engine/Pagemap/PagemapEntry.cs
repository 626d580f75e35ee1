using System;
using System.Globalization;

namespace SoftDirty;

/// <summary>
/// One 64-bit /proc/PID/pagemap entry. The /proc reader and the emulator both produce this type;
/// every decoder above them reads pages through it.
/// </summary>
public readonly struct PagemapEntry : IEquatable<PagemapEntry>
{
    /// <summary>Bits 0-54: the page frame number of a present page, or the swap type and offset.</summary>
    public const ulong FrameMask = (1UL << 55) - 1;
    /// <summary>Bits 0-4 of the frame field of a swapped entry: the swap type (MAX_SWAPFILES_SHIFT).</summary>
    public const int SwapTypeBits = 5;
    /// <summary>The swap type bits of the frame field.</summary>
    public const ulong SwapTypeMask = (1UL << SwapTypeBits) - 1;
    /// <summary>All flag bits (55-63); bits 59-60 are always zero.</summary>
    public const ulong FlagMask = ~FrameMask;
    /// <summary>The flag bits the kernel can set: FlagMask without the always-zero bits 59-60.</summary>
    private const ulong DefinedFlagMask = FlagMask & ~(3UL << 59);
    /// <summary>Size of one entry in the pagemap file.</summary>
    public const int Size = sizeof(ulong);

    /// <summary>An entry from its raw 64-bit value.</summary>
    public PagemapEntry(ulong raw) => Raw = raw;

    /// <summary>The raw 64-bit value as read from pagemap.</summary>
    public ulong Raw { get; }

    /// <summary>The pagemap flag bits (bits 55-63).</summary>
    public PagemapFlags Flags => (PagemapFlags)(Raw & FlagMask);
    /// <summary>Bit 63: present in RAM.</summary>
    public bool Present => (Raw & (ulong)PagemapFlags.Present) != 0;
    /// <summary>Bit 62: swapped out.</summary>
    public bool Swapped => (Raw & (ulong)PagemapFlags.Swapped) != 0;
    /// <summary>Bit 55: written since the last clear_refs "4".</summary>
    public bool SoftDirty => (Raw & (ulong)PagemapFlags.SoftDirty) != 0;
    /// <summary>Bit 56: mapped by this process alone.</summary>
    public bool Exclusive => (Raw & (ulong)PagemapFlags.Exclusive) != 0;
    /// <summary>Bit 57: userfaultfd write-protected.</summary>
    public bool UffdWriteProtected => (Raw & (ulong)PagemapFlags.UffdWriteProtected) != 0;
    /// <summary>Bit 58: a guard region (6.15+).</summary>
    public bool Guard => (Raw & (ulong)PagemapFlags.Guard) != 0;
    /// <summary>Bit 61: a file page or shared anonymous page.</summary>
    public bool FileOrSharedAnon => (Raw & (ulong)PagemapFlags.FileOrSharedAnon) != 0;

    /// <summary>Bits 0-54 whatever they mean.</summary>
    public ulong Frame => Raw & FrameMask;

    /// <summary>
    /// The page frame number of a present page; null when the page is not present or the kernel hid it
    /// (since 4.2 the frame is zeroed for openers without CAP_SYS_ADMIN; PFN 0 is never a user page).
    /// </summary>
    public ulong? Pfn => Present && Frame != 0 ? Frame : null;

    /// <summary>The swap type of a swapped entry; null when not swapped or hidden.</summary>
    public int? SwapType => Swapped && Frame != 0 ? (int)(Raw & SwapTypeMask) : null;

    /// <summary>The swap offset (in pages) of a swapped entry; null when not swapped or hidden.</summary>
    public ulong? SwapOffset => Swapped && Frame != 0 ? Frame >> SwapTypeBits : null;

    /// <summary>An entry for a present page.</summary>
    public static PagemapEntry ForPresent(ulong pfn, PagemapFlags flags = PagemapFlags.None)
        => new(((ulong)flags & DefinedFlagMask) | (ulong)PagemapFlags.Present | (pfn & FrameMask));

    /// <summary>An entry for a swapped page: frame = type | offset &lt;&lt; 5.</summary>
    public static PagemapEntry ForSwapped(int swapType, ulong swapOffset, PagemapFlags flags = PagemapFlags.None)
        => new(((ulong)flags & DefinedFlagMask) | (ulong)PagemapFlags.Swapped
               | ((((ulong)swapOffset << SwapTypeBits) | ((ulong)swapType & SwapTypeMask)) & FrameMask));

    /// <inheritdoc/>
    public bool Equals(PagemapEntry other) => Raw == other.Raw;
    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is PagemapEntry e && Equals(e);
    /// <inheritdoc/>
    public override int GetHashCode() => Raw.GetHashCode();
    /// <summary>Equal raw values.</summary>
    public static bool operator ==(PagemapEntry a, PagemapEntry b) => a.Raw == b.Raw;
    /// <summary>Different raw values.</summary>
    public static bool operator !=(PagemapEntry a, PagemapEntry b) => a.Raw != b.Raw;

    /// <inheritdoc/>
    public override string ToString()
    {
        if (Raw == 0) return "none";
        var s = Present ? $"present pfn={(Pfn is { } p ? "0x" + p.ToString("x", CultureInfo.InvariantCulture) : "hidden")}"
              : Swapped ? $"swapped type={SwapType?.ToString(CultureInfo.InvariantCulture) ?? "hidden"} offset={SwapOffset?.ToString(CultureInfo.InvariantCulture) ?? "hidden"}"
              : "not present";
        var f = Flags & ~(PagemapFlags.Present | PagemapFlags.Swapped);
        return f == PagemapFlags.None ? s : $"{s} {f}";
    }
}
