using System;
using System.Globalization;
using System.IO;

namespace SoftDirty;

/// <summary>
/// When a process started: field 22 of /proc/PID/stat, in clock ticks after boot, as the first time namespace counts it.
/// The kernel adds the boot-time offset of the reader's time namespace (unshare -T, a container CRIU restored): read as
/// it is, one process had two start times, and a command in such a namespace named the epoch records of the process and
/// checked its write-tracking state by another start time than the host (its records never met, and it deleted the
/// host's state as stale). The offset is taken off again; exact where it is a whole number of ticks (unshare's whole
/// seconds), else it may be one tick off.
/// </summary>
internal static class ProcessStart
{
    /// <summary>USER_HZ, the unit of the start time (100 on every architecture .NET runs on).</summary>
    private const long TicksPerSecond = 100;

    private const long NanosecondsPerTick = 1_000_000_000 / TicksPerSecond;

    private static long? _offset;

    /// <summary>The boot-time and monotonic offsets of this process's time namespace.</summary>
    private const string TimeOffsetsPath = "/proc/self/timens_offsets";

    /// <summary>The start time of <paramref name="pid"/> without this process's boot-time offset; null where unreadable (gone).</summary>
    public static ulong? Ticks(int pid)
    {
        var path = $"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat";
        try
        {
            var stat = File.ReadAllText(path);
            int close = stat.LastIndexOf(')');
            if (close < 0 || close + 2 > stat.Length) return null;
            var fields = stat[(close + 2)..].Split(' ');
            const int StartTimeAfterComm = 19; // field 22, counted from field 3 (state)
            if (fields.Length <= StartTimeAfterComm || !ulong.TryParse(fields[StartTimeAfterComm], NumberStyles.None, CultureInfo.InvariantCulture, out ulong seen)) return null;
            return unchecked((ulong)((long)seen - OffsetTicks()));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            ProcReadFailure.ThrowIfLimit(ex, path); // out of descriptors is no "gone": a clear went on without its epoch record
            return null;
        }
    }

    /// <summary>The boot-time offset of this process's time namespace in ticks, rounded down (/proc/self/timens_offsets; 0 where there is none).</summary>
    private static long OffsetTicks()
    {
        if (_offset is { } known) return known;
        long ticks = 0;
        try
        {
            foreach (var line in File.ReadLines(TimeOffsetsPath))
            {
                var f = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                if (f is ["boottime", var s, var n] && long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long sec)
                    && long.TryParse(n, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long nsec))
                    ticks = (long)Math.Floor((sec * 1_000_000_000m + nsec) / NanosecondsPerTick);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // None: no time namespaces (before Linux 5.6). Out of descriptors is no "none": in a time namespace every start time
            // was read off by its offset for the rest of the session (the offset kept), and the epoch records of this
            // PowerShell's clears went under other names than other commands' (round 29).
            ProcReadFailure.ThrowIfLimit(ex, TimeOffsetsPath);
        }
        _offset = ticks;
        return ticks;
    }

    /// <summary>
    /// Whether process <paramref name="pid"/> provably does not exist: /proc/PID is absent and /proc hides no process. One whose
    /// start time cannot be read is not gone: under hidepid=1 another user's process, or one of the user's own that is not
    /// dumpable for a moment (PR_SET_DUMPABLE 0), shows /proc/PID but refuses its stat, and the prunes that took such a
    /// process for gone deleted its write-tracking state (its tracking left in it for good, Disable-WriteTracking saying
    /// WriteTrackingNotEnabled) and its soft-dirty record and lock.
    /// </summary>
    public static bool Absent(int pid) =>
        SoftDirty.Images.FileNative.Lstat("/proc/" + pid.ToString(CultureInfo.InvariantCulture), out int errno) is null
        && errno == Errno.ENOENT && !ProcHidesProcesses();

    /// <summary>Whether the proc file system at /proc hides other users' processes (hidepid=1, 2, noaccess, invisible).</summary>
    internal static bool ProcHidesProcesses()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
                var fields = line.Split(' ');
                int dash = Array.IndexOf(fields, "-");
                if (fields.Length < 5 || fields[4] != "/proc" || dash < 0 || dash + 3 >= fields.Length || fields[dash + 1] != "proc") continue;
                foreach (var option in fields[dash + 3].Split(','))
                    if (option.StartsWith("hidepid=", StringComparison.Ordinal) && option is not ("hidepid=0" or "hidepid=off")) return true;
            }
            return false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return true; }
    }
}
