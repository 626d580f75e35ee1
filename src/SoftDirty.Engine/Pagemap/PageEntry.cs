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

    /// <summary>The process id.</summary>
    public int ProcessId { get; }
    /// <summary>
    /// The page's virtual address (shown as Address). Named Start, as on PageRange and MemoryMapping, because
    /// an array's own Address method would hide a property named Address from member enumeration ($pages.Start).
    /// </summary>
    public ulong Start { get; }
    /// <summary>Exclusive end address: Start + PageSize.</summary>
    public ulong End => Start + (ulong)PageSize;
    /// <summary>The page size in bytes.</summary>
    public int PageSize { get; }
    /// <summary>The raw 64-bit pagemap entry.</summary>
    public ulong Raw { get; }
    /// <summary>The mapping the page belongs to (path or pseudo-name).</summary>
    public string? Mapping { get; }

    /// <summary>The decoded pagemap entry.</summary>
    public PagemapEntry Entry => new(Raw);
    /// <summary>The pagemap flag bits (bits 55-63).</summary>
    public PagemapFlags Flags => Entry.Flags;
    /// <summary>The page frame number; null when not present or hidden (CAP_SYS_ADMIN).</summary>
    public ulong? Pfn => Entry.Pfn;
    /// <summary>Bit 55: written since the last clear_refs "4".</summary>
    public bool SoftDirty => Entry.SoftDirty;
    /// <summary>Bit 63: present in RAM.</summary>
    public bool Present => Entry.Present;
    /// <summary>Bit 62: swapped out.</summary>
    public bool Swapped => Entry.Swapped;
    /// <summary>The swap type of a swapped page; null otherwise or when hidden.</summary>
    public int? SwapType => Entry.SwapType;
    /// <summary>The swap offset of a swapped page; null otherwise or when hidden.</summary>
    public ulong? SwapOffset => Entry.SwapOffset;
    /// <summary>Bit 61: a file page or shared anonymous page.</summary>
    public bool FileOrSharedAnon => Entry.FileOrSharedAnon;
    /// <summary>Bit 56: mapped by this process alone.</summary>
    public bool Exclusive => Entry.Exclusive;
    /// <summary>Bit 57: userfaultfd write-protected.</summary>
    public bool UffdWriteProtected => Entry.UffdWriteProtected;
    /// <summary>Bit 58: a guard region (6.15+).</summary>
    public bool Guard => Entry.Guard;

    /// <inheritdoc/>
    public override string ToString() => $"0x{Start:x} {Entry}";
}
