using System;
using System.Collections.Generic;

namespace SoftDirty.Tracking;

/// <summary>What a tracker found changed since its last reset.</summary>
internal sealed class DirtyPageSet
{
    internal DirtyPageSet(TrackingMethod method, int pageSize, IReadOnlyList<AddressRange> ranges, ulong pagesScanned, TimeSpan collectTime)
    {
        Method = method;
        PageSize = pageSize;
        Ranges = ranges;
        PagesScanned = pagesScanned;
        CollectTime = collectTime;
        ulong n = 0;
        foreach (var r in ranges) n += r.Size / (ulong)pageSize;
        PageCount = n;
    }

    /// <summary>The method that found the pages.</summary>
    public TrackingMethod Method { get; }
    /// <summary>The page size in bytes.</summary>
    public int PageSize { get; }
    /// <summary>The changed pages as sorted, merged address ranges.</summary>
    public IReadOnlyList<AddressRange> Ranges { get; }
    /// <summary>Pages changed.</summary>
    public ulong PageCount { get; }
    /// <summary>Bytes changed (<see cref="PageCount"/> pages).</summary>
    public ulong ByteCount => PageCount * (ulong)PageSize;
    /// <summary>Pages the tracker looked at (present pages for Hash, span pages for the others).</summary>
    public ulong PagesScanned { get; }
    /// <summary>How long the collection took.</summary>
    public TimeSpan CollectTime { get; }
    /// <summary>
    /// Of <see cref="Ranges"/>, the pages of mappings that appeared since the last collection (not yet
    /// write-protected, so all their present pages count as written, once). WriteProtect of another process only.
    /// </summary>
    public IReadOnlyList<AddressRange> NewMappingRanges { get; init; } = Array.Empty<AddressRange>();

    /// <summary>
    /// The process's mappings with their VmFlags as the collection read them (smaps), for a save that reads pages next
    /// (<see cref="PageWalk.PresentRegions"/>): null where the tracker read none. WriteProtect of another process only.
    /// </summary>
    internal IReadOnlyList<MemoryMapping>? MappingsWithFlags { get; init; }

    /// <summary>
    /// Whether the tracking was reset by something else since the tracker's last look (another command or session
    /// of the module cleared soft-dirty or re-protected the process): the writes before that reset cannot be told, so
    /// <see cref="Ranges"/> holds every present page the tracker watches. Callers say so (a warning).
    /// </summary>
    public bool ResetElsewhere { get; init; }

    /// <summary>
    /// Why this collection's read and re-arm were not at one moment (soft-dirty of this process itself, or of one it
    /// may not stop: <see cref="SoftDirtyWindow"/>), so a write between them can be missing from later collections; null when they were.
    /// </summary>
    public string? InexactReason { get; init; }

    /// <summary>
    /// Why some pages of <see cref="Ranges"/> may not have been written (an over-count, never a miss): mappings the
    /// process registered with a userfaultfd of its own, which the module's write tracking cannot share, count every
    /// present page at every look. Null when every page counted was written. Callers say so (a warning, once).
    /// </summary>
    public string? OverCountReason { get; init; }

    /// <summary>
    /// Present pages whose contents the tracker could not read (Hash, and the content check of shared and file
    /// mappings: memfd_secret, memory served by the process's own userfaultfd): their writes cannot be seen, so
    /// they are never in <see cref="Ranges"/>. Callers say so (a warning).
    /// </summary>
    public ulong UnreadablePages { get; init; }

    /// <summary>
    /// Pages of memory that ends with the process (a memfd, shared anonymous or System V memory, a deleted file) that it does not
    /// map, whose object this user could not open (<see cref="Images.UnnamedObjectPages"/>): a write there by another process or
    /// write(2) cannot be seen, so they are never in <see cref="Ranges"/>. Callers say so (a warning, once).
    /// </summary>
    public ulong UnopenedObjectPages { get; init; }

    /// <summary>The first mapping counted in <see cref="UnopenedObjectPages"/>, for the warning.</summary>
    public string? FirstUnopenedObject { get; init; }

    /// <summary>Whether the page at <paramref name="address"/> changed.</summary>
    public bool Contains(ulong address) => Contains(Ranges, address);

    /// <summary>Whether <paramref name="address"/> lies in one of <paramref name="ranges"/> (ascending, disjoint): a binary search.</summary>
    internal static bool Contains(IReadOnlyList<AddressRange> ranges, ulong address)
    {
        int lo = 0, hi = ranges.Count - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var r = ranges[mid];
            if (address < r.Start) hi = mid - 1;
            else if (address >= r.End) lo = mid + 1;
            else return true;
        }
        return false;
    }
}
