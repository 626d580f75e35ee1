using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace SoftDirty;

/// <summary>
/// Where pages come from: a real process's /proc files or an emulated process. Both speak the kernel's
/// formats (pagemap entries, clear_refs text, PAGEMAP_SCAN requests and regions, maps/smaps fields), so the
/// code above cannot tell them apart.
/// </summary>
internal interface IPageSource : IDisposable
{
    /// <summary>The pid (a real one, or the emulator's own numbering).</summary>
    int ProcessId { get; }
    /// <summary>The process name (comm).</summary>
    string Name { get; }
    /// <summary>The page size in bytes.</summary>
    int PageSize { get; }
    /// <summary>What the kernel (or the emulated kernel profile) behind this source supports.</summary>
    KernelFeatures Features { get; }

    /// <summary>The VMAs in address order; with counters, as smaps (counters and VmFlags), else as maps.</summary>
    IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters);

    /// <summary>
    /// Reads the pagemap entries of consecutive virtual pages from <paramref name="firstPage"/> (an address
    /// divided by the page size). Returns how many were read: fewer only past the end of the address space.
    /// </summary>
    int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination);

    /// <summary>
    /// Reads the bytes of the process's memory at <paramref name="address"/> (as /proc/PID/mem does);
    /// returns how many were read, fewer where the range reaches an unmapped or unreadable page.
    /// </summary>
    int ReadMemory(ulong address, Span<byte> destination);

    /// <summary>Writes to clear_refs, parsed as the kernel parses it; returns the byte count accepted.</summary>
    int WriteClearRefs(ReadOnlySpan<byte> text);

    /// <summary>
    /// The PAGEMAP_SCAN ioctl: fills <paramref name="regions"/>, returns how many, and sets
    /// <see cref="PagemapScanRequest.WalkEnd"/>. Throws PagemapScanNotSupported where the kernel lacks it.
    /// </summary>
    int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions);

    /// <summary>
    /// Whether [<paramref name="start"/>, <paramref name="end"/>) still lies in one VMA that maps the same memory as
    /// <paramref name="mapping"/> did when the mappings were read (<see cref="MemoryMapping.SameMemory"/>). A reader asks
    /// after each read of the pagemap, so that no entry is put under a mapping that was unmapped or replaced meanwhile
    /// (by the process, or by another runspace using the same emulated process). A source whose mappings cannot change
    /// says true.
    /// </summary>
    bool MappingUnchanged(MemoryMapping mapping, ulong start, ulong end) => true;
}
