using System;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>
/// The write trackings of this process's own memory (a WriteProtect watch or migration of this PowerShell: its
/// userfaultfd, <see cref="WriteProtectTracker"/>), counted so that a write-protect no tracker makes
/// (Search-PageMap -WriteProtect -Id $PID, <see cref="OutsideReset"/>) is refused while one runs: its WP_MATCHING scan
/// would take the Written bits that tracking counts on, and a watch in another runspace would miss those writes without
/// a word (round 13 noted it; the state file that records such resets of another process has no counterpart here).
/// </summary>
internal static class SelfWriteTracking
{
    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static int s_trackers;

    /// <summary>A tracker of this process begins (before it registers anything).</summary>
    public static void Enter(CancellationToken cancel)
    {
        Gate.Wait(cancel);
        try { s_trackers++; }
        finally { Gate.Release(); }
    }

    /// <summary>A tracker of this process ends (its userfaultfd closed).</summary>
    public static void Leave()
    {
        Gate.Wait();
        try { s_trackers--; }
        finally { Gate.Release(); }
    }

    /// <summary>
    /// Holds off new trackers of this process until disposed (the outside write-protect's scan runs meanwhile);
    /// WriteTrackingInUse while one runs.
    /// </summary>
    public static IDisposable ExcludeTrackers(CancellationToken cancel)
    {
        Gate.Wait(cancel);
        if (s_trackers > 0)
        {
            Gate.Release();
            throw new EngineException(EngineError.WriteTrackingInUse,
                $"The writes of this process ({Environment.ProcessId}) are tracked by a WriteProtect watch or migration of this PowerShell (another runspace or job): -WriteProtect would take the writes it counts. Wait for it to end, or run without -WriteProtect.", Environment.ProcessId);
        }
        return new Held();
    }

    private sealed class Held : IDisposable
    {
        private int _released;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) Gate.Release();
        }
    }
}
