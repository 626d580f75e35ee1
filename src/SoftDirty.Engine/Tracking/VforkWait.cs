using System;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;

namespace SoftDirty.Tracking;

/// <summary>
/// A thread that waits in vfork() (or clone/clone3 with CLONE_VFORK, as posix_spawn calls it) for its child to exec or
/// exit: the kernel holds it there (killable only, state D), so PTRACE_INTERRUPT cannot stop it until then, and a
/// tracer that gives up waiting cannot detach it either (PTRACE_DETACH needs a stopped thread): the interrupt stays
/// pending, and once the child is done the thread stops for good in a trap of a tracer that no longer looks at it
/// (round 13). Such a thread is found before anything is attached, from /proc (its system call and state), and waited for
/// (<see cref="WaitEnd"/>): a vfork lasts until the child's exec (posix_spawn's child execs at once: microseconds to
/// milliseconds), and refusing there failed 7 of 20 -Freeze saves of a process that runs programs (round 18).
/// </summary>
internal static class VforkWait
{
    /// <summary>vfork, clone and clone3 (asm/unistd_64.h on x86-64; asm-generic/unistd.h on arm64, which has no vfork).</summary>
    private const int X64Vfork = 58, X64Clone = 56, Arm64Clone = 220, Clone3 = 435;

    /// <summary>
    /// Whether thread <paramref name="tid"/> of <paramref name="pid"/> is in a vfork-like system call and asleep in it,
    /// with the child it waits for (0 where /proc does not list one).
    /// </summary>
    public static bool Waits(int pid, int tid, out int child)
    {
        child = 0;
        var task = string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/task/{tid}");
        if (ProcessFreeze.ThreadState(Path.Combine(task, "stat")) != 'D') return false;
        string call;
        try { call = File.ReadAllText(Path.Combine(task, "syscall")); }
        catch (IOException ex)
        {
            // Out of descriptors, "not in vfork" had a freeze seize a thread that would not stop (round 30).
            ProcReadFailure.ThrowIfLimit(ex, Path.Combine(task, "syscall"));
            return false;
        }
        catch (UnauthorizedAccessException) { return false; }
        int space = call.IndexOf(' ', StringComparison.Ordinal);
        if (!int.TryParse(space > 0 ? call.AsSpan(0, space) : call.AsSpan().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int nr)) return false;
        bool vforkLike = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => nr is X64Vfork or X64Clone or Clone3,
            Architecture.Arm64 => nr is Arm64Clone or Clone3,
            _ => false,
        };
        if (!vforkLike) return false;
        try
        {
            var children = File.ReadAllText(Path.Combine(task, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (children.Length > 0) _ = int.TryParse(children[^1], NumberStyles.None, CultureInfo.InvariantCulture, out child);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return true;
    }

    /// <summary>
    /// How long a vfork is waited for to end before the thread in it is refused: a child that neither execs nor exits in this
    /// time (one that runs code of its own in the parent's memory, or waits for something) is not a posix_spawn.
    /// </summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(5);

    /// <summary>How often /proc is looked at while a vfork is waited for.</summary>
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(1);

    /// <summary>
    /// Waits (nothing attached) until thread <paramref name="tid"/> of <paramref name="pid"/> no longer waits in vfork, at most
    /// <see cref="Bound"/>: whether it ended. <paramref name="child"/>: the child it waits for still (0 where it ended or
    /// /proc does not list one).
    /// </summary>
    public static bool WaitEnd(int pid, int tid, System.Threading.CancellationToken cancel, out int child)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (Waits(pid, tid, out child))
        {
            if (clock.Elapsed >= Bound) return false;
            cancel.ThrowIfCancellationRequested();
            System.Threading.Thread.Sleep(Poll);
        }
        return true;
    }

    /// <summary>ProcIOError naming the thread and its child: nothing was attached.</summary>
    public static EngineException Refusal(int pid, int tid, int child, string what) => new(EngineError.ProcIOError,
        $"{what}: thread {tid} of process {pid} waits in vfork() for its child{(child > 0 ? " " + child.ToString(CultureInfo.InvariantCulture) : "")} to exec or exit, and cannot be stopped until then; it was waited for {Bound.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s (a child that neither execs nor exits is not a posix_spawn) and nothing was attached. Try again once the child has exec()d or exited.",
        pid);
}
