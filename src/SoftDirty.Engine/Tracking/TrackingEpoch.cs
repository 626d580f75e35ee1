using System;
using System.Globalization;
using System.IO;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using SoftDirty.Images;
using SoftDirty.Injection;

namespace SoftDirty.Tracking;

/// <summary>
/// The tracking epoch of each process: every soft-dirty clear the module makes goes through
/// <see cref="PageSourceExtensions.ClearRefs"/>, which records a new epoch here. An incremental save trusts
/// soft-dirty only while the epoch its parent armed is still the current one; after any other clear by the
/// module (Clear-SoftDirty, Watch-DirtyPage, a migration, another chain) it compares page contents instead.
/// A real process is known by boot id, pid and start time (pids are reused), its epoch kept in a per-user
/// 0700 folder (/run/user/UID or /tmp, softdirty-epochs-UID, regardless of the environment) that every command and session sees; an
/// emulated process by its object, in memory. Clears the module cannot see (CRIU, another tool writing
/// clear_refs) are not recorded: Save-MemoryImage -Verify compares contents whatever the epoch says.
/// A command reads soft-dirty, checks the epoch, records a new one and clears under the process's <see cref="Lock"/>,
/// so two commands never interleave their records and clears.
/// </summary>
internal static class TrackingEpoch
{
    private static readonly ConditionalWeakTable<object, string> EmulatedIds = new();
    private static readonly ConditionalWeakTable<object, StrongBox<string>> EmulatedEpochs = new();
    private static readonly ConditionalWeakTable<object, object> EmulatedGates = new();
    private const long MaxEpochFileBytes = 256;
    private const string LockSuffix = ".lock";

    /// <summary>The step <see cref="Lock"/> marks (<see cref="InjectionSteps"/>) when another command holds the lock and it waits.</summary>
    public const string LockWaitStep = "SoftDirtyLockWait";

    /// <summary>The step a soft-dirty clear marks between recording its epoch and clearing (tests stop or interleave there).</summary>
    public const string RecordedStep = "SoftDirtyEpochRecorded";

    /// <summary>How long one wait for an emulated process's lock lasts before Ctrl+C is checked again.</summary>
    private static readonly TimeSpan EmulatedLockRetry = TimeSpan.FromMilliseconds(5);

    /// <summary>The identities of the real processes whose lock this thread holds, with how many times (re-entry).</summary>
    [ThreadStatic] private static System.Collections.Generic.Dictionary<string, int>? _held;

    /// <summary>The object whose tracking state a source shares (wrappers unwrapped).</summary>
    private static object Root(IPageSource source)
    {
        object o = source;
        for (int i = 0; i < 16 && o is IPageSourceWrapper w; i++) o = w.Inner;
        return o;
    }

    /// <summary>Who the process is, beyond its pid: "boot/pid/starttime" for a real one (a /proc source), "emulated:GUID" for any other (an emulated process, a test double); null where unknown (exited).</summary>
    public static string? Identity(IPageSource source)
    {
        if (Root(source) is not ProcPageSource) return EmulatedIds.GetValue(Root(source), _ => "emulated:" + Guid.NewGuid().ToString("N"));
        var start = StartTime(source.ProcessId);
        var boot = BootId();
        return start is null || boot is null ? null : $"{boot}/{source.ProcessId}/{start}";
    }

    /// <summary>Records a new epoch for a soft-dirty clear of <paramref name="source"/> about to be made; returns it (null where it cannot be kept).</summary>
    public static string? Record(IPageSource source)
    {
        var epoch = Guid.NewGuid().ToString("N");
        if (Root(source) is not ProcPageSource)
        {
            EmulatedEpochs.AddOrUpdate(Root(source), new StrongBox<string>(epoch));
            return epoch;
        }
        var id = Identity(source);
        var dir = StateDirectory();
        if (id is null || dir is null) return null;
        var file = Path.Combine(dir, FileName(id));
        var tmp = Path.Combine(dir, "." + Guid.NewGuid().ToString("N"));
        try
        {
            using (var fs = SafeFiles.CreateNew(tmp)) fs.Write(Encoding.ASCII.GetBytes(epoch));
            if (FileNative.Rename(tmp, file) != 0) { File.Delete(tmp); return null; }
            Prune(dir);
            return epoch;
        }
        catch (Exception ex) when (ex is EngineException or IOException or UnauthorizedAccessException)
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            return null;
        }
    }

    /// <summary>
    /// The epoch of the last soft-dirty clear the module made of this process: "" where it made none, null
    /// where it cannot tell (no usable state folder, the process gone).
    /// </summary>
    public static string? Current(IPageSource source)
    {
        if (Root(source) is not ProcPageSource)
            return EmulatedEpochs.TryGetValue(Root(source), out var box) ? box.Value : "";
        var id = Identity(source);
        var dir = StateDirectory();
        if (id is null || dir is null) return null;
        try { return Encoding.ASCII.GetString(SafeFiles.ReadRegular(Path.Combine(dir, FileName(id)), MaxEpochFileBytes)); }
        catch (FileNotFoundException) { return ""; }
        catch (Exception ex) when (ex is EngineException or IOException or UnauthorizedAccessException) { return null; }
    }

    private static string FileName(string identity) => identity.Replace('/', '-');

    /// <summary>
    /// Takes the soft-dirty lock of the process behind <paramref name="source"/>, to hold from reading soft-dirty (and
    /// checking the epoch) to recording a new epoch and clearing. Without it two commands could interleave (A records,
    /// B records, B clears, A clears): B's next read would trust its epoch though A's clear emptied its window, and
    /// the writes between the two clears would be missing from B's chain, watch or migration for good. A real process's
    /// lock is a flock of IDENTITY.lock in the epoch folder (between commands and sessions of this user); an emulated
    /// one's a monitor of its object. Re-entrant on one thread; Ctrl+C ends a wait. Null where no state folder can be
    /// used (no epoch is kept then either: increments compare contents).
    /// </summary>
    public static IDisposable? Lock(IPageSource source, CancellationToken cancel)
    {
        var root = Root(source);
        if (root is not ProcPageSource)
        {
            var gate = EmulatedGates.GetValue(root, _ => new object());
            if (!Monitor.TryEnter(gate))
            {
                InjectionSteps.Mark(LockWaitStep);
                while (!Monitor.TryEnter(gate, EmulatedLockRetry)) cancel.ThrowIfCancellationRequested();
            }
            return new Held(() => Monitor.Exit(gate));
        }
        var id = Identity(source);
        var dir = id is null ? null : StateDirectory();
        if (id is null || dir is null) return null;
        var held = _held ??= new(StringComparer.Ordinal);
        if (held.TryGetValue(id, out int count))
        {
            held[id] = count + 1;
            return new Held(() => Release(id, null));
        }
        var handle = LockFile.Take(() => SafeDirectory.Open(dir, "The soft-dirty epoch folder", dir, create: false)
                ?? throw new EngineException(EngineError.ProcIOError, $"The soft-dirty epoch folder {dir} was removed.", source.ProcessId),
            FileName(id) + LockSuffix, "soft-dirty lock", source.ProcessId, cancel, () => InjectionSteps.Mark(LockWaitStep));
        held[id] = 1;
        return new Held(() => Release(id, handle));
    }

    private static void Release(string id, Microsoft.Win32.SafeHandles.SafeFileHandle? handle)
    {
        var held = _held!;
        if (held[id] > 1) { held[id]--; return; }
        held.Remove(id);
        handle?.Dispose();
    }

    /// <summary>A held lock, released once on dispose.</summary>
    private sealed class Held(Action release) : IDisposable
    {
        private Action? _release = release;

        public void Dispose()
        {
            var r = _release;
            _release = null;
            r?.Invoke();
        }
    }

    /// <summary>The folder above the state folder where the user's runtime folder is missing (not $TMPDIR either: see <see cref="StateDirectory"/>).</summary>
    private const string SharedTempFolder = "/tmp";

    /// <summary>
    /// The per-user state folder (created 0700), or null where none is safe to use (exists as a link, another user's, or open to others).
    /// Chosen from the uid alone, never from the environment: /run/user/UID where it is the user's, else /tmp. Every command of
    /// the user must see the same epochs and locks; with $XDG_RUNTIME_DIR (or $TMPDIR) a session that has it (a login) and one
    /// that has not or has another (cron, sudo, a service) kept two folders, and a chain trusted soft-dirty that the other cleared.
    /// </summary>
    public static string? StateDirectory()
    {
        uint uid = FileNative.Geteuid();
        var runtime = "/run/user/" + uid.ToString(CultureInfo.InvariantCulture);
        string baseDir = FileNative.Lstat(runtime, out _) is { Type: FileNative.S_IFDIR } r && r.Uid == uid ? runtime : SharedTempFolder;
        var dir = Path.Combine(baseDir, $"softdirty-epochs-{uid}");
        if (FileNative.Lstat(dir, out _) is null && FileNative.Mkdir(dir, (uint)ImageFormat.DirectoryMode) != 0 && FileNative.Lstat(dir, out _) is null) return null;
        var st = FileNative.Lstat(dir, out _);
        const uint GroupOrOther = 0x3F; // 077
        return st is { Type: FileNative.S_IFDIR } s && s.Uid == uid && (s.Permissions & GroupOrOther) == 0 ? dir : null;
    }

    /// <summary>Removes the records of processes that are gone (another boot, or the pid's start time differs).</summary>
    private static void Prune(string dir)
    {
        var boot = BootId();
        foreach (var f in Directory.EnumerateFiles(dir))
        {
            var name = Path.GetFileName(f);
            if (name.EndsWith(LockSuffix, StringComparison.Ordinal)) name = name[..^LockSuffix.Length];
            var parts = name.Split('-');
            if (parts.Length != 3) continue;
            bool live = parts[0] == boot && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && StartTime(pid) == parts[2];
            if (!live) { try { File.Delete(f); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
        }
    }

    private static string? _bootId;

    private static string? BootId()
    {
        if (_bootId is not null) return _bootId;
        try { return _bootId = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim().Replace("-", ""); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>Field 22 of /proc/PID/stat: the start time in clock ticks after boot (with the pid, unique for this boot).</summary>
    public static string? StartTime(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
            int close = stat.LastIndexOf(')');
            if (close < 0) return null;
            var fields = stat[(close + 2)..].Split(' ');
            const int StartTimeAfterComm = 19; // field 22, counted from field 3 (state)
            return fields.Length > StartTimeAfterComm ? fields[StartTimeAfterComm] : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return null; }
    }
}
