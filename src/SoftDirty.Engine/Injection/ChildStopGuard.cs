using System;
using System.Globalization;
using System.Runtime.InteropServices;

namespace SoftDirty.Injection;

/// <summary>
/// Keeps the ptrace stops of a child of this process away from .NET's child reaping while it is traced.
/// </summary>
/// <remarks>
/// .NET reaps the children its Process class started with waitpid(pid, WNOHANG) each time SIGCHLD arrives, and
/// takes any status it gets for an exit. The kernel reports a tracee's ptrace stops to waitpid in every thread
/// of the tracer's process, and a thread of a tracer that is also the real parent sees them even without
/// WUNTRACED (kernel/exit.c: wait_consider_task, do_wait_pid); each ptrace stop also sends the tracer SIGCHLD
/// unless its SIGCHLD action has SA_NOCLDSTOP (do_notify_parent_cldstop). Left alone, the first stop makes
/// .NET's Process believe the child exited with code 0, and its real exit status is never collected.
/// So while a child is traced: (1) SA_NOCLDSTOP is set on this process's SIGCHLD action (the handler stays,
/// exits still signal), so the stops wake no reaping; (2) the tracer consumes each stop's status itself with
/// waitpid right away (<see cref="RemoteSyscalls"/>, <see cref="SoftDirty.Tracking.PtraceFreeze"/>), so a
/// reaping that another child's exit wakes meanwhile finds nothing to take (a consumed stop reports nothing;
/// after detach there is no stop). The flag is restored when the last guard ends. (3) A reaping that another exit wakes
/// (a held thread killed by an exec from another thread signals SIGCHLD as it dies) would still take a stop not consumed yet:
/// the guard holds .NET's reaping off meanwhile (<see cref="ChildReapingHold"/>).
/// </remarks>
internal sealed partial class ChildStopGuard : IDisposable
{
    private static readonly object Gate = new();
    private static int _holders;
    private static bool _setHere;
    private bool _disposed;
    private bool _holding = true;

    private ChildStopGuard() { }

    /// <summary>A guard when <paramref name="pid"/> is a child of this process (the guard is needed), else null.</summary>
    public static ChildStopGuard? For(int pid)
    {
        if (!IsChild(pid)) return null;
        lock (Gate)
        {
            if (_holders++ == 0) _setHere = SetNoChildStop(true);
        }
        try { ChildReapingHold.Enter(); }
        catch
        {
            // No guard (a thread limit of this process refused the hold's thread): what For did is undone, as Dispose would.
            lock (Gate)
            {
                if (--_holders == 0 && _setHere) { SetNoChildStop(false); _setHere = false; }
            }
            throw;
        }
        return new ChildStopGuard();
    }

    /// <summary>
    /// Lets .NET reap again while every stop of the child is consumed and none can come (a freeze holding all its threads):
    /// its signal thread, which also handles Ctrl+C, is not kept waiting for that whole time. <see cref="Resume"/> before
    /// the next ptrace request that may stop a thread.
    /// </summary>
    public void Pause()
    {
        if (_disposed || !_holding) return;
        _holding = false;
        ChildReapingHold.Exit();
    }

    /// <summary>Holds .NET's reaping off again after <see cref="Pause"/>.</summary>
    public void Resume()
    {
        if (_disposed || _holding) return;
        _holding = true;
        ChildReapingHold.Enter();
    }

    /// <summary>Whether <paramref name="pid"/>'s parent is this process (/proc/PID/status PPid).</summary>
    public static bool IsChild(int pid) =>
        InjectionSupport.ReadStatus(pid) is { } s && s.TryGetValue("PPid", out var ppid)
        && ppid == Environment.ProcessId.ToString(CultureInfo.InvariantCulture);

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_holding) ChildReapingHold.Exit();
        _holding = false;
        lock (Gate)
        {
            if (--_holders == 0 && _setHere) { SetNoChildStop(false); _setHere = false; }
        }
    }

    /// <summary>SA_NOCLDSTOP (include/uapi/asm-generic/signal-defs.h).</summary>
    private const int NoChildStop = 1;

    /// <summary>struct sigaction as glibc and musl lay it out on 64-bit Linux (handler, 1024-bit mask, int flags, restorer).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct SigAction
    {
        public nint Handler;
        public fixed ulong Mask[16];
        public int Flags;
        public nint Restorer;
    }

    [LibraryImport("libc", EntryPoint = "sigaction", SetLastError = true)]
    private static unsafe partial int Sigaction(int signal, SigAction* action, SigAction* old);

    /// <summary>Sets (or clears) SA_NOCLDSTOP on SIGCHLD's action, keeping its handler; true when it changed the action.</summary>
    private static unsafe bool SetNoChildStop(bool on)
    {
        SigAction current;
        if (Sigaction(Signal.SIGCHLD, null, &current) != 0) return false;
        if (((current.Flags & NoChildStop) != 0) == on) return false; // already so (set by someone else: left as it is)
        current.Flags = on ? current.Flags | NoChildStop : current.Flags & ~NoChildStop;
        return Sigaction(Signal.SIGCHLD, &current, null) == 0;
    }
}
