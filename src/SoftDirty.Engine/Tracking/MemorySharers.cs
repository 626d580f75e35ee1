using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;

namespace SoftDirty.Tracking;

/// <summary>
/// The other processes that share a process's memory: clone(CLONE_VM) without CLONE_THREAD (or vfork's child) makes a
/// process of its own pid whose threads write the same address space (mm), and that stopping the process's own threads
/// leaves running. Found by kcmp(KCMP_VM) against every process in /proc, which the kernel answers only where the caller
/// may read both (PTRACE_MODE_READ): a process of another user that shares the memory is not found, nor any where the
/// kernel lacks kcmp (CONFIG_KCMP, part of CONFIG_CHECKPOINT_RESTORE).
/// </summary>
internal static class MemorySharers
{
    /// <summary>
    /// The process ids (thread group leaders) other than <paramref name="pid"/> and this process that share <paramref name="pid"/>'s
    /// memory; empty where none is found. ResourceLimit where this process is out of descriptors or memory while it looks: a
    /// sharer whose statm could not be opened was taken for one without memory (round 28), so a clear recorded no epoch for
    /// it (its chain then trusted the bits the clear took) and -Freeze left it writing into a "frozen" image.
    /// </summary>
    public static List<int> Find(int pid)
    {
        var found = new List<int>();
        // kcmp compares the tasks' mm pointers, and every task without one (a zombie, a thread group leader that called
        // pthread_exit, a kernel thread) has the same one, null: such a target shares nothing that can be found this way,
        // and such a candidate writes nothing.
        if (Native.KcmpSyscall < 0 || !HasMemory(pid)) return found;
        IEnumerable<string> entries;
        try { entries = Directory.EnumerateDirectories("/proc"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            ProcReadFailure.ThrowIfLimit(ex, "/proc");
            return found;
        }
        try
        {
            foreach (var dir in entries)
            {
                if (!int.TryParse(Path.GetFileName(dir.AsSpan()), NumberStyles.None, CultureInfo.InvariantCulture, out int other)) continue;
                if (other == pid || other == Environment.ProcessId) continue;
                int same = Same(pid, other);
                if (same == 0 && HasMemory(other)) found.Add(other);
                else if (same == Errno.ENOSYS) return found; // no kcmp in this kernel: nothing can be found
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, "/proc"); } // /proc changed under the walk
        return found;
    }

    /// <summary>Whether <paramref name="other"/> (a process or thread id) shares <paramref name="pid"/>'s memory now.</summary>
    public static bool Shares(int pid, int other) => Same(pid, other) == 0;

    /// <summary>Whether the task <paramref name="pid"/> has an address space now: /proc/PID/statm reads all zeros for one without (proc_pid_statm).</summary>
    private static bool HasMemory(int pid)
    {
        try
        {
            var statm = File.ReadAllText(StatmOf(pid));
            int space = statm.IndexOf(' ', StringComparison.Ordinal);
            return space > 0 && statm.AsSpan(0, space).Trim() is var size && !(size.Length == 1 && size[0] == '0');
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            ProcReadFailure.ThrowIfLimit(ex, StatmOf(pid));
            return false;
        }
    }

    private static string StatmOf(int pid) => $"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/statm";

    /// <summary>0 where the two share one mm; otherwise the errno of kcmp, or -1 where they differ.</summary>
    private static int Same(int pid, int other)
    {
        nint r = Native.Syscall(Native.KcmpSyscall, pid, other, Native.KCMP_VM);
        if (r == 0) return 0;
        return r < 0 ? Marshal.GetLastPInvokeError() : -1;
    }
}
