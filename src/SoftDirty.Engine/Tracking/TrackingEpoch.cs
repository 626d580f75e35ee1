using System;
using System.Globalization;
using System.IO;
using System.Runtime.CompilerServices;
using System.Text;
using SoftDirty.Images;

namespace SoftDirty.Tracking;

/// <summary>
/// The tracking epoch of each process: every soft-dirty clear the module makes goes through
/// <see cref="PageSourceExtensions.ClearRefs"/>, which records a new epoch here. An incremental save trusts
/// soft-dirty only while the epoch its parent armed is still the current one; after any other clear by the
/// module (Clear-SoftDirty, Watch-DirtyPage, a migration, another chain) it compares page contents instead.
/// A real process is known by boot id, pid and start time (pids are reused), its epoch kept in a per-user
/// 0700 folder ($XDG_RUNTIME_DIR or /tmp, softdirty-epochs-UID) that every command and session sees; an
/// emulated process by its object, in memory. Clears the module cannot see (CRIU, another tool writing
/// clear_refs) are not recorded: Save-MemoryImage -Verify compares contents whatever the epoch says.
/// </summary>
internal static class TrackingEpoch
{
    private static readonly ConditionalWeakTable<object, string> EmulatedIds = new();
    private static readonly ConditionalWeakTable<object, StrongBox<string>> EmulatedEpochs = new();
    private const long MaxEpochFileBytes = 256;

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

    /// <summary>The per-user state folder (created 0700), or null where none is safe to use (exists as a link, another user's, or open to others).</summary>
    public static string? StateDirectory()
    {
        uint uid = FileNative.Geteuid();
        var runtime = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        string baseDir = !string.IsNullOrEmpty(runtime) && Path.IsPathRooted(runtime) && FileNative.Lstat(runtime, out _) is { Type: FileNative.S_IFDIR } r && r.Uid == uid
            ? runtime : Path.GetTempPath();
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
            var parts = Path.GetFileName(f).Split('-');
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
