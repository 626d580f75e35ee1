using System;
using System.Globalization;
using System.IO;
using SoftDirty.Emulation;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// The folder sdscenario makes its backing file in ($TMPDIR, else /tmp: what <see cref="Path.GetTempPath"/> reads too)
/// and the file system it lies on, as a read fault's fault-around sees it (<see cref="EmulatedFileSystem"/>): probed
/// through the folder's own mount (/proc/self/fdinfo's mnt_id, /proc/self/mountinfo) and its backing device's readahead
/// (/sys/class/bdi/MAJ:MIN/read_ahead_kb), never assumed from the path.
/// </summary>
public sealed record ScenarioTempFolder(string Path, EmulatedFileSystem? FileSystem, string Evidence)
{
    /// <summary>Readahead that covers every 64 KiB fault-around window around the faulting page (128 KiB: half of it before the page).</summary>
    public const int WindowReadaheadKb = 128;
    private const string ShmemEnabledPath = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

    /// <summary>sdscenario's folder now; FileSystem null (with the reason in Evidence) where the emulator does not model it.</summary>
    public static ScenarioTempFolder Probe() => Probe(System.IO.Path.GetTempPath());

    /// <summary>The file system of <paramref name="folder"/>; FileSystem null (with the reason in Evidence) where the emulator does not model it.</summary>
    public static ScenarioTempFolder Probe(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        int fd = Native.Open(folder, Native.O_PATH | Native.O_CLOEXEC);
        if (fd < 0) return new(folder, null, $"{folder}: open failed ({Errno.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError())})");
        string? mountId = null;
        try
        {
            foreach (var line in File.ReadLines($"/proc/self/fdinfo/{fd}"))
                if (line.StartsWith("mnt_id:", StringComparison.Ordinal)) mountId = line["mnt_id:".Length..].Trim();
        }
        catch (IOException e) { return new(folder, null, $"{folder}: /proc/self/fdinfo unreadable ({e.Message})"); }
        finally { Native.Close(fd); }
        if (mountId is null) return new(folder, null, $"{folder}: /proc/self/fdinfo has no mnt_id");
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            if (MountInfoLine.Parse(line) is not { } m || m.Id.ToString(CultureInfo.InvariantCulture) != mountId) continue;
            string device = string.Create(CultureInfo.InvariantCulture, $"{m.Major}:{m.Minor}");
            string mount = $"{folder}: {m.Type} on {m.MountPoint} (device {device}, {m.SuperOptions})";
            return m.Type == "tmpfs" ? Tmpfs(folder, mount, m.SuperOptions) : Disk(folder, mount, device);
        }
        return new(folder, null, $"{folder}: mount {mountId} is not in /proc/self/mountinfo");
    }

    // tmpfs of small folios only: huge= other than never, or shmem_enabled "force", gives large folios, which a fault maps whole.
    private static ScenarioTempFolder Tmpfs(string folder, string mount, string options)
    {
        foreach (var option in options.Split(','))
            if (option.StartsWith("huge=", StringComparison.Ordinal) && option != "huge=never")
                return new(folder, null, $"{mount}: huge pages in tmpfs are not modelled");
        string shmem = File.Exists(ShmemEnabledPath) ? File.ReadAllText(ShmemEnabledPath).Trim() : "absent";
        if (shmem.Contains("[force]", StringComparison.Ordinal))
            return new(folder, null, $"{mount}; {ShmemEnabledPath}: {shmem}: huge pages in tmpfs are not modelled");
        return new(folder, EmulatedFileSystem.Tmpfs, $"{mount}; {ShmemEnabledPath}: {shmem}");
    }

    private static ScenarioTempFolder Disk(string folder, string mount, string device)
    {
        string path = $"/sys/class/bdi/{device}/read_ahead_kb";
        if (!File.Exists(path)) return new(folder, null, $"{mount}: no {path} (no block device's readahead to model)");
        string text = File.ReadAllText(path).Trim();
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int kb) || kb < WindowReadaheadKb)
            return new(folder, null, $"{mount}: {path} is {text}, under the {WindowReadaheadKb} KiB the model assumes");
        return new(folder, EmulatedFileSystem.Disk, $"{mount}: {path} = {kb}");
    }
}
