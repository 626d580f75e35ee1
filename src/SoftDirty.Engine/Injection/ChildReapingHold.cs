using System;
using System.Reflection;
using System.Threading;

namespace SoftDirty.Injection;

/// <summary>
/// Keeps .NET's reaping of its children from running while this process traces one of them: a thread of its own holds
/// the lock that reaping takes (System.Diagnostics.ProcessWaitState's table of children), from before the first ptrace
/// request until every stop is consumed or let go.
/// </summary>
/// <remarks>
/// On each SIGCHLD, .NET asks waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT) for a child to reap and calls waitpid(pid, WNOHANG)
/// for the children its Process class started. The kernel reports a tracee's ptrace stops to any wait of its tracer's process,
/// WEXITED alone included (kernel/exit.c: eligible_child, wait_task_stopped), and an exec from a thread that is not the leader
/// kills the threads held, whose exits signal SIGCHLD even with SA_NOCLDSTOP. A reaping that such an exit woke took a stop of
/// the leader the tracer had not consumed yet for an exit: the Process said HasExited (exit code 0) while the child ran on, its
/// Kill did nothing, and once the child died .NET's signal thread spun for good on a zombie it believed reaped already, holding
/// that lock, so no later child of the session was ever reaped and every external command hung (round 23: 1 theft in about 80
/// Enable/Disable-WriteTracking pairs of an exec'ing child). A reaping that comes meanwhile waits here, and finds no stop once
/// it runs. The wait is bounded: where the lock is not there (another .NET) or not free within <see cref="EnterTimeout"/>, the
/// tracing goes on without it, as before (<see cref="ChildStopGuard"/>).
/// </remarks>
internal static class ChildReapingHold
{
    /// <summary>How long a hold waits for .NET's reaping to let go of the lock before it goes on without it.</summary>
    public static readonly TimeSpan EnterTimeout = TimeSpan.FromSeconds(1);

    private static readonly object Gate = new();
    private static readonly object? ReapingLock = FindLock();
    private static int _holders;
    private static ManualResetEventSlim? _release;
    private static Thread? _holder;

    /// <summary>Whether a hold is in force now (for tests).</summary>
    internal static bool Held { get; private set; }

    /// <summary>The object .NET's child reaping locks (ProcessWaitState.s_childProcessWaitStates), or null where this .NET has none.</summary>
    private static object? FindLock() =>
        typeof(System.Diagnostics.Process).Assembly.GetType("System.Diagnostics.ProcessWaitState")
            ?.GetField("s_childProcessWaitStates", BindingFlags.Static | BindingFlags.NonPublic)?.GetValue(null);

    /// <summary>Starts a hold, or joins the one in force; end each with <see cref="Exit"/>, from any thread.</summary>
    public static void Enter()
    {
        if (ReapingLock is null) return;
        lock (Gate)
        {
            if (_holders > 0) { _holders++; return; }
            // A thread of its own holds the lock (a monitor is released only by the thread that took it; this hold may end on another).
            var taken = new ManualResetEventSlim();
            var release = new ManualResetEventSlim();
            bool got = false;
            var holder = new Thread(() =>
            {
                if (!Monitor.TryEnter(ReapingLock, EnterTimeout)) { taken.Set(); return; }
                try { got = true; taken.Set(); release.Wait(); }
                finally { Monitor.Exit(ReapingLock); }
            }) { IsBackground = true, Name = "SoftDirty child reaping hold" };
            // Counted once started: refused (a thread limit of this process), no hold is in force and the next Exit finds none.
            try { ThreadLimit.Start(holder, "Holding .NET's reaping of its children off while a child is traced"); }
            catch
            {
                taken.Dispose();
                release.Dispose();
                throw;
            }
            _holders = 1;
            taken.Wait();
            taken.Dispose();
            _release = release;
            _holder = holder;
            Held = got;
        }
    }

    /// <summary>Ends a hold <see cref="Enter"/> started; the last one lets .NET reap again.</summary>
    public static void Exit()
    {
        if (ReapingLock is null) return;
        lock (Gate)
        {
            if (_holders == 0 || --_holders > 0) return;
            _release!.Set();
            _holder!.Join();
            _release.Dispose();
            _release = null;
            _holder = null;
            Held = false;
        }
    }
}
