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
    /// until disposed (no other command's check and collection come between the record and the scan); null for an
    /// emulated one. This process: WriteTrackingInUse while a WriteProtect tracker of it runs (<see cref="SelfWriteTracking"/>). ProcIOError where the reset cannot be recorded: the scan must not run then.
    /// WriteTrackingInUse where the process's memory is registered by a tracking this command has no state of (another
    /// user's, as root would meet it, another state folder's, or the process's own userfaultfd): its record of writes
    /// would be taken with no reset that it could see, as the module never enables a second tracking over one.
    /// </summary>
    public static IDisposable? Begin(IPageSource source, CancellationToken cancel)
    {
        if (source is not ProcPageSource proc) return null;
        if (proc.ProcessId == Environment.ProcessId) return SelfWriteTracking.ExcludeTrackers(cancel);
        var held = WriteTrackingStore.Lock(proc.ProcessId, cancel);
        try
        {
            if (WriteTrackingStore.Load(proc.ProcessId) is { } state) RemoteWriteProtect.RecordReset(state);
            else if (InjectionSupport.ForeignTracking(proc) is { } foreign)
                throw foreign.Error != EngineError.WriteTrackingInUse ? foreign : new EngineException(EngineError.WriteTrackingInUse,
                    $"The memory of process {proc.ProcessId} is registered for userfaultfd write-protect by a write tracking this command has no state of (Enable-WriteTracking by another user or with another state folder, ${WriteTrackingStore.FolderVariable} = {WriteTrackingStore.Folder}; or the process's own userfaultfd): -WriteProtect would take the writes that tracking recorded without a reset it could see. Run it as that tracking's user, with its state folder, or without -WriteProtect.", proc.ProcessId);
            return held;
        }
        catch
        {
            held.Dispose();
            throw;
        }
    }
}
