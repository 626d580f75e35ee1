using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Threading;

namespace SoftDirty;

internal static class PageSourceExtensions
{
    /// <summary>
    /// An emulated process's machine lock, taken where Ctrl+C can end the wait (its clear_refs takes it uninterruptibly, and a
    /// workload of billions of accesses in another runspace holds it throughout); null for any other source.
    /// </summary>
    private static IDisposable? HoldStill(IPageSource source, CancellationToken cancel) =>
        Tracking.PageWalk.Root(source) is Emulation.EmulatedProcess emulated ? emulated.HoldStill(cancel) : null;

    /// <summary>
    /// Writes one of the clear_refs types, as "N\n": the one place the module clears. A soft-dirty clear starts
    /// a new tracking epoch of the process (<see cref="Tracking.TrackingEpoch"/>), which it returns (null where none can be kept).
    /// The epoch is recorded before the clear: a command stopped between the two (Ctrl+C, kill -9) leaves a new
    /// epoch and no clear (other commands then compare contents), never a clear that no epoch tells of. Both happen
    /// under the process's soft-dirty lock (<see cref="Tracking.TrackingEpoch.Lock"/>), which a caller that reads
    /// soft-dirty first holds across the read too.
    /// </summary>
    public static string? ClearRefs(this IPageSource source, ClearRefsType type, CancellationToken cancel = default)
    {
        Span<byte> text = stackalloc byte[2];
        text[0] = (byte)('0' + (int)type);
        text[1] = (byte)'\n';
        if (type != ClearRefsType.SoftDirty)
        {
            using (HoldStill(source, cancel)) source.WriteClearRefs(text);
            return null;
        }
        // Processes sharing this one's memory (CLONE_VM) lose their bits with it: their epochs are recorded too.
        var sharers = Tracking.TrackingEpoch.Sharers(source);
        using (Tracking.TrackingEpoch.Lock(source, cancel))
        using (HoldStill(source, cancel)) // after the soft-dirty lock, as SoftDirtyWindow takes them
        {
            var epoch = Tracking.TrackingEpoch.Record(source);
            Tracking.TrackingEpoch.RecordSharers(sharers);
            Injection.InjectionSteps.Mark(Tracking.TrackingEpoch.RecordedStep);
            source.WriteClearRefs(text);
            Tracking.TrackingEpoch.RecordSharers(sharers);
            return epoch;
        }
    }
}
