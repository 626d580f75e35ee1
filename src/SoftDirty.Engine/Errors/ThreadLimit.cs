using System;
using System.Threading;

namespace SoftDirty;

/// <summary>
/// A thread the system refuses to this process: the user's process limit (RLIMIT_NPROC, ulimit -u), a pids cgroup's
/// pids.max, or memory for its stack. .NET says so with a System.OutOfMemoryException from Thread.Start (a
/// TaskSchedulerException around it from a long-running task), which reached the caller as its own error id (round 28: a
/// Save-MemoryImage -Freeze and a Restore-MemoryImage at the limit); it is ResourceLimit, as a limit of this process is.
/// </summary>
internal static class ThreadLimit
{
    /// <summary>ResourceLimit for <paramref name="what"/>, which needed a thread the system refused.</summary>
    public static EngineException Error(string what, Exception inner) =>
        new(EngineError.ResourceLimit,
            $"{what}: the system refused this PowerShell a new thread (the user's process limit, ulimit -u, or the pids.max of its pids cgroup, or memory for the thread's stack). Raise the limit and try again.",
            null, 0, inner);

    /// <summary>Starts <paramref name="thread"/>; ResourceLimit where the system refuses it.</summary>
    public static void Start(Thread thread, string what)
    {
        try { thread.Start(); }
        catch (OutOfMemoryException ex) { throw Error(what, ex); }
    }
}
