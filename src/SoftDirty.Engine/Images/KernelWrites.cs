using System.Collections.Generic;
using System.Linq;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// What an image records of the memory the kernel could write through its own mapping at its save (io_uring registered
/// buffers; memory it writes that no one can locate), and what an increment makes of its parent's record. The kernel
/// writes such a buffer without a page-table bit: a buffer pinned before the parent's reset and written after it shows
/// in no tracker, and once it is unregistered (its io_uring closed and freed) nothing in /proc says it was there. The
/// increment therefore compares by content what was registered at the parent's save as well as what is now.
/// </summary>
internal static class KernelWrites
{
    /// <summary>The manifest's record of <paramref name="pinned"/> (null where there is none, or the source is not a real process).</summary>
    public static List<string>? Record(List<AddressRange>? pinned) =>
        pinned is { Count: > 0 } ? pinned.Select(r => r.ToString()).ToList() : null;

    /// <summary>
    /// <paramref name="pinned"/> (the buffers now) with the buffers <paramref name="parent"/> recorded, sorted; sets
    /// <paramref name="unlocated"/> where the parent recorded writes no one can locate, or a range that does not parse
    /// (a manifest edited by hand: compare everything rather than guess).
    /// </summary>
    public static List<AddressRange> Since(ImageManifest parent, List<AddressRange> pinned, ref bool unlocated)
    {
        if (parent.KernelWritesUnlocated == true) unlocated = true;
        if (parent.KernelWritten is not { Count: > 0 } recorded) return pinned;
        var all = new List<AddressRange>(pinned);
        foreach (var text in recorded)
        {
            if (AddressRange.TryParse(text, out var range)) all.Add(range);
            else unlocated = true;
        }
        all.Sort((x, y) => x.Start.CompareTo(y.Start));
        return all;
    }
}
