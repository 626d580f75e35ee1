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

    public int ProcessId { get; }
    public ulong Start { get; }
    /// <summary>Exclusive end address.</summary>
    public ulong End { get; internal set; }
    public int PageSize { get; }
    public ulong Size => End - Start;
    public ulong PageCount => (End - Start) / (ulong)PageSize;
    public PagemapFlags Flags { get; }
    public string? Mapping { get; }

    public bool SoftDirty => (Flags & PagemapFlags.SoftDirty) != 0;
    public bool Present => (Flags & PagemapFlags.Present) != 0;
    public bool Swapped => (Flags & PagemapFlags.Swapped) != 0;
    public bool FileOrSharedAnon => (Flags & PagemapFlags.FileOrSharedAnon) != 0;
    public bool Exclusive => (Flags & PagemapFlags.Exclusive) != 0;
    public bool UffdWriteProtected => (Flags & PagemapFlags.UffdWriteProtected) != 0;
    public bool Guard => (Flags & PagemapFlags.Guard) != 0;

    public override string ToString() => $"0x{Start:x}-0x{End:x} ({PageCount} pages) {Flags}";
}
