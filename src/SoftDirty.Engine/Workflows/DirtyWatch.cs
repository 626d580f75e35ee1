using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>The sampling loop of Watch-DirtyPage: one sample per interval until the count or duration is reached.</summary>
internal static class DirtyWatch
{
    /// <summary>The samples; <paramref name="warn"/> is told when one counts every present page because another command or session reset the tracking since the last.</summary>
    public static IEnumerable<DirtyPageSample> Run(IDirtyTracker tracker, TimeSpan interval, int? count, TimeSpan? duration, CancellationToken cancel, Action<string>? warn = null)
    {
        var source = tracker.Source;
        bool emulated = source is IWorkloadDriver;
        tracker.Reset(cancel);
        var wall = Stopwatch.StartNew();
        double elapsed = 0;
        bool toldUnreadable = false, toldInexact = false, toldOverCount = false, toldUnopened = false;
        for (int i = 1; ; i++)
        {
            if (count is { } c && i > c) yield break;
            // The schedule, not the clock: Duration / Interval samples, rounded up (a watch shorter than one interval took none).
            if (duration is { } d && (i - 1) * interval.TotalSeconds >= d.TotalSeconds - 1e-9) yield break;
            double before = emulated ? elapsed : wall.Elapsed.TotalSeconds;
            // Sleep to the interval's deadline: the previous collection's time is part of the interval.
            var wait = emulated ? interval : TimeSpan.FromSeconds(Math.Max(0, i * interval.TotalSeconds - wall.Elapsed.TotalSeconds));
            IntervalClock.Wait(source, wait, cancel);
            var set = tracker.Collect(rearm: true, cancel);
            if (set.ResetElsewhere) warn?.Invoke(ResetElsewhereWarning(source, $"sample {i}"));
            if (set.InexactReason is { } why && !toldInexact) { toldInexact = true; warn?.Invoke(InexactWarning(source, why)); }
            if (set.OverCountReason is { } over && !toldOverCount) { toldOverCount = true; warn?.Invoke(OverCountWarning(source, over)); }
            if (set.UnreadablePages > 0 && !toldUnreadable) { toldUnreadable = true; warn?.Invoke(UnreadableWarning(source, set.UnreadablePages, $"sample {i}")); }
            if (set.UnopenedObjectPages > 0 && !toldUnopened) { toldUnopened = true; warn?.Invoke(UnopenedWarning(source, set, $"sample {i}")); }
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

    /// <summary>What a watch or a migration says when another command or session reset the tracking under it.</summary>
    internal static string ResetElsewhereWarning(IPageSource source, string what) =>
        $"The tracking of process {source.ProcessId} ({source.Name}) was reset by another command or session since the last look (Save-MemoryImage, Watch-DirtyPage, Clear-SoftDirty, a migration): {what} counts every present page as dirty, since the writes before that reset cannot be told.";

    /// <summary>What a watch or a migration says (once) when soft-dirty could not be read and cleared at one moment (<see cref="SoftDirtyWindow"/>).</summary>
    internal static string InexactWarning(IPageSource source, string why) =>
        $"Process {source.ProcessId} ({source.Name}) could not be stopped for the moment between reading soft-dirty and clearing it ({why}): a page written in that moment and not again is missing from every later sample. Use -Method WriteProtect, or run as a user who may ptrace the process, for exact counts.";

    /// <summary>What a watch or a migration says (once) when some pages counted may not have been written (<see cref="DirtyPageSet.OverCountReason"/>).</summary>
    internal static string OverCountWarning(IPageSource source, string why) =>
        $"Process {source.ProcessId} ({source.Name}): {why}, so every present page there counts as written at every look (an over-count, never a miss). Leave those mappings out with -Mapping for exact counts.";

    /// <summary>What a watch or a migration says (once) when the tracker could not read some present pages: writes there are not seen.</summary>
    internal static string UnreadableWarning(IPageSource source, ulong pages, string what) =>
        $"{pages} present page(s) of process {source.ProcessId} ({source.Name}) could not be read at {what} (kept from other processes as memfd_secret is, served by the process's own userfaultfd, or in a mapping of device memory, VM_PFNMAP, such as a perf_event ring buffer, which pagemap cannot show): writes to them cannot be seen and are not counted. Leave those mappings out with -Mapping, or use a page-table method (SoftDirty, WriteProtect) where the kernel has one (it sees no write to VM_PFNMAP memory either).";

    /// <summary>
    /// What a watch or a migration says (once) when pages of memory that ends with the process, not mapped in it, could not be
    /// read from their object (<see cref="DirtyPageSet.UnopenedObjectPages"/>).
    /// </summary>
    internal static string UnopenedWarning(IPageSource source, DirtyPageSet set, string what) =>
        $"{set.UnopenedObjectPages} page(s) of memory that ends with process {source.ProcessId} ({source.Name}) (a memfd, shared anonymous or System V memory, a deleted file: first {set.FirstUnopenedObject}) are not mapped in the process and could not be read from the object at {what}: this user cannot open it (/proc/PID/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, and the process holds no descriptor of it), or its file system's reads may never answer. Writes there by another process or with write(2) cannot be seen and are not counted. Watch as root, or leave those mappings out with -Mapping.";

    private static AddressRange[] ToArray(IReadOnlyList<AddressRange> r)
    {
        var a = new AddressRange[r.Count];
        for (int i = 0; i < a.Length; i++) a[i] = r[i];
        return a;
    }
}
