using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace SoftDirty.Images;

/// <summary>
/// Which devices (major:minor as /proc/PID/maps writes them) hold a file system on which a stat answers from this machine
/// alone: a local disk or memory file system. A stat of a file on FUSE (a server of the process's owner, virtiofs), NFS, CIFS
/// or the like can wait on another process or machine for ever (Ctrl+C does not end it), so <see cref="DeviceMappings"/>
/// never looks at such a file, and takes its mapping for a candidate instead (smaps decides). Devices are read from the
/// process's /proc/PID/mountinfo and this one's (a container's files are seen under the host's mounts too), and read again
/// for a device neither names.
/// </summary>
internal static class LocalFileSystems
{
    /// <summary>File system types that need no server to answer a stat.</summary>
    private static readonly HashSet<string> LocalTypes = new(StringComparer.Ordinal)
    {
        "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "bcachefs", "zfs", "nilfs2",
        "tmpfs", "ramfs", "devtmpfs", "hugetlbfs", "shm", "squashfs", "erofs", "iso9660", "udf", "cramfs", "romfs",
        "vfat", "msdos", "exfat", "ntfs3", "hfsplus", "overlay",
    };

    /// <summary>How many processes' answers are kept before the cache starts over.</summary>
    private const int CacheLimit = 1024;

    private static readonly ConcurrentDictionary<int, Dictionary<string, bool>> Devices = new();

    /// <summary>Whether <paramref name="device"/> of a mapping of process <paramref name="pid"/> is a local file system's.</summary>
    public static bool IsLocal(int pid, string device)
    {
        if (Devices.TryGetValue(pid, out var known) && known.TryGetValue(device, out bool local)) return local;
        var read = new Dictionary<string, bool>(StringComparer.OrdinalIgnoreCase);
        Read(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/mountinfo"), read);
        Read("/proc/self/mountinfo", read);
        if (Devices.Count >= CacheLimit) Devices.Clear();
        Devices[pid] = read;
        return read.TryGetValue(device, out local) && local;
    }

    /// <summary>Adds each mount's device of <paramref name="path"/> (a mountinfo file); a device is local if any mount of it says so.</summary>
    private static void Read(string path, Dictionary<string, bool> into)
    {
        IEnumerable<string> lines;
        try { lines = File.ReadAllLines(path); }
        // Out of descriptors or memory is no answer (it was kept, for the process, as "no local file system": round 29).
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(e, path); return; }
        foreach (var line in lines)
            if (MountInfoLine.Parse(line) is { } mount)
                into[mount.Device] = into.GetValueOrDefault(mount.Device) || LocalTypes.Contains(mount.Type);
    }
}
