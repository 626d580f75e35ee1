using System;
using System.Diagnostics;
using System.Threading;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>Waits out an interval: by running an emulated workload, or by sleeping (cancellable) for a real process.</summary>
internal static class IntervalClock
{
    /// <summary>
    /// For a real process, returns no earlier than the whole interval on the monotonic Stopwatch clock:
    /// a timed wait rounds to whole milliseconds and may wake early, so it sleeps again until the deadline.
    /// </summary>
    public static void Wait(IPageSource source, TimeSpan interval, CancellationToken cancel)
    {
        if (interval <= TimeSpan.Zero) return;
        if (source is IWorkloadDriver driver) { driver.Advance(interval, cancel); return; }
        long deadline = Stopwatch.GetTimestamp() + (long)Math.Ceiling(interval.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            long left = deadline - Stopwatch.GetTimestamp();
            if (left <= 0) return;
            var sleep = TimeSpan.FromMilliseconds(Math.Ceiling(left * 1000.0 / Stopwatch.Frequency));
            if (cancel.WaitHandle.WaitOne(sleep)) cancel.ThrowIfCancellationRequested();
        }
    }
}
