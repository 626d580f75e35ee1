using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace SoftDirty;

internal static class PageSourceExtensions
{
    /// <summary>
    /// Writes one of the clear_refs types, as "N\n": the one place the module clears. A soft-dirty clear starts
    /// a new tracking epoch of the process (<see cref="Tracking.TrackingEpoch"/>), which it returns (null where none can be kept).
    /// The epoch is recorded before the clear: a command stopped between the two (Ctrl+C, kill -9) leaves a new
    /// epoch and no clear (other commands then compare contents), never a clear that no epoch tells of.
    /// </summary>
    public static string? ClearRefs(this IPageSource source, ClearRefsType type)
    {
        Span<byte> text = stackalloc byte[2];
        text[0] = (byte)('0' + (int)type);
        text[1] = (byte)'\n';
        var epoch = type == ClearRefsType.SoftDirty ? Tracking.TrackingEpoch.Record(source) : null;
        source.WriteClearRefs(text);
        return epoch;
    }
}
