using System;
using System.Threading;
using SoftDirty.Injection;

namespace SoftDirty.Tracking;

/// <summary>Creates trackers; resolves Auto to the best method the target supports.</summary>
internal static class DirtyTracker
{
    /// <summary>
    /// The method Auto picks: SoftDirty where the kernel sets bit 55; else WriteProtect where the target is
    /// this process, an emulated one that supports it, or another process this one may inject into and keep the tracking
    /// state of; else Hash. <paramref name="reason"/> says why.
    /// </summary>
    public static TrackingMethod Resolve(IPageSource source, TrackingMethod method, out string reason)
    {
        switch (method)
        {
            case TrackingMethod.SoftDirty:
                reason = "SoftDirty (asked for): clear_refs \"4\" and bit 55 of pagemap.";
                return method;
            case TrackingMethod.WriteProtect:
                reason = "WriteProtect (asked for): userfaultfd async write-protect and PAGEMAP_SCAN WRITTEN.";
                return method;
            case TrackingMethod.Hash:
                reason = "Hash (asked for): present pages hashed through /proc/PID/mem.";
                return method;
        }
        if (source.Features.SoftDirty)
        {
            reason = "Auto chose SoftDirty: the kernel sets the soft-dirty bit.";
            return TrackingMethod.SoftDirty;
        }
        // Another real process's tracking lives on between commands, with its state in the state folder: without a usable
        // folder WriteProtect would fail, where Hash needs none.
        if (WriteProtectTracker.IsSupported(source, out var refused)
            && (source is not ProcPageSource || source.ProcessId == Environment.ProcessId || WriteTrackingStore.FolderUsable(out refused)))
        {
            reason = $"Auto chose WriteProtect: no soft-dirty here ({source.Features.SoftDirtyReason}), and process {source.ProcessId} can be registered for async write-protect.";
            return TrackingMethod.WriteProtect;
        }
        reason = $"Auto chose Hash: no soft-dirty here ({source.Features.SoftDirtyReason ?? "not supported"}), and async write-protect cannot be used: {refused}";
        return TrackingMethod.Hash;
    }

    /// <summary>A tracker of <paramref name="method"/> (Auto resolved) for <paramref name="source"/>, limited to the mappings <paramref name="selector"/> accepts.</summary>
    /// <remarks><paramref name="cancel"/> ends the wait for another command's write-tracking lock (WriteProtect of another process).</remarks>
    public static IDirtyTracker Create(IPageSource source, TrackingMethod method, PageHashAlgorithm algorithm = PageHashAlgorithm.Fast128, Func<MemoryMapping, bool>? selector = null,
        CancellationToken cancel = default)
    {
        var resolved = Resolve(source, method, out var reason);
        return resolved switch
        {
            // What other processes can change without a write through this process's page table is compared by content.
            TrackingMethod.SoftDirty => ContentCheckedTracker.Create(source, selector, algorithm, s => new SoftDirtyTracker(source, s) { Description = reason }),
            TrackingMethod.WriteProtect => ContentCheckedTracker.Create(source, selector, algorithm, s => new WriteProtectTracker(source, s, cancel) { Description = reason }, writableOnly: true),
            _ => new HashTracker(source, algorithm, selector) { Description = reason },
        };
    }
}
