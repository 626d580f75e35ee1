using System;

namespace SoftDirty;

/// <summary>A run of contiguous pages of one mapping whose pagemap flags are all equal.</summary>
public sealed class PageRange
{
    internal PageRange(int processId, ulong start, ulong end, PagemapFlags flags, string? mapping, int pageSize)
    {
        ProcessId = processId;
        Start = start;
        End = end;
        Flags = flags;
        Mapping = mapping;
        PageSize = pageSize;
    }

    /// <summary>The process id.</summary>
    public int ProcessId { get; }
    /// <summary>The first address.</summary>
    public ulong Start { get; }
    /// <summary>Exclusive end address.</summary>
    public ulong End { get; internal set; }
    /// <summary>The page size in bytes.</summary>
    public int PageSize { get; }
    /// <summary>End - Start, in bytes.</summary>
    public ulong Size => End - Start;
    /// <summary>The number of pages, (End - Start) / PageSize.</summary>
    public ulong PageCount => (End - Start) / (ulong)PageSize;
    /// <summary>The pagemap flag bits (bits 55-63).</summary>
    public PagemapFlags Flags { get; }
    /// <summary>The mapping the pages belong to (path or pseudo-name).</summary>
    public string? Mapping { get; }

    /// <summary>Bit 55: written since the last clear_refs "4".</summary>
    public bool SoftDirty => (Flags & PagemapFlags.SoftDirty) != 0;
    /// <summary>Bit 63: present in RAM.</summary>
    public bool Present => (Flags & PagemapFlags.Present) != 0;
    /// <summary>Bit 62: swapped out.</summary>
    public bool Swapped => (Flags & PagemapFlags.Swapped) != 0;
    /// <summary>Bit 61: a file page or shared anonymous page.</summary>
    public bool FileOrSharedAnon => (Flags & PagemapFlags.FileOrSharedAnon) != 0;
    /// <summary>Bit 56: mapped by this process alone.</summary>
    public bool Exclusive => (Flags & PagemapFlags.Exclusive) != 0;
    /// <summary>Bit 57: userfaultfd write-protected.</summary>
    public bool UffdWriteProtected => (Flags & PagemapFlags.UffdWriteProtected) != 0;
    /// <summary>Bit 58: a guard region (6.15+).</summary>
    public bool Guard => (Flags & PagemapFlags.Guard) != 0;

    /// <inheritdoc/>
    public override string ToString() => $"0x{Start:x}-0x{End:x} ({PageCount} pages) {Flags}";
}
