using System;

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
}
