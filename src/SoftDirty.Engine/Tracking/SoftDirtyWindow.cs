using System;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>
/// The moment between reading soft-dirty and clearing it. Soft-dirty has no atomic read-and-clear (PAGEMAP_SCAN's
/// WP_MATCHING is userfaultfd write-protect's alone): a write after the read and before clear_refs sets a bit the
/// clear then takes away, so that page would be missing from this collection and from every later one (a chain
/// or a migration would keep its old bytes for good). A real process is stopped for that moment, as CRIU's
/// pre-dump stops it, unless this thread holds it stopped already (-Freeze, a migration's last round); a process
/// stopped by job control is held too (a SIGCONT from elsewhere would let it run inside the moment). An emulated process is held still by taking its machine's lock for the moment: another runspace
/// or thread may write it at any time (a thread job, ForEach-Object -Parallel), and such a write between the read and the clear
/// was lost to the chain, watch or migration for good.
/// The moment is also held under the process's soft-dirty lock (<see cref="TrackingEpoch.Lock"/>, real and emulated):
/// another command's record-and-clear cannot fall inside it, even where the process cannot be stopped.
/// </summary>
internal static class SoftDirtyWindow
{
    /// <summary>
    /// Takes the process's soft-dirty lock and stops the process for the read and the clear (dispose after the clear:
    /// it resumes, then releases); null where there is nothing to hold. <paramref name="exact"/> is false where a write can fall between the two: this process
    /// itself, or one it may not stop (ptrace refused, traced by another tracer); <paramref name="why"/> says which.
    /// </summary>
    public static IDisposable? Stop(IPageSource source, CancellationToken cancel, out bool exact, out string? why)
    {
        var held = TrackingEpoch.Lock(source, cancel);
        try
        {
            IDisposable? stop;
            if (PageWalk.Root(source) is Emulation.EmulatedProcess emulated)
            {
                stop = emulated.HoldStill(cancel);
                exact = true;
                why = null;
            }
            else stop = Freeze(source, cancel, out exact, out why);
            return stop is null ? held : new Both(stop, held);
        }
        catch
        {
            held?.Dispose();
            throw;
        }
    }

    /// <summary>The stop (resumed first), then the lock.</summary>
    private sealed class Both(IDisposable stop, IDisposable? held) : IDisposable
    {
        public void Dispose()
        {
            try { stop.Dispose(); }
            finally { held?.Dispose(); }
        }
    }

    private static ProcessFreeze? Freeze(IPageSource source, CancellationToken cancel, out bool exact, out string? why)
    {
        exact = true;
        why = null;
        if (PageWalk.Root(source) is not ProcPageSource proc) return null;
        int pid = proc.ProcessId;
        if (pid == Environment.ProcessId)
        {
            exact = false;
            why = "a process cannot stop itself";
            return null;
        }
        // A process stopped already is held too: a SIGCONT from elsewhere between the read and the clear would lose its writes
        // of that moment (round 17: the same for -Freeze); one another tracer holds stopped may be let go by it at any moment.
        if (PtraceFreeze.HoldsHere(pid)) return null;
        try { return ProcessFreeze.Freeze(proc, cancel); }
        catch (EngineException ex) when (ex.Error is EngineError.PermissionDenied or EngineError.ProcessAlreadyTraced or EngineError.PtraceNotPermitted)
        {
            exact = false;
            why = ex.Message;
            return null;
        }
    }
}
