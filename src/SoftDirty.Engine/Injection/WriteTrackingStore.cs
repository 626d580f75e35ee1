using System;
using System.IO;
using System.Text;
using System.Text.Json;

namespace SoftDirty.Injection;

/// <summary>
/// Where <see cref="WriteTrackingState"/> lives between commands: one file per process in a per-user folder
/// with mode 0700 ($SOFTDIRTY_STATE_DIR, else $XDG_STATE_HOME/SoftDirty/write-tracking, else
/// ~/.local/state/SoftDirty/write-tracking). A file is trusted only while the process has the same start
/// time and its descriptor still is a userfaultfd; a stale one is deleted when found.
/// </summary>
public static class WriteTrackingStore
{
    /// <summary>The environment variable that moves the state folder (tests use a folder of their own).</summary>
    public const string FolderVariable = "SOFTDIRTY_STATE_DIR";

    public static string Folder
    {
        get
        {
            var overridden = Environment.GetEnvironmentVariable(FolderVariable);
            if (!string.IsNullOrEmpty(overridden)) return overridden;
            var state = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
            if (string.IsNullOrEmpty(state)) state = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state");
            return Path.Combine(state, "SoftDirty", "write-tracking");
        }
    }

    private static string FileOf(int pid) => Path.Combine(Folder, $"{pid}.json");

    /// <summary>The state of <paramref name="pid"/>, or null when tracking is not enabled there (a stale file is removed).</summary>
    public static WriteTrackingState? Load(int pid)
    {
        var path = FileOf(pid);
        WriteTrackingState? state;
        try { state = JsonSerializer.Deserialize<WriteTrackingState>(File.ReadAllText(path)); }
        catch (FileNotFoundException) { return null; }
        catch (DirectoryNotFoundException) { return null; }
        catch (JsonException) { state = null; }
        if (state is not null && state.ProcessId == pid && StartTime(pid) == state.StartTime && IsUserfaultfd(pid, state.Descriptor)) return state;
        Delete(pid);
        return null;
    }

    public static void Save(WriteTrackingState state)
    {
        var folder = Folder;
        if (!Directory.Exists(folder))
        {
            if (OperatingSystem.IsWindows()) Directory.CreateDirectory(folder);
            else Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        var path = FileOf(state.ProcessId);
        var temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(state));
        File.Move(temp, path, overwrite: true);
    }

    public static void Delete(int pid)
    {
        try { File.Delete(FileOf(pid)); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Field 22 of /proc/PID/stat (start time in clock ticks after boot); 0 when the process is gone.</summary>
    public static ulong StartTime(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            int close = stat.LastIndexOf(')');
            var fields = stat[(close + 2)..].Split(' ');
            return fields.Length > 19 && ulong.TryParse(fields[19], out ulong t) ? t : 0; // field 3 is fields[0]
        }
        catch (IOException) { return 0; }
        catch (UnauthorizedAccessException) { return 0; }
    }

    /// <summary>Whether descriptor <paramref name="fd"/> of <paramref name="pid"/> is a userfaultfd.</summary>
    public static unsafe bool IsUserfaultfd(int pid, int fd)
    {
        var buffer = stackalloc byte[128];
        nint n = Ptrace.ReadLink($"/proc/{pid}/fd/{fd}", buffer, 128);
        return n > 0 && Encoding.UTF8.GetString(buffer, (int)n) == UffdAbi.FdLink;
    }

    /// <summary>The userfaultfd descriptors of <paramref name="pid"/> (from /proc/PID/fd), for diagnostics and tests.</summary>
    public static int[] UserfaultfdDescriptors(int pid)
    {
        var found = new System.Collections.Generic.List<int>();
        try
        {
            foreach (var f in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
                if (int.TryParse(Path.GetFileName(f), out int fd) && IsUserfaultfd(pid, fd)) found.Add(fd);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        found.Sort();
        return found.ToArray();
    }
}
