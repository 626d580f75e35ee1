using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace SoftDirty;

/// <summary>
/// Where this mount namespace shows a process's cgroup of one hierarchy: cgroup v1's with a given controller, else cgroup v2's
/// (the unified hierarchy, as /proc/PID/cgroup names it, "0::PATH"). The hierarchy is found in /proc/self/mountinfo wherever
/// it is mounted (systemd's /sys/fs/cgroup, hybrid mode's /sys/fs/cgroup/unified, or a container's own place), and a mount
/// that shows a subtree only (a container's view: a bind mount of its own cgroup) has its root taken off the path.
/// </summary>
internal static class CgroupFolders
{
    /// <summary>
    /// The folders of <paramref name="pid"/>'s cgroup in the hierarchy with <paramref name="v1Controller"/> (or v2's, where no v1
    /// hierarchy has it), from the process's own up to the highest the mount shows, each with its cgroup path; and whether it
    /// is v2's. Null where the process has none here: it is gone, its cgroup is outside this cgroup namespace (a path that
    /// climbs with ".."), or no mount of this namespace shows it.
    /// </summary>
    public static (bool V2, List<(string Cgroup, string Folder)> Up)? Of(int pid, string v1Controller)
    {
        if (CgroupOf(pid, v1Controller) is not (string path, bool v2)) return null;
        if (Mount(v2, v1Controller, path) is not MountInfoLine mount) return null;
        var up = new List<(string, string)>();
        for (string relative = path; ; relative = Parent(relative))
        {
            up.Add((relative, Path.Join(mount.MountPoint, relative[(mount.Root == "/" ? 0 : mount.Root.Length)..])));
            if (relative == mount.Root || relative == "/") return (v2, up);
        }
    }

    /// <summary>The process's cgroup of the hierarchy with <paramref name="v1Controller"/>, or its v2 cgroup, as /proc/PID/cgroup names it.</summary>
    private static (string Path, bool V2)? CgroupOf(int pid, string v1Controller)
    {
        string[] lines;
        try { lines = File.ReadAllLines(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/cgroup")); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
        (string, bool)? unified = null;
        foreach (var line in lines)
        {
            var fields = line.Split(':', 3);
            if (fields.Length != 3 || !fields[2].StartsWith('/') || Array.IndexOf(fields[2].Split('/'), "..") >= 0) continue;
            if (Array.IndexOf(fields[1].Split(','), v1Controller) >= 0) return (fields[2], false);
            if (fields[0] == "0" && fields[1].Length == 0) unified = (fields[2], true);
        }
        return unified;
    }

    /// <summary>Of the mounts of the hierarchy whose root is <paramref name="path"/> or above it, the deepest; null where none is.</summary>
    private static MountInfoLine? Mount(bool v2, string v1Controller, string path)
    {
        const string MountInfo = "/proc/self/mountinfo";
        string[] lines;
        try { lines = File.ReadAllLines(MountInfo); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
        MountInfoLine? best = null;
        foreach (var line in lines)
            if (MountInfoLine.Parse(line) is { } m
                && (v2 ? m.Type == "cgroup2" : m.Type == "cgroup" && m.HasSuperOption(v1Controller))
                && (m.Root == "/" || path == m.Root || path.StartsWith(m.Root + "/", StringComparison.Ordinal))
                && (best is null || m.Root.Length > best.Root.Length))
                best = m;
        return best;
    }

    /// <summary>The cgroup above <paramref name="relative"/> ("/" above a top one).</summary>
    private static string Parent(string relative)
    {
        int slash = relative.TrimEnd('/').LastIndexOf('/');
        return slash <= 0 ? "/" : relative[..slash];
    }
}
