using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace SoftDirty;

/// <summary>
/// The start times (<see cref="ProcessStart"/>, the host's ticks) of every process of the system, for telling that a process of
/// another pid namespace is gone: no process of the system started at its start time. Only a command of the first pid namespace
/// sees every process; null wherever this one may miss some (another pid namespace, /proc mounted with hidepid, a process whose
/// stat it may not read), and the caller then keeps what it cannot tell.
/// </summary>
internal static class SystemStartTimes
{
    /// <summary>The start times of all processes now; null where this command cannot see them all.</summary>
    public static HashSet<ulong>? Read()
    {
        if (PidNamespace.Of("self") != PidNamespace.Initial || ProcessStart.ProcHidesProcesses()) return null;
        var starts = new HashSet<ulong>();
        try
        {
            // A process alive for the whole listing is listed (the kernel walks /proc's pids in order from the last position).
            foreach (var dir in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
                if (ProcessStart.Ticks(pid) is { } ticks) starts.Add(ticks);
                else if (Directory.Exists(dir)) return null; // there, and its start time unreadable: cannot tell
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
        return starts;
    }

    /// <summary>
    /// Whether a start time of <paramref name="starts"/> is <paramref name="ticks"/> or a tick beside it (a command in a time
    /// namespace whose boot-time offset is not a whole number of ticks reads start times one tick off).
    /// </summary>
    public static bool Near(HashSet<ulong> starts, ulong ticks) =>
        starts.Contains(ticks) || starts.Contains(unchecked(ticks - 1)) || starts.Contains(unchecked(ticks + 1));
}
