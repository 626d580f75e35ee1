using System;
using System.Threading;
using System.Threading.Tasks;

namespace SoftDirty.Commands;

/// <summary>
/// Runs long engine work (a received image's verification, a restore) off the pipeline thread and calls a beat on
/// the pipeline thread every <see cref="IntervalMilliseconds"/> until it ends: the command writes a progress record
/// per beat, which a sender over a session (Invoke-PreCopyMigration -ToSession) reads as a sign of life, so that
/// it can tell a destination that is working from one that died or stalled (<see cref="SessionImageLink"/>).
/// </summary>
internal static class Heartbeat
{
    /// <summary>Milliseconds between beats: well under the sender's stall limit (<see cref="SessionImageLink.MinStallSeconds"/> at the least).</summary>
    public const int IntervalMilliseconds = 5000;

    /// <summary>Runs <paramref name="work"/>, beating meanwhile; its result, or its exception as it threw it.</summary>
    public static T Run<T>(Func<T> work, Action beat)
    {
        var task = Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        while (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(IntervalMilliseconds)) beat();
        return task.GetAwaiter().GetResult();
    }

    /// <summary>Runs <paramref name="work"/>, beating meanwhile; its exception as it threw it.</summary>
    public static void Run(Action work, Action beat) => Run<bool>(() => { work(); return true; }, beat);
}
