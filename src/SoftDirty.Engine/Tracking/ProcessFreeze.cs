using System;
using System.Globalization;
using System.IO;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>Stops a process for a consistent read and resumes what it stopped (an emulated one directly, a real one with <see cref="PtraceFreeze"/>).</summary>
internal sealed class ProcessFreeze : IDisposable
{
    private readonly IPageSource _source;
    private bool _frozen;

    private ProcessFreeze(IPageSource source) => _source = source;

    private PtraceFreeze? _ptrace;

    /// <summary>Freezes <paramref name="source"/>: an <see cref="IFreezable"/> itself, a real process with <see cref="PtraceFreeze"/> (resumed by the kernel if this process dies; one stopped by job control stays stopped after).</summary>
    public static ProcessFreeze Freeze(IPageSource source, CancellationToken cancel = default)
    {
        var f = new ProcessFreeze(source);
        if (source is IFreezable freezable) { freezable.Freeze(); f._frozen = true; return f; }
        f._ptrace = PtraceFreeze.Freeze(source.ProcessId, cancel, source as ProcPageSource);
        f._frozen = true;
        return f;
    }

    /// <summary>The state letter of a /proc/.../stat file (R, S, D, T, t, Z...); null where it cannot be read (gone).</summary>
    /// <remarks>
    /// This process out of descriptors or memory (EMFILE, ENFILE, ENOMEM) is ResourceLimit: read as "gone", a freeze let go of
    /// a thread it had stopped (held stopped for as long as this PowerShell ran), seized a thread waiting in vfork, or took a
    /// process for exited (round 30). <see cref="ThreadStateOrNull"/> is for what must not throw (a release, a reaper thread).
    /// </remarks>
    internal static char? ThreadState(string statPath)
    {
        try { return StateLetter(File.ReadAllText(statPath)); }
        catch (IOException ex)
        {
            ProcReadFailure.ThrowIfLimit(ex, statPath);
            return null;
        }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Where in the kernel a thread sleeps (/proc/PID/task/TID/wchan, a function name), for a message; "state S" where unknown.</summary>
    internal static string WaitChannel(int tid)
    {
        string path = $"/proc/{tid.ToString(CultureInfo.InvariantCulture)}/wchan";
        try { return File.ReadAllText(path) is { Length: > 1 } name && name != "0" ? $"in {name}" : "the kernel does not say where"; }
        catch (IOException) { return "the kernel does not say where"; }
        catch (UnauthorizedAccessException) { return "the kernel does not say where"; }
    }

    /// <summary>
    /// Why thread <paramref name="tid"/> does not reach a stop it was asked for, for a message: its
    /// cgroup's freezer holds it (cgroup v1 freezer.state FROZEN or FREEZING, v2 cgroup.events "frozen 1", or asleep in
    /// __refrigerator), where it runs again only once someone thaws that cgroup (round 34: said "sleeps in the kernel where only
    /// a fatal signal wakes it", and named ptrace_stop for a thread frozen while held); else where in the kernel it sleeps.
    /// </summary>
    internal static string WhyNotRunning(int tid)
    {
        string where = WaitChannel(tid);
        if (FrozenCgroup(tid) is { } cgroup) return $"its cgroup's freezer holds it ({cgroup}), and it runs again only once that cgroup is thawed";
        if (where == $"in {RefrigeratorFunction}") return $"it is frozen ({where}: a cgroup's freezer, or a suspend), and runs again only once thawed";
        return $"it sleeps in the kernel where only a fatal signal wakes it ({where}), such as a read a FUSE server or a network file system holds";
    }

    /// <summary>The kernel function a frozen task sleeps in (kernel/freezer.c), as /proc/PID/wchan names it.</summary>
    private const string RefrigeratorFunction = "__refrigerator";

    /// <summary>
    /// The freezer file that says the cgroup of thread <paramref name="tid"/> is frozen, with what it says (cgroup v1's
    /// freezer.state, FROZEN or FREEZING, or v2's cgroup.events, "frozen 1": each the cgroup's own state, its parents'
    /// included); null where it is not, or cannot be told.
    /// </summary>
    private static string? FrozenCgroup(int tid)
    {
        if (CgroupFolders.Of(tid, "freezer") is not (bool v2, var up)) return null;
        string file = Path.Combine(up[0].Folder, v2 ? "cgroup.events" : "freezer.state");
        string? said = ReadOrNull(file);
        if (v2) return said is not null && Array.IndexOf(said.Split('\n'), "frozen 1") >= 0 ? $"{file}: frozen 1" : null;
        return said?.Trim() is { } state && state is "FROZEN" or "FREEZING" ? $"{file}: {state}" : null;
    }

    private static string? ReadOrNull(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary><see cref="ThreadState"/>, but null for every failure: for a release of what is held, and a reaper thread.</summary>
    internal static char? ThreadStateOrNull(string statPath)
    {
        try { return StateLetter(File.ReadAllText(statPath)); }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>PF_IO_WORKER (include/linux/sched.h), in the flags of /proc/.../stat: an io_uring worker or SQPOLL thread.</summary>
    private const ulong IoWorkerFlag = 0x10;

    /// <summary>The field of /proc/.../stat that holds the task's flags (the ninth; the state letter is the third).</summary>
    private const int FlagsField = 9, StateField = 3;

    /// <summary>
    /// Whether the thread of <paramref name="statPath"/> is an io_uring worker (iou-wrk-PID, iou-sqp-PID: PF_IO_WORKER): a thread
    /// of the process that runs only in the kernel and holds no user-space registers, so a syscall injected there is never made.
    /// False where the file cannot be read (gone) or has no such field.
    /// </summary>
    internal static bool IsIoWorker(string statPath)
    {
        string stat;
        try { stat = File.ReadAllText(statPath); }
        catch (IOException ex)
        {
            ProcReadFailure.ThrowIfLimit(ex, statPath);
            return false;
        }
        catch (UnauthorizedAccessException) { return false; }
        int close = stat.LastIndexOf(')');
        if (close < 0 || close + 2 >= stat.Length) return false;
        var fields = stat.AsSpan(close + 2).ToString().Split(' ');
        return fields.Length > FlagsField - StateField
            && ulong.TryParse(fields[FlagsField - StateField], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ulong flags)
            && (flags & IoWorkerFlag) != 0;
    }

    /// <summary>The state letter after the command name's closing parenthesis; null where there is none.</summary>
    private static char? StateLetter(string stat)
    {
        int close = stat.LastIndexOf(')');
        return close > 0 && close + 2 < stat.Length ? stat[close + 2] : null;
    }

    /// <summary>Every thread of the process is stopped (state T or t), or gone.</summary>
    internal static bool AllStopped(int pid)
    {
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                var state = ThreadState(Path.Combine(task, "stat"));
                if (state is not (null or 'T' or 't' or 'Z' or 'X')) return false;
            }
            return true;
        }
        catch (IOException) { return true; }
        catch (UnauthorizedAccessException) { return true; }
    }

    public void Dispose()
    {
        if (!_frozen) return;
        _frozen = false;
        if (_source is IFreezable freezable) freezable.Thaw();
        else _ptrace?.Dispose();
    }
}
