using System;
using System.Globalization;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace SoftDirty.Commands;

/// <summary>
/// Runs long engine work (a received image's verification, a restore) off the pipeline thread and calls a beat on
/// the pipeline thread every <see cref="IntervalMilliseconds"/> while the work gets on, until it ends: the command writes
/// a progress record per beat, which a sender over a session (Invoke-PreCopyMigration -ToSession) reads as a sign of life,
/// so that it can tell a destination that is working from one that died or stalled (<see cref="SessionImageLink"/>).
/// The work gets on while its thread's I/O counters move (/proc/self/task/TID/io: the system calls that read or wrote
/// and their bytes; verification and restore are reads and writes on that thread). A beat for every interval, whatever
/// the work did, kept a sender waiting for good on a destination whose disk hung (a read of a file system that never
/// answers), with the migrated process stopped in the stop-and-copy round (round 27). Where the counters cannot be
/// read (a kernel without task I/O accounting), every interval beats, as before.
/// </summary>
internal static class Heartbeat
{
    /// <summary>Milliseconds between beats: well under the sender's stall limit (<see cref="SessionImageLink.MinStallSeconds"/> at the least).</summary>
    public const int IntervalMilliseconds = 5000;

    /// <summary>Runs <paramref name="work"/>, beating meanwhile while it gets on; its result, or its exception as it threw it.</summary>
    public static T Run<T>(Func<T> work, Action beat)
    {
        string? counters = null;
        Task<T> task;
        try
        {
            task = Task.Factory.StartNew(() =>
            {
                Volatile.Write(ref counters, CountersOfThisThread());
                return work();
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        // Its thread refused (a thread limit of this PowerShell): the work has not begun (round 28: TaskSchedulerException).
        catch (TaskSchedulerException ex) { throw ThreadLimit.Error("Starting the work of the command on a thread of its own", ex); }
        string? last = null;
        while (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(IntervalMilliseconds))
        {
            var now = Read(Volatile.Read(ref counters));
            if (now is null || now != last) beat();
            last = now;
        }
        return task.GetAwaiter().GetResult();
    }

    /// <summary>Runs <paramref name="work"/>, beating meanwhile while it gets on; its exception as it threw it.</summary>
    public static void Run(Action work, Action beat) => Run<bool>(() => { work(); return true; }, beat);

    /// <summary>The I/O counters file of the calling thread (/proc/self/task/TID/io, from /proc/thread-self); null where unknown.</summary>
    private static string? CountersOfThisThread()
    {
        try
        {
            var target = new FileInfo("/proc/thread-self").LinkTarget; // "PID/task/TID"
            var tid = target?[(target.LastIndexOf('/') + 1)..];
            return tid is { Length: > 0 } && int.TryParse(tid, NumberStyles.None, CultureInfo.InvariantCulture, out _) ? $"/proc/self/task/{tid}/io" : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The read and write counters (rchar, wchar, syscr, syscw) of <paramref name="file"/>; null where unreadable.</summary>
    private static string? Read(string? file)
    {
        if (file is null) return null;
        try
        {
            var text = File.ReadAllText(file);
            int end = text.IndexOf("read_bytes", StringComparison.Ordinal);
            return end > 0 ? text[..end] : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }
}
