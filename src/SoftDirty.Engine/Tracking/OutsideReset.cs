using System;
using System.Threading;
using SoftDirty.Injection;

namespace SoftDirty.Tracking;

/// <summary>
/// A write-protect that no tracker of the module makes (Search-PageMap -WriteProtect). PAGEMAP_SCAN with WP_MATCHING takes
/// the Written bits of the pages it matches, and those bits are also the record of the write tracking the module keeps in
/// another real process (Enable-WriteTracking, a WriteProtect image chain): the scan is a reset of that tracking. It is
/// recorded as one first, under the tracking's lock, as the module's own collections are (<see cref="WriteProtectTracker"/>),
/// so a watch or an increment counting from the last reset never trusts bits the scan took away (an increment missed the
/// pages written since its parent and matched by the scan). An emulated process needs nothing here: it counts its own
/// write-protects (<see cref="Emulation.EmulatedProcess.WriteProtects"/>).
/// </summary>
internal static class OutsideReset
{
    /// <summary>
    /// Records the reset where the module tracks the writes of <paramref name="source"/>, and holds the tracking's lock
    /// until disposed (no other command's check and collection come between the record and the scan); null for this
    /// process or an emulated one. ProcIOError where the reset cannot be recorded: the scan must not run then.
    /// </summary>
    public static IDisposable? Begin(IPageSource source, CancellationToken cancel)
    {
        if (source is not ProcPageSource proc || proc.ProcessId == Environment.ProcessId) return null;
        var held = WriteTrackingStore.Lock(proc.ProcessId, cancel);
        try
        {
            if (WriteTrackingStore.Load(proc.ProcessId) is { } state) RemoteWriteProtect.RecordReset(state);
            return held;
        }
        catch
        {
            held.Dispose();
            throw;
        }
    }
}
