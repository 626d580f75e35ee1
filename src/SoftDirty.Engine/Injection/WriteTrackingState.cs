using System;

namespace SoftDirty.Injection;

/// <summary>
/// Write tracking enabled in a real process: which userfaultfd descriptor in which process (pid and start
/// time, so a reused pid never matches), and which reset the pages it reports as written are counted from.
/// Kept as a JSON file per process in <see cref="WriteTrackingStore.Folder"/>, so that tracking outlives the
/// command that enabled it.
/// </summary>
public sealed class WriteTrackingState
{
    public int ProcessId { get; set; }
    /// <summary>The process's start time in clock ticks since boot (field 22 of /proc/PID/stat).</summary>
    public ulong StartTime { get; set; }
    /// <summary>The userfaultfd's descriptor number in the target.</summary>
    public int Descriptor { get; set; }
    /// <summary>The userfaultfd's inode ("ino:" of /proc/PID/fdinfo/FD), so that another userfaultfd under the same number is not taken for it.</summary>
    public ulong Inode { get; set; }
    public DateTime Enabled { get; set; }
    /// <summary>Changes at every reset (a collection that re-arms): an image chain continues only from the reset it recorded.</summary>
    public Guid ResetId { get; set; }
    /// <summary>The last reset, UTC.</summary>
    public DateTime LastReset { get; set; }
}
