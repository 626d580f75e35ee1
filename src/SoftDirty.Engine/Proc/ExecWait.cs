using System;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;
using SoftDirty.Tracking;

namespace SoftDirty;

/// <summary>
/// An exec from a thread that is not the leader, seen while it runs: the exec kills the other threads and waits for the
/// leader to be a zombie before its thread takes the leader's id, so for that while the process looks like one whose main
/// thread called pthread_exit (a zombie leader, live threads, /proc/PID showing no memory and, to a user who is not root,
/// files owned by root). The exec'ing thread sits in execve (or execveat) meanwhile, which its /proc syscall file says:
/// that tells the two apart without waiting for a process that will stay so (round 22: 35 of 40 Enable-WriteTracking of a
/// target exec'ing so were misdiagnosed).
/// </summary>
internal static class ExecWait
{
    /// <summary>execve and execveat (asm/unistd_64.h on x86-64; asm-generic/unistd.h on arm64).</summary>
    private const int X64Execve = 59, X64Execveat = 322, Arm64Execve = 221, Arm64Execveat = 281;

    /// <summary>How long an exec under way is waited for (the other threads die, then the exec'ing thread takes the leader's id).</summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(1);

    /// <summary>Whether a thread of <paramref name="pid"/> is inside execve or execveat (its syscall file; false where it cannot be read).</summary>
    public static bool UnderWay(int pid) => InExec(pid, runningCounts: false);

    /// <summary>
    /// Whether a thread of <paramref name="pid"/> is in an exec or may be: one on a CPU counts too (its syscall file says only
    /// "running"). False only where no exec can be under way now.
    /// </summary>
    public static bool MayBeUnderWay(int pid) => InExec(pid, runningCounts: true);

    /// <summary>
    /// The same; with <paramref name="runningCounts"/>, a thread on a CPU counts too: its syscall file says only "running", and
    /// the exec'ing thread runs for moments between the waits of its exec.
    /// </summary>
    private static bool InExec(int pid, bool runningCounts)
    {
        string[] tasks;
        var listing = string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/task");
        try { tasks = Directory.GetDirectories(listing); }
        catch (IOException ex)
        {
            ProcReadFailure.ThrowIfLimit(ex, listing);
            return false;
        }
        catch (UnauthorizedAccessException) { return false; }
        foreach (var task in tasks)
        {
            if (!int.TryParse(Path.GetFileName(task), NumberStyles.None, CultureInfo.InvariantCulture, out _)) continue;
            string call;
            try { call = File.ReadAllText(Path.Combine(task, "syscall")); }
            catch (IOException ex)
            {
                ProcReadFailure.ThrowIfLimit(ex, Path.Combine(task, "syscall"));
                continue;
            }
            catch (UnauthorizedAccessException) { continue; }
            if (runningCounts && call.StartsWith("running", StringComparison.Ordinal)) return true;
            int space = call.IndexOf(' ', StringComparison.Ordinal);
            if (!int.TryParse(space > 0 ? call.AsSpan(0, space) : call.AsSpan().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int nr)) continue;
            bool exec = RuntimeInformation.ProcessArchitecture switch
            {
                Architecture.X64 => nr is X64Execve or X64Execveat,
                Architecture.Arm64 => nr is Arm64Execve or Arm64Execveat,
                _ => false,
            };
            if (exec) return true;
        }
        return false;
    }

    /// <summary>Whether, a moment later, still no thread of <paramref name="pid"/> is in (or may be in) an exec.</summary>
    private static bool PausedNotInExec(int pid)
    {
        System.Threading.Thread.Sleep(2);
        return !InExec(pid, runningCounts: true);
    }

    /// <summary>
    /// After a denied open of a /proc file of <paramref name="pid"/>: whether to try again, having waited a moment. Yes while
    /// an exec is under way, and where the process is the caller's own (same real and effective user id): an exec makes its
    /// files root's for a moment (the leader a zombie, or the new memory not yet the user's to read), which a user who is not
    /// root was refused (round 22: 1 in 400). A process of another user, or one that stays refused, is refused as before.
    /// </summary>
    public static bool DeniedForAMoment(int pid)
    {
        if (!UnderWay(pid) && !OwnedByCaller(pid)) return false;
        System.Threading.Thread.Sleep(DeniedRetryDelay);
        return true;
    }

    /// <summary>How long <see cref="DeniedForAMoment"/> waits before the open is tried again.</summary>
    private static readonly TimeSpan DeniedRetryDelay = TimeSpan.FromMilliseconds(2);

    /// <summary>Whether every user id of <paramref name="pid"/> (its status Uid line) is the caller's effective one.</summary>
    private static bool OwnedByCaller(int pid)
    {
        if (Injection.InjectionSupport.ReadStatus(pid) is not { } status || !status.TryGetValue("Uid", out var uids)) return false;
        uint me = Injection.Ptrace.GetEffectiveUserId();
        foreach (var u in uids.Split('\t', StringSplitOptions.RemoveEmptyEntries))
            if (!uint.TryParse(u, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) || id != me) return false;
        return true;
    }

    /// <summary>
    /// For a process whose leader is a zombie: waits, while an exec is under way (<see cref="UnderWay"/>) and at most
    /// <see cref="Bound"/>, until the leader is one no more. Whether it is not (an exec ended: the process runs another
    /// program under the same id); false where it stays a zombie (pthread_exit) or the process is gone.
    /// </summary>
    public static bool LeaderReplaced(int pid)
    {
        var stat = string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/stat");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var state = ProcessFreeze.ThreadState(stat);
            if (state is null) return false;
            if (state is not ('Z' or 'X')) return true;
            // Looked at twice before giving up: a listing of the threads may miss the exec'ing thread for an instant while it
            // takes the leader's id (round 22: 1 in 600 reads said pthread_exit).
            if (clock.Elapsed >= Bound || (!InExec(pid, runningCounts: true) && PausedNotInExec(pid)))
                return StaysZombie(stat) is false;
            System.Threading.Thread.Sleep(1);
        }
    }

    /// <summary>
    /// Whether the leader (its <paramref name="stat"/> file) is a zombie still after <see cref="SettleLooks"/> looks
    /// <see cref="SettleDelay"/> apart: false as soon as it is not (an exec ended), null where the process is gone. A zombie
    /// leader of a pthread_exit stays one; the last step of an exec (the exchange of ids) may wait for a CPU on a busy
    /// machine while no thread's syscall file could be read as in the exec (the round 32 merge gate, unprivileged: an Enable
    /// of Round 22's exec'ing target said pthread_exit). A pthread_exit's verdict costs these looks.
    /// </summary>
    private static bool? StaysZombie(string stat)
    {
        for (int look = 0; ; look++)
        {
            if (ProcessFreeze.ThreadState(stat) is not { } now) return null;
            if (now is not ('Z' or 'X')) return false;
            if (look == SettleLooks) return true;
            System.Threading.Thread.Sleep(SettleDelay);
        }
    }

    /// <summary>How many more looks <see cref="StaysZombie"/> takes, and how far apart.</summary>
    private const int SettleLooks = 3;
    private static readonly TimeSpan SettleDelay = TimeSpan.FromMilliseconds(10);
}
