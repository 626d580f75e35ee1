using System.Runtime.InteropServices;

namespace SoftDirty.Injection;

/// <summary>The ptrace and waitpid calls of syscall injection and of the -Freeze stop (<see cref="SoftDirty.Tracking.PtraceFreeze"/>) (sys/ptrace.h, linux/ptrace.h). Linux only.</summary>
internal static unsafe partial class Ptrace
{
    private const string Libc = "libc";

    public const long Cont = 7, Syscall = 24, Detach = 17;
    public const long SetOptions = 0x4200, GetRegSet = 0x4204, SetRegSet = 0x4205, Seize = 0x4206, Interrupt = 0x4207;
    /// <summary>
    /// PTRACE_O_TRACESYSGOOD: syscall stops report SIGTRAP | 0x80 (<see cref="SyscallStop"/>). It also makes a
    /// syscall stop harmless when the tracer dies in it: the kernel then "re-sends" the stop's code, which with
    /// 0x80 set is no valid signal and is dropped; plain SIGTRAP would kill the tracee.
    /// </summary>
    public const long TraceSysGood = 1;
    /// <summary>The stop signal of a syscall-entry or syscall-exit stop under <see cref="TraceSysGood"/>.</summary>
    public const int SyscallStop = Signal.SIGTRAP | 0x80;
    public const long GetSigMask = 0x420a, SetSigMask = 0x420b, GetSigInfo = 0x4202;
    /// <summary>WNOHANG: waitpid returns 0 at once when nothing is to report.</summary>
    public const int NoHang = 1;
    /// <summary>sizeof(siginfo_t).</summary>
    public const int SigInfoSize = 128;
    /// <summary>NT_PRSTATUS: the general registers (user_regs_struct) for GETREGSET/SETREGSET.</summary>
    public const long NtPrStatus = 1;
    /// <summary>PTRACE_EVENT_STOP: the stop PTRACE_INTERRUPT (or a group stop) reports under PTRACE_SEIZE.</summary>
    public const int EventStop = 128;
    /// <summary>__WALL: wait for any child thread, cloned or not.</summary>
    public const int WaitAll = 0x40000000;

    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec { public void* Base; public nuint Length; }

    /// <summary>
    /// One ptrace request, made by the tracer thread of the caller's ptrace scope (<see cref="TracerThread"/>) where it has
    /// one; its errno is the caller's last P/Invoke error.
    /// </summary>
    public static nint Call(long request, int tid, nint address, nint data) =>
        TracerThread.OfCaller() is { } tracer ? tracer.Call(request, tid, address, data) : Request(request, tid, address, data);

    /// <summary>ptrace(2) from the calling thread, which is the tracer of what it attaches.</summary>
    [LibraryImport(Libc, EntryPoint = "ptrace", SetLastError = true)]
    internal static partial nint Request(long request, int tid, nint address, nint data);

    [LibraryImport(Libc, EntryPoint = "waitpid", SetLastError = true)]
    public static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport(Libc, EntryPoint = "waitid", SetLastError = true)]
    private static partial int WaitId(int idType, int id, byte* info, int options);

    /// <summary>waitid's P_PID, WSTOPPED, and where si_pid and si_status lie in a SIGCHLD siginfo_t (64-bit).</summary>
    private const int IdTypePid = 1, WaitStoppedOnly = 2, SigInfoPid = 16, SigInfoStatus = 24;

    /// <summary>
    /// Consumes a pending ptrace stop of thread <paramref name="tid"/> without waiting; returns its waitpid-style
    /// status, or null when none is pending. With <paramref name="keepExits"/> (a child of this process) it is
    /// waitid with WSTOPPED alone: an exit is never reaped here, it stays for the child's real parent code
    /// (.NET's Process, whose reaping would fail fast on a child someone else reaped). Otherwise waitpid, which
    /// also reaps a traced thread that died (the tracer must, before its real parent can).
    /// </summary>
    public static int? TakeStop(int tid, bool keepExits)
    {
        int status;
        if (!keepExits) return WaitPid(tid, &status, WaitAll | NoHang) == tid ? status : null;
        byte* info = stackalloc byte[SigInfoSize];
        new System.Span<byte>(info, SigInfoSize).Clear();
        if (WaitId(IdTypePid, tid, info, WaitStoppedOnly | WaitAll | NoHang) != 0 || *(int*)(info + SigInfoPid) != tid) return null;
        return (*(int*)(info + SigInfoStatus) << 8) | 0x7f;
    }

    /// <summary>How often <see cref="Release"/> looks again at a thread it stopped again or that is dying.</summary>
    public static readonly System.TimeSpan ReapInterval = System.TimeSpan.FromMilliseconds(1);

    /// <summary>How long <see cref="Release"/> waits for a thread it stopped again, or for one dying, before it leaves it.</summary>
    public static readonly System.TimeSpan ReleaseTimeout = System.TimeSpan.FromSeconds(1);

    /// <summary>waitpid(WNOHANG) of one tracee: whether it reaped an exit (a stop it reports is not taken).</summary>
    public static bool ReapIfExited(int tid)
    {
        int status;
        return WaitPid(tid, &status, WaitAll | NoHang) == tid && !Stopped(status);
    }

    /// <summary>
    /// Whether tracee <paramref name="tid"/> of this process may be reaped here once it died. A thread that is not a leader
    /// (<paramref name="leader"/> false): yes, only its tracer can (an exec waits for that). A thread group leader whose parent is
    /// another process: yes, for a tracer's wait does not take a leader's exit, it hands the zombie on to its parent (the
    /// kernel's EXIT_TRACE), which until then does not see it: left unreaped, a target killed while frozen stayed a zombie its
    /// parent could not wait for, for as long as this PowerShell ran (round 17). A child of this process: no, its exit is this
    /// process's own reaping's (.NET's Process).
    /// </summary>
    public static bool Reapable(int tid, bool leader) => !leader || ParentOf(tid) != System.Environment.ProcessId;

    /// <summary>The parent of <paramref name="pid"/> (/proc/PID/status PPid, the real parent, whoever traces it); 0 where it cannot be read.</summary>
    public static int ParentOf(int pid) =>
        InjectionSupport.ReadStatus(pid) is { } status && status.TryGetValue("PPid", out var ppid)
        && int.TryParse(ppid, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int parent) ? parent : 0;

    /// <summary>
    /// Detaches tracee <paramref name="tid"/> (handing <paramref name="signal"/> back). Where that fails (PTRACE_DETACH needs a
    /// stopped tracee) the thread is one that runs under this tracer (attached, then its exec from a thread that is not the
    /// leader made it the leader under the leader's id), or one killed (by such an exec, or a SIGKILL) and a zombie until its
    /// tracer reaps it, which an exec waits for: it is stopped again and detached, or reaped where <see cref="Reapable"/>
    /// (a thread group leader, <paramref name="leader"/>, is reaped only to hand it on to a parent that is another process),
    /// so nothing stays traced by this process.
    /// </summary>
    public static void Release(int tid, int signal, bool leader)
    {
        if (Call(Detach, tid, 0, signal) == 0) return;
        bool reapable = Reapable(tid, leader);
        if (reapable && ReapIfExited(tid)) return;
        if (Call(Interrupt, tid, 0, 0) != 0) return; // not a tracee of this thread any more (gone, reaped)
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < ReleaseTimeout)
        {
            if (Call(Detach, tid, 0, signal) == 0) return;
            if (TakeStop(tid, keepExits: !reapable) is { } status && !Stopped(status)) return; // it died, and was reaped
            System.Threading.Thread.Sleep(ReapInterval);
        }
    }

    [LibraryImport(Libc, EntryPoint = "readlink", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    public static partial nint ReadLink(string path, byte* buffer, nuint size);

    [LibraryImport(Libc, EntryPoint = "geteuid")]
    public static partial uint GetEffectiveUserId();

    public static bool Exited(int status) => (status & 0x7f) == 0;
    public static bool Signaled(int status) => ((status & 0x7f) + 1) >> 1 > 0 && (status & 0x7f) != 0x7f && (status & 0x7f) != 0;
    public static bool Stopped(int status) => (status & 0xff) == 0x7f;
    public static int StopSignal(int status) => (status >> 8) & 0xff;
    public static int Event(int status) => (status >> 16) & 0xffff;
}
