using System;
using System.IO;

namespace SoftDirty;

/// <summary>Pid namespaces, by the inode /proc/PID/ns/pid links to ("pid:[INODE]"): the same number from every namespace that sees it.</summary>
internal static class PidNamespace
{
    /// <summary>The inode of the first pid namespace (PROC_PID_INIT_INO): the host's.</summary>
    public const string Initial = "4026531836";

    /// <summary>The pid namespace of /proc/<paramref name="process"/> ("self" or a pid); null where unreadable (gone, no ptrace access).</summary>
    public static string? Of(string process)
    {
        try
        {
            var target = new FileInfo($"/proc/{process}/ns/pid").LinkTarget;
            int open = target?.IndexOf('[', StringComparison.Ordinal) ?? -1;
            return open < 0 || !target!.EndsWith(']') ? null : target[(open + 1)..^1];
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }
}
