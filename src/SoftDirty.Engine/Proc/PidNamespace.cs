using System;
using System.Globalization;

namespace SoftDirty;

/// <summary>Pid namespaces, by the inode /proc/PID/ns/pid links to ("pid:[INODE]"): the same number from every namespace that sees it.</summary>
internal static class PidNamespace
{
    /// <summary>The inode of the first pid namespace (PROC_PID_INIT_INO): the host's.</summary>
    public const string Initial = "4026531836";

    /// <summary>The pid namespace of /proc/<paramref name="process"/> ("self" or a pid); null where unreadable (gone, no ptrace access).</summary>
    public static string? Of(string process)
    {
        // Read with readlink itself: .NET's LinkTarget said null for out of memory too, and a clear then went on without
        // its epoch record (the record's name needs the namespace), the chain trusting the bits it took (round 29).
        var target = ProcLink.Read($"/proc/{process}/ns/pid", out _);
        int open = target?.IndexOf('[', StringComparison.Ordinal) ?? -1;
        return open < 0 || !target!.EndsWith(']') ? null : target[(open + 1)..^1];
    }

    /// <summary>
    /// Throws ProcIOError where /proc belongs to another pid namespace than this process's (entered with unshare -p -f and no
    /// --mount-proc): /proc/self then names this process by another id than getpid() gives, and every /proc/PID and task id
    /// read there would reach another process, or none, through ptrace, kill and waitpid, which take this namespace's ids
    /// (round 35: Enable-WriteTracking said "opening /proc/18/pagemap: ESRCH", Save-MemoryImage -Freeze "kept starting threads
    /// through 64 passes"; an id that this namespace gives to another process would have been attached to instead).
    /// </summary>
    public static void EnsureProcIsOwn(int pid)
    {
        var self = ProcLink.Read("/proc/self", out _);
        if (self is null || !int.TryParse(self, NumberStyles.None, CultureInfo.InvariantCulture, out int seen) || seen == Environment.ProcessId) return;
        throw new EngineException(EngineError.ProcIOError,
            $"/proc here is another pid namespace's: it names this process {seen}, where its own id is {Environment.ProcessId} (a pid namespace entered without a /proc of its own, as unshare -p -f without --mount-proc makes). ptrace and signals take this namespace's ids, so they would reach other processes than /proc shows; nothing was read or changed. Mount a proc for this namespace (unshare --mount-proc, or mount -t proc proc /proc in a mount namespace of its own).", pid);
    }
}
