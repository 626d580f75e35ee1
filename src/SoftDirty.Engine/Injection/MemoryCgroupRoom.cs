using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace SoftDirty.Injection;

/// <summary>
/// Whether a process's memory cgroup has room for what enabling write tracking makes in it. The injected userfaultfd()
/// allocates the descriptor's inode and file (kernel memory charged to the process's cgroup), and its registration may split
/// VMAs; in a cgroup at its limit with nothing the kernel can reclaim, that charge invokes the cgroup's OOM killer, which
/// killed the process in the middle of the injection (round 33: "exited during syscall injection", the module's doing). Such
/// a process is refused before anything is injected. The cgroup and each one above it are looked at (cgroup v1's memory
/// hierarchy or cgroup v2, wherever this mount namespace mounts it, as far up as the mount shows): room is the limit less the
/// usage, plus the file pages reclaim may drop. With swap on the machine, reclaim may swap as well: nothing is refused then.
/// What cannot be read refuses nothing (a cgroup outside this cgroup namespace, or of a hierarchy not mounted here).
/// </summary>
internal static class MemoryCgroupRoom
{
    /// <summary>
    /// The room enabling needs: 64 pages, a margin over what it charges (an inode, a file and a context of the userfaultfd,
    /// VMAs split by its registrations, and a copy of the page the restore trampoline is written to: a few pages at most).
    /// </summary>
    public static ulong Needed => NeededPages * (ulong)Environment.SystemPageSize;

    private const ulong NeededPages = 64;

    /// <summary>ResourceLimit where <paramref name="pid"/>'s memory cgroup (or one above it) has less than <see cref="Needed"/> of room; else null.</summary>
    public static EngineException? Refusal(int pid)
    {
        foreach (var (relative, room, limit) in Limits(pid))
            if (room < Needed)
                return new EngineException(EngineError.ResourceLimit,
                    $"Process {pid}'s memory cgroup {relative} has {room} bytes of room below its limit of {limit} bytes, with nothing the kernel can reclaim: enabling write tracking allocates kernel memory in the process (its userfaultfd), and the cgroup's OOM killer would kill the process for it. Nothing was injected. Raise the cgroup's memory limit, or let the process free memory, and try again.",
                    pid);
        return null;
    }

    /// <summary>
    /// The least room below a limit of <paramref name="pid"/>'s memory cgroup and those above it (its file pages counted as
    /// room), and that cgroup; null where none has a limit, it cannot be read, or the machine has swap.
    /// </summary>
    public static (ulong Room, string Cgroup)? TightestRoom(int pid)
    {
        (ulong Room, string Cgroup)? least = null;
        foreach (var (relative, room, _) in Limits(pid))
            if (least is null || room < least.Value.Room) least = (room, relative);
        return least;
    }

    /// <summary>
    /// Each cgroup with a memory limit from <paramref name="pid"/>'s memory cgroup up (as far as this mount namespace's
    /// mount of the hierarchy shows, <see cref="CgroupFolders"/>), with its room and its limit; none where the machine has swap.
    /// </summary>
    private static IEnumerable<(string Cgroup, ulong Room, ulong Limit)> Limits(int pid)
    {
        if (SwapOn()) yield break;
        if (CgroupFolders.Of(pid, "memory") is not (bool v2, var up)) yield break;
        foreach (var (cgroup, folder) in up)
            if (Room(folder, v2) is (ulong room, ulong limit)) yield return (cgroup, room, limit);
    }

    /// <summary>The room below the limit of the cgroup at <paramref name="dir"/> (its file pages counted as room) and the limit; null where it has none.</summary>
    private static (ulong Room, ulong Limit)? Room(string dir, bool v2)
    {
        if (ReadNumber(Path.Combine(dir, v2 ? "memory.max" : "memory.limit_in_bytes")) is not ulong limit) return null;
        if (ReadNumber(Path.Combine(dir, v2 ? "memory.current" : "memory.usage_in_bytes")) is not ulong usage) return null;
        var stat = ReadStat(Path.Combine(dir, "memory.stat"));
        ulong file = v2 ? stat.GetValueOrDefault("file")
            : stat.GetValueOrDefault("total_inactive_file") + stat.GetValueOrDefault("total_active_file");
        ulong free = limit > usage ? limit - usage : 0;
        return (free > ulong.MaxValue - file ? ulong.MaxValue : free + file, limit);
    }

    /// <summary>A number that a cgroup file holds alone; null for "max", a file that is not there or cannot be read.</summary>
    private static ulong? ReadNumber(string file)
    {
        try { return ulong.TryParse(File.ReadAllText(file).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) ? n : null; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }

    private static Dictionary<string, ulong> ReadStat(string file)
    {
        var stat = new Dictionary<string, ulong>(StringComparer.Ordinal);
        try
        {
            foreach (var line in File.ReadAllLines(file))
            {
                int space = line.IndexOf(' ');
                if (space > 0 && ulong.TryParse(line.AsSpan(space + 1), NumberStyles.None, CultureInfo.InvariantCulture, out ulong n)) stat[line[..space]] = n;
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        return stat;
    }

    /// <summary>Whether the machine has swap (SwapTotal of /proc/meminfo above 0): reclaim may then swap a cgroup's anonymous memory out.</summary>
    private static bool SwapOn()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("SwapTotal:", StringComparison.Ordinal))
                    return line.AsSpan("SwapTotal:".Length).Trim().TrimEnd("kB").Trim() is var kib && !kib.SequenceEqual("0");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        return false;
    }
}
