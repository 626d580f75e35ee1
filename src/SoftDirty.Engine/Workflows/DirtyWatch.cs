using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>Something with a time, a dirty rate and the dirty address ranges: a chart can draw it.</summary>
public interface IDirtyTimelinePoint
{
    /// <summary>Seconds since the start (emulated seconds for an emulated process).</summary>
    double Elapsed { get; }
    /// <summary>Pages dirtied per second.</summary>
    double Rate { get; }
    int PageSize { get; }
    JoinedList<AddressRange> Ranges { get; }
}

/// <summary>One interval of Watch-DirtyPage.</summary>
public sealed class DirtyPageSample : IDirtyTimelinePoint
{
    public int ProcessId { get; init; }
    public string Name { get; init; } = "";
    public int Index { get; init; }
    public DateTime Time { get; init; }
    public double Elapsed { get; init; }
    /// <summary>The interval this sample covers, in seconds.</summary>
    public double Interval { get; init; }
    public ulong DirtyPages { get; init; }
    public ulong DirtyBytes { get; init; }
    /// <summary>Pages per second over the interval.</summary>
    public double Rate { get; init; }
    public TrackingMethod Method { get; init; }
    public ulong PagesScanned { get; init; }
    /// <summary>Milliseconds the collection took.</summary>
    public double CollectMilliseconds { get; init; }
    public int PageSize { get; init; }
    /// <summary>The dirty pages as address ranges.</summary>
    public JoinedList<AddressRange> Ranges { get; init; } = JoinedList<AddressRange>.Empty;
    public override string ToString() => $"#{Index} {DirtyPages} pages ({Rate:N0}/s, {Method})";
}

/// <summary>Waits out an interval: by running an emulated workload, or by sleeping (cancellable) for a real process.</summary>
public static class IntervalClock
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

/// <summary>The sampling loop of Watch-DirtyPage: one sample per interval until the count or duration is reached.</summary>
public static class DirtyWatch
{
    public static IEnumerable<DirtyPageSample> Run(IDirtyTracker tracker, TimeSpan interval, int? count, TimeSpan? duration, CancellationToken cancel)
    {
        var source = tracker.Source;
        bool emulated = source is IWorkloadDriver;
        tracker.Reset(cancel);
        var wall = Stopwatch.StartNew();
        double elapsed = 0;
        for (int i = 1; ; i++)
        {
            if (count is { } c && i > c) yield break;
            if (duration is { } d && i * interval.TotalSeconds > d.TotalSeconds + 1e-9) yield break; // the schedule, not the clock
            double before = emulated ? elapsed : wall.Elapsed.TotalSeconds;
            // Sleep to the interval's deadline: the previous collection's time is part of the interval.
            var wait = emulated ? interval : TimeSpan.FromSeconds(Math.Max(0, i * interval.TotalSeconds - wall.Elapsed.TotalSeconds));
            IntervalClock.Wait(source, wait, cancel);
            var set = tracker.Collect(rearm: true, cancel);
            double now = emulated ? before + interval.TotalSeconds : wall.Elapsed.TotalSeconds;
            double span = emulated ? interval.TotalSeconds : Math.Max(1e-6, now - (i == 1 ? 0 : elapsed));
            elapsed = now;
            yield return new DirtyPageSample
            {
                ProcessId = source.ProcessId,
                Name = source.Name,
                Index = i,
                Time = DateTime.Now,
                Elapsed = Math.Round(now, 6),
                Interval = Math.Round(span, 6),
                DirtyPages = set.PageCount,
                DirtyBytes = set.ByteCount,
                Rate = set.PageCount / span,
                Method = set.Method,
                PagesScanned = set.PagesScanned,
                CollectMilliseconds = set.CollectTime.TotalMilliseconds,
                PageSize = set.PageSize,
                Ranges = ToArray(set.Ranges),
            };
        }
    }

    private static AddressRange[] ToArray(IReadOnlyList<AddressRange> r)
    {
        var a = new AddressRange[r.Count];
        for (int i = 0; i < a.Length; i++) a[i] = r[i];
        return a;
    }
}
