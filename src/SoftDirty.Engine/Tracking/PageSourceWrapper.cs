using System;
using System.Collections.Generic;

namespace SoftDirty.Tracking;

/// <summary>
/// A page source that forwards every call to the source it wraps, whose identity and tracking state it
/// shares (<see cref="IPageSourceWrapper"/>); a derived type adds what the inner source lacks. A wrapper
/// borrows its inner source: disposing the wrapper leaves the inner one open for its owner.
/// </summary>
internal abstract class PageSourceWrapper : IPageSource, IPageSourceWrapper
{
    protected PageSourceWrapper(IPageSource inner) => Inner = inner ?? throw new ArgumentNullException(nameof(inner));

    /// <summary>The wrapped source.</summary>
    public IPageSource Inner { get; }

    public int ProcessId => Inner.ProcessId;
    public string Name => Inner.Name;
    public int PageSize => Inner.PageSize;
    public KernelFeatures Features => Inner.Features;
    public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => Inner.ReadMappings(withCounters);
    public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination) => Inner.ReadPagemap(firstPage, destination);
    public virtual int ReadMemory(ulong address, Span<byte> destination) => Inner.ReadMemory(address, destination);
    public virtual int WriteClearRefs(ReadOnlySpan<byte> text) => Inner.WriteClearRefs(text);
    public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) => Inner.ScanPagemap(ref request, regions);
    public bool MappingUnchanged(MemoryMapping mapping, ulong start, ulong end) => Inner.MappingUnchanged(mapping, start, end);

    /// <summary>Leaves the inner source open: its owner disposes it.</summary>
    public void Dispose() => GC.SuppressFinalize(this);
}
