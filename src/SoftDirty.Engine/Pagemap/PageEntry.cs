using System;

namespace SoftDirty;

/// <summary>One page of a process, decoded from its pagemap entry. Properties are computed from Raw.</summary>
public sealed class PageEntry
{
    internal PageEntry(int processId, ulong start, PagemapEntry entry, string? mapping, int pageSize)
    {
        ProcessId = processId;
        Start = start;
        Raw = entry.Raw;
        Mapping = mapping;
        PageSize = pageSize;
    }

    public int ProcessId { get; }
    /// <summary>
    /// The page's virtual address (shown as Address). Named Start, as on PageRange and MemoryMapping, because
    /// an array's own Address method would hide a property named Address from member enumeration ($pages.Start).
    /// </summary>
    public ulong Start { get; }
    /// <summary>Exclusive end address: Start + PageSize.</summary>
    public ulong End => Start + (ulong)PageSize;
    public int PageSize { get; }
    /// <summary>The raw 64-bit pagemap entry.</summary>
    public ulong Raw { get; }
    /// <summary>The mapping the page belongs to (path or pseudo-name).</summary>
    public string? Mapping { get; }

    public PagemapEntry Entry => new(Raw);
    public PagemapFlags Flags => Entry.Flags;
    public ulong? Pfn => Entry.Pfn;
    public bool SoftDirty => Entry.SoftDirty;
    public bool Present => Entry.Present;
    public bool Swapped => Entry.Swapped;
    public int? SwapType => Entry.SwapType;
    public ulong? SwapOffset => Entry.SwapOffset;
    public bool FileOrSharedAnon => Entry.FileOrSharedAnon;
    public bool Exclusive => Entry.Exclusive;
    public bool UffdWriteProtected => Entry.UffdWriteProtected;
    public bool Guard => Entry.Guard;

    public override string ToString() => $"0x{Start:x} {Entry}";
}
