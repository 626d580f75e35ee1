using System;
using System.Collections.Generic;
using System.Text.Json.Serialization;

namespace SoftDirty.Injection;

/// <summary>
/// Write tracking enabled in a real process: which userfaultfd descriptor in which process (pid and start
/// time, so a reused pid never matches), and which reset the pages it reports as written are counted from.
/// Kept as a JSON file per process in <see cref="WriteTrackingStore.Folder"/>, so that tracking outlives the
/// command that enabled it.
/// </summary>
public sealed class WriteTrackingState
{
    /// <summary>The process tracked.</summary>
    public int ProcessId { get; init; }
    /// <summary>The process's start time in clock ticks since boot (field 22 of /proc/PID/stat).</summary>
    public ulong StartTime { get; init; }
    /// <summary>The userfaultfd's descriptor number in the target.</summary>
    public int Descriptor { get; init; }
    /// <summary>The userfaultfd's inode ("ino:" of /proc/PID/fdinfo/FD), so that another userfaultfd under the same number is not taken for it.</summary>
    public ulong Inode { get; init; }
    /// <summary>When tracking was enabled, UTC.</summary>
    public DateTime Enabled { get; init; }
    /// <summary>Changes at every reset (a collection that re-arms): an image chain continues only from the reset it recorded.</summary>
    [JsonInclude]
    public Guid ResetId { get; internal set; }
    /// <summary>The last reset, UTC.</summary>
    [JsonInclude]
    public DateTime LastReset { get; internal set; }
    /// <summary>
    /// Kept enabled between commands (Enable-WriteTracking, or a WriteProtect image chain asked for it): a command
    /// that enabled the tracking for itself alone (Watch-DirtyPage, a migration) then leaves it enabled when it ends.
    /// </summary>
    [JsonInclude]
    public bool Kept { get; internal set; }
    /// <summary>
    /// The commands using the tracking while it is not kept: a command that enabled it for itself no longer disables it
    /// under another command still using it (which then stopped with WriteTrackingNotEnabled); the last one to end does.
    /// </summary>
    [JsonInclude]
    internal List<WriteTrackingUser> Users { get; set; } = new();
    /// <summary>
    /// Enabled by a command for itself, so counted by <see cref="Users"/>: with none left (and not kept) it is disabled. A
    /// tracking enabled otherwise (the engine's own callers, a state of an earlier version) is left as it is.
    /// </summary>
    [JsonInclude]
    internal bool Counted { get; set; }
    /// <summary>
    /// The write-protect registrations of the tracked spans ("uw" in smaps: <see cref="RemoteWriteProtect.RegistrationDigest"/>)
    /// as the enabling or the last check found them, each this tracking's: a look that finds others checks each span again
    /// (a userfaultfd of the process's own that /proc/PID/fd does not show). Null: not known (a state of an earlier version,
    /// or another userfaultfd's registration was found), so the next look checks.
    /// </summary>
    [JsonInclude]
    internal string? OwnRegistrations { get; set; }
}
