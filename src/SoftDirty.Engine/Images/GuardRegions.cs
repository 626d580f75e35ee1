using System.Collections.Generic;
using System.Threading;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// The guard regions (MADV_GUARD_INSTALL) of the memory a save walks, for the image's mappings (<see cref="ImageMapping.Guards"/>).
/// A save leaves guard pages out of its pages (they hold nothing), so an image without them restored them as readable zeros
/// (round 30). Found with PAGEMAP_SCAN's PAGE_IS_GUARD (Linux 6.15+, and the emulator's 6.18 profile): one scan of the walked
/// ranges. A kernel whose scan has no guard category shows no guard in pagemap at all (6.13 and 6.14 have anonymous guard
/// regions that pagemap does not show): nothing is recorded there.
/// </summary>
internal static class GuardRegions
{
    /// <summary>The guard regions within <paramref name="spans"/>, ascending; empty where the kernel cannot show them.</summary>
    public static List<AddressRange> Find(IPageSource source, IReadOnlyList<PageSpan> spans, CancellationToken cancel)
    {
        var found = new List<AddressRange>();
        if (!source.Features.PagemapScan || (source.Features.PagemapScanCategories & PageCategory.Guard) == 0) return found;
        var template = new PagemapScanRequest { CategoryAnyOf = PageCategory.Guard, CategoryMask = PageCategory.Guard, ReturnMask = PageCategory.Guard };
        foreach (var r in new PageMapReader(source).ScanRegions(spans, template, cancel))
        {
            if (found.Count > 0 && found[^1].End == r.Start) found[^1] = new AddressRange(found[^1].Start, r.End);
            else found.Add(new AddressRange(r.Start, r.End));
        }
        return found;
    }

    /// <summary>The ranges of <paramref name="guards"/> (ascending) within [<paramref name="start"/>, <paramref name="end"/>); null where none.</summary>
    public static List<AddressRange>? Within(List<AddressRange> guards, ulong start, ulong end)
    {
        List<AddressRange>? within = null;
        foreach (var g in guards)
        {
            if (g.End <= start) continue;
            if (g.Start >= end) break;
            (within ??= new List<AddressRange>()).Add(new AddressRange(System.Math.Max(g.Start, start), System.Math.Min(g.End, end)));
        }
        return within;
    }
}
