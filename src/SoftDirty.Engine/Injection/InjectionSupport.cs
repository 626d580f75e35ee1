using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace SoftDirty.Injection;

/// <summary>
/// Whether this process may inject syscalls into another one, read before anything is touched: the
/// kernel's features, TracerPid, seccomp mode, user ids, Yama's ptrace_scope and CAP_SYS_PTRACE. The kernel
/// has the last word (PTRACE_SEIZE, the injected userfaultfd); this gives the reason in words first.
/// </summary>
internal static class InjectionSupport
{
    /// <summary>CAP_SYS_PTRACE (include/uapi/linux/capability.h).</summary>
    public const int CapSysPtrace = 19, CapSysAdmin = 21;
    /// <summary>The file Yama's ptrace restriction is read from.</summary>
    public const string YamaScopePath = "/proc/sys/kernel/yama/ptrace_scope";

    /// <summary>Yama's ptrace_scope values (Documentation/admin-guide/LSM/Yama.rst).</summary>
    [Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
    public enum YamaScope { Classic = 0, Restricted = 1, AdminOnly = 2, NoAttach = 3 }

    /// <summary>Null when process <paramref name="pid"/> can be tracked by injection; else the error and why not.</summary>
    public static EngineException? Check(int pid, KernelFeatures features) => CheckOnce(pid, features, ExecRechecks);

    /// <summary>How often <see cref="Check"/> looks again at a process an exec under way showed with a zombie leader (one exec'ing again and again).</summary>
    private const int ExecRechecks = 10;

    /// <summary>
    /// Whether process <paramref name="pid"/> runs a 32-bit program (an i386 one on x86-64, the kernel's compat mode): another
    /// register set and syscall table than injection speaks. /proc/PID/auxv is the auxiliary vector as the program's ELF loader
    /// wrote it, (type, value) pairs of the program's word size, ending with AT_NULL. Read as 64-bit pairs, a 32-bit vector puts
    /// a value (an address: AT_SYSINFO, AT_PHDR, AT_ENTRY) in the upper half of a type word, where a 64-bit one only has small
    /// AT_* numbers. Null where the file cannot be read (it needs what pagemap needs): nothing is said then.
    /// </summary>
    internal static bool? RunsCompatProgram(int pid)
    {
        byte[] auxv;
        try { auxv = File.ReadAllBytes(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/auxv")); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        const int Pair = 2 * sizeof(ulong);
        if (auxv.Length < Pair) return null;
        for (int i = 0; i + Pair <= auxv.Length; i += Pair)
        {
            ulong type = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(auxv.AsSpan(i));
            if (type > uint.MaxValue) return true;
            if (type == 0) break; // AT_NULL of a 64-bit vector
        }
        return false;
    }

    private static EngineException? CheckOnce(int pid, KernelFeatures features, int rechecks)
    {
        if (InjectionArchitecture.Current is null)
            return new EngineException(EngineError.WriteProtectNotSupported, "Syscall injection is implemented for x86-64 only.", pid);
        if (!features.PagemapScan)
            return new EngineException(EngineError.WriteProtectNotSupported, features.PagemapScanReason ?? "PAGEMAP_SCAN is missing (Linux 6.7+).", pid);
        if (!features.UffdWriteProtectAsync)
            return new EngineException(EngineError.WriteProtectNotSupported, "userfaultfd async write-protect (UFFD_FEATURE_WP_ASYNC, Linux 6.7+) is missing: " + (features.UffdWriteProtectAsyncReason ?? "not offered."), pid);
        if (pid == Environment.ProcessId)
            return new EngineException(EngineError.InvalidArgument, "A process cannot inject syscalls into itself; WriteProtect tracks this process with its own userfaultfd.", pid);
        var status = ReadStatus(pid);
        if (status is null)
            return ProcPageSource.Unopened(pid, ProcPageSource.ProbeOpen(pid), $"No process with id {pid} (no /proc/{pid}/status).");
        if (status.TryGetValue("State", out var state) && (state.StartsWith('Z') || state.StartsWith('X')))
            // An exec from another thread shows a zombie leader while it runs (round 22): looked at again once it ended.
            return ProcPageSource.LiveThreads(pid) > 0 && ExecWait.LeaderReplaced(pid)
                ? rechecks > 0 ? CheckOnce(pid, features, rechecks - 1)
                // Found in an exec each look (one exec'ing again and again): what it runs changes under this command.
                : new EngineException(EngineError.ProcessExecuted, $"Process {pid} exec'd another program at each of {ExecRechecks + 1} looks before write tracking could be set up in it; nothing was changed. Run the command again.", pid, Errno.ESRCH)
                : ProcPageSource.LiveThreads(pid) > 0
                ? new EngineException(EngineError.WriteProtectNotSupported,
                    $"Process {pid} runs on, but its main thread has exited (pthread_exit): the kernel no longer shows the process's mappings through /proc/{pid} (maps, smaps and pagemap read as empty), so its writes cannot be tracked. It was left as it was.", pid)
                : new EngineException(EngineError.ProcessExited, $"Process {pid} has exited (state {state}).", pid);
        if (RunsCompatProgram(pid) == true)
            // The injection itself refuses such a process too, by its register set: this says so before anything is tried (Auto picks Hash).
            return new EngineException(EngineError.WriteProtectNotSupported,
                $"Process {pid} runs a 32-bit program: injection speaks only {InjectionArchitecture.Current.Name}'s registers and syscalls. It was left as it was; -Method Hash tracks it.", pid);
        if (status.TryGetValue("TracerPid", out var tracer) && int.TryParse(tracer, out int tracerPid) && tracerPid != 0
            && !SoftDirty.Tracking.PtraceFreeze.HoldsHere(pid)) // frozen by this thread (-Freeze): injection uses that stop
            return new EngineException(EngineError.ProcessAlreadyTraced,
                $"Process {pid} is already traced by {Tracer(tracerPid)}, or use -Method Hash: a process has one tracer at a time.", pid);
        if (status.TryGetValue("Seccomp", out var seccomp) && seccomp == "1")
            return new EngineException(EngineError.SeccompForbids, $"Process {pid} runs in seccomp strict mode, which kills it on any syscall but read, write, exit and sigreturn.", pid);
        // A filter may answer a call it does not allow by killing the process: injection runs every call through
        // the filters first (SeccompFilter), which the kernel gives only to a tracer with CAP_SYS_ADMIN.
        if (status.TryGetValue("Seccomp", out var filtered) && filtered == "2" && !HasCapability(CapSysAdmin))
            return new EngineException(EngineError.SeccompForbids,
                $"Process {pid} has a seccomp filter, which may answer a syscall it does not allow by killing the process; reading the filter to be sure needs CAP_SYS_ADMIN, which this process lacks. It was left as it was.", pid);
        bool capable = HasCapability(CapSysPtrace);
        uint me = Ptrace.GetEffectiveUserId();
        if (!capable && status.TryGetValue("Uid", out var uids))
            foreach (var u in uids.Split('\t', StringSplitOptions.RemoveEmptyEntries))
                if (uint.TryParse(u, out uint id) && id != me)
                    return new EngineException(EngineError.PtraceNotPermitted,
                        $"Process {pid} belongs to another user (uid {id}); ptrace needs the same user or CAP_SYS_PTRACE, which this process (uid {me}) lacks.", pid, Errno.EPERM);
        var scope = ReadYamaScope();
        switch (scope)
        {
            case YamaScope.NoAttach:
                return new EngineException(EngineError.PtraceNotPermitted, $"Yama ptrace_scope is 3 ({YamaScopePath}): no process may ptrace another until reboot.", pid, Errno.EPERM);
            case YamaScope.AdminOnly when !capable:
                return new EngineException(EngineError.PtraceNotPermitted, $"Yama ptrace_scope is 2 ({YamaScopePath}): only a process with CAP_SYS_PTRACE may ptrace, and this one lacks it.", pid, Errno.EPERM);
            case YamaScope.Restricted when !capable && !IsDescendant(pid):
                return new EngineException(EngineError.PtraceNotPermitted,
                    $"Yama ptrace_scope is 1 ({YamaScopePath}): without CAP_SYS_PTRACE a process may ptrace only its descendants (or a process that named it with PR_SET_PTRACER), and process {pid} is not a descendant of this one ({Environment.ProcessId}).", pid, Errno.EPERM);
        }
        return null;
    }

    /// <summary>
    /// Null when no memory of <paramref name="source"/>'s process is registered for userfaultfd write-protect; else
    /// WriteTrackingInUse. Asked where this command finds no state of its own for the process: a registration it cannot
    /// see is another tracking (another user's or another state folder's Enable-WriteTracking, or the process's own
    /// userfaultfd), whose resets and this one's would each silently hide writes from the other.
    /// </summary>
    public static EngineException? ForeignTracking(ProcPageSource source)
    {
        int pid = source.ProcessId;
        int registered = 0;
        IReadOnlyList<MemoryMapping> mappings;
        try { mappings = source.ReadMappings(true); }
        catch (EngineException unreadable) { return unreadable; } // its smaps cannot be read: nor could it be tracked
        foreach (var m in mappings)
            if (m.VmFlags.Contains(RemoteWriteProtect.UffdWriteProtectFlag)) registered++;
        if (registered == 0) return null;
        return new EngineException(EngineError.WriteTrackingInUse,
            $"{registered} mapping(s) of process {pid} are already registered for userfaultfd write-protect by a tracking this command has no state of (Enable-WriteTracking by another user or with another state folder, ${WriteTrackingStore.FolderVariable} = {WriteTrackingStore.Folder}; or the process's own userfaultfd): each tracking's resets would hide writes from the other, so it is not enabled a second time. Use that tracking's user and state folder, Disable-WriteTracking there, or -Method Hash.", pid);
    }

    /// <summary>The seccomp mode of <paramref name="pid"/> (0 none, 1 strict, 2 filter), -1 when unreadable.</summary>
    public static int SeccompMode(int pid) =>
        ReadStatus(pid) is { } s && s.TryGetValue("Seccomp", out var v) && int.TryParse(v, out int m) ? m : -1;

    public static YamaScope? ReadYamaScope()
    {
        try { return int.TryParse(File.ReadAllText(YamaScopePath).Trim(), out int v) ? (YamaScope)v : null; }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Whether this process's effective capabilities (CapEff in /proc/self/status) hold <paramref name="capability"/>.</summary>
    public static bool HasCapability(int capability) =>
        ReadStatus(Environment.ProcessId) is { } s && s.TryGetValue("CapEff", out var hex)
        && ulong.TryParse(hex, System.Globalization.NumberStyles.HexNumber, null, out ulong caps) && (caps & (1UL << capability)) != 0;

    private static bool IsDescendant(int pid)
    {
        int me = Environment.ProcessId;
        for (int p = pid, guard = 0; p > 1 && guard < 4096; guard++)
        {
            if (p == me) return true;
            var s = ReadStatus(p);
            if (s is null || !s.TryGetValue("PPid", out var pp) || !int.TryParse(pp, out p)) return false;
        }
        return false;
    }

    /// <summary>
    /// Who traces a process (TracerPid, a thread id), and what to do, for ProcessAlreadyTraced. A thread of this
    /// PowerShell is no debugger to detach: another runspace's command (a thread job, ForEach-Object -Parallel) holds the
    /// process, frozen or injecting.
    /// </summary>
    internal static string Tracer(int tracerTid) =>
        Directory.Exists(string.Create(CultureInfo.InvariantCulture, $"/proc/self/task/{tracerTid}"))
            ? string.Create(CultureInfo.InvariantCulture, $"another command of this PowerShell (its thread {tracerTid}, in another runspace: a thread job or ForEach-Object -Parallel); run them one after another")
            : Directory.Exists(string.Create(CultureInfo.InvariantCulture, $"/proc/{tracerTid}"))
                ? string.Create(CultureInfo.InvariantCulture, $"process {tracerTid} ({Comm(tracerTid)}); detach that debugger")
                : string.Create(CultureInfo.InvariantCulture, $"thread {tracerTid}, which has let go since; run the command again");

    private static string Comm(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/comm").TrimEnd('\n'); }
        catch (IOException) { return "?"; }
        catch (UnauthorizedAccessException) { return "?"; }
    }

    /// <summary>Whether the process is gone or a zombie (state Z or X, as /proc/PID/status says).</summary>
    public static bool HasExited(int pid) =>
        ReadStatus(pid) is not { } status
        || (status.TryGetValue("State", out var state) && (state.StartsWith('Z') || state.StartsWith('X')));

    /// <summary>The thread that traces <paramref name="tid"/> (its TracerPid), or null where none does or the thread is gone.</summary>
    internal static int? TracerOf(int tid) =>
        ReadStatus(tid) is { } status && status.TryGetValue("TracerPid", out var seen)
        && int.TryParse(seen, NumberStyles.None, CultureInfo.InvariantCulture, out int by) && by != 0 ? by : null;

    /// <summary>
    /// /proc/PID/status as name → value (the value trimmed); null when the process is gone. ResourceLimit where this process is
    /// out of descriptors or memory: read as "gone", a process that hid its descriptors had its write-tracking state deleted
    /// while the tracking lived on (round 29).
    /// </summary>
    internal static Dictionary<string, string>? ReadStatus(int pid)
    {
        string text;
        var path = $"/proc/{pid}/status";
        try { text = File.ReadAllText(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            ProcReadFailure.ThrowIfLimit(ex, path);
            return null;
        }
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            int colon = line.IndexOf(':');
            if (colon > 0) d[line[..colon]] = line[(colon + 1)..].Trim();
        }
        return d;
    }
}
