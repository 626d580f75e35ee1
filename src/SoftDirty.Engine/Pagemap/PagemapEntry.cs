using System;

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
    public const ulong SwapTypeMask = (1UL << SwapTypeBits) - 1;
    /// <summary>All flag bits (55-63); bits 59-60 are always zero.</summary>
    public const ulong FlagMask = ~FrameMask;
    /// <summary>The flag bits the kernel can set: FlagMask without the always-zero bits 59-60.</summary>
    private const ulong DefinedFlagMask = FlagMask & ~(3UL << 59);
    /// <summary>Size of one entry in the pagemap file.</summary>
    public const int Size = sizeof(ulong);

    public PagemapEntry(ulong raw) => Raw = raw;

    /// <summary>The raw 64-bit value as read from pagemap.</summary>
    public ulong Raw { get; }

    public PagemapFlags Flags => (PagemapFlags)(Raw & FlagMask);
    public bool Present => (Raw & (ulong)PagemapFlags.Present) != 0;
    public bool Swapped => (Raw & (ulong)PagemapFlags.Swapped) != 0;
    public bool SoftDirty => (Raw & (ulong)PagemapFlags.SoftDirty) != 0;
    public bool Exclusive => (Raw & (ulong)PagemapFlags.Exclusive) != 0;
    public bool UffdWriteProtected => (Raw & (ulong)PagemapFlags.UffdWriteProtected) != 0;
    public bool Guard => (Raw & (ulong)PagemapFlags.Guard) != 0;
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

    public bool Equals(PagemapEntry other) => Raw == other.Raw;
    public override bool Equals(object? obj) => obj is PagemapEntry e && Equals(e);
    public override int GetHashCode() => Raw.GetHashCode();
    public static bool operator ==(PagemapEntry a, PagemapEntry b) => a.Raw == b.Raw;
    public static bool operator !=(PagemapEntry a, PagemapEntry b) => a.Raw != b.Raw;

    public override string ToString()
    {
        if (Raw == 0) return "none";
        var s = Present ? $"present pfn={(Pfn is { } p ? "0x" + p.ToString("x") : "hidden")}"
              : Swapped ? $"swapped type={SwapType?.ToString() ?? "hidden"} offset={SwapOffset?.ToString() ?? "hidden"}"
              : "not present";
        var f = Flags & ~(PagemapFlags.Present | PagemapFlags.Swapped);
        return f == PagemapFlags.None ? s : $"{s} {f}";
    }
}
