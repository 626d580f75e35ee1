using System;
using System.Globalization;
using System.IO;
using SoftDirty.Injection;

namespace SoftDirty.Tracking;

/// <summary>
/// How much memory a save, a watch or a migration may make a process allocate by reading pages pagemap cannot tell apart:
/// where frame numbers are hidden (no CAP_SYS_ADMIN), a uffd-wp marker (a write-protected page never used or dropped) shows
/// as a swapped page with the uffd-wp bit, and a real swapped (or migrating) page shows the same. Such pages are read, as a
/// swapped page must be (not reading one would leave its data out of the image), and on a kernel without a shared zero page
/// every read of a marker faults a new page into the process, charged to it (round 34: a full save of a process with
/// 4 x 32 GiB registered took the machine into global OOM). There the reads are bounded (<see cref="Applies"/>; a kernel that
/// has one maps it, at the cost of no page): an eighth of MemAvailable, and where the process's memory cgroup (or one above
/// it) has a limit and the machine no swap, half the room below it. Past the bound the read stops with ResourceLimit, before
/// any page past it is read; the pages counted first (<see cref="EnsureRoom"/>) refuse before any of them is read.
/// </summary>
internal sealed class MarkerReadBudget
{
    /// <summary>The share of MemAvailable the reads may take: 1/<see cref="MemAvailableShare"/>.</summary>
    public const ulong MemAvailableShare = 8;

    /// <summary>The share of the room below the memory cgroup's limit the reads may take: 1/<see cref="CgroupRoomShare"/>.</summary>
    public const ulong CgroupRoomShare = 2;

    /// <summary>
    /// Whether reads of markers allocate on this kernel: false where it maps its shared zero page for a read fault of
    /// anonymous memory (the rule <see cref="KernelRules.SharedZeroPage"/>, measured), which a marker's read maps as a never
    /// used page's, at the cost of no page; true where it has none, or the rule was not measured.
    /// </summary>
    public static bool Applies(KernelFeatures features)
    {
        foreach (var rule in features.Rules)
            if (rule.Name == KernelRules.SharedZeroPage) return rule.Value != bool.TrueString;
        return true;
    }

    private readonly int _pid;
    private readonly ulong _limit;
    private readonly string _bound;
    private ulong _taken;

    private MarkerReadBudget(int pid, ulong limit, string bound)
    {
        _pid = pid;
        _limit = limit;
        _bound = bound;
    }

    /// <summary>The budget of process <paramref name="pid"/>, as the machine and its memory cgroup stand now.</summary>
    public static MarkerReadBudget For(int pid)
    {
        ulong limit = ulong.MaxValue;
        string bound = "no bound is known";
        if (MemAvailable() is ulong available)
        {
            limit = available / MemAvailableShare;
            bound = $"an eighth of the {available} bytes of MemAvailable";
        }
        if (MemoryCgroupRoom.TightestRoom(pid) is (ulong room, string cgroup) && room / CgroupRoomShare < limit)
        {
            limit = room / CgroupRoomShare;
            bound = $"half of the {room} bytes of room below the limit of the process's memory cgroup {cgroup}";
        }
        return new MarkerReadBudget(pid, limit, bound);
    }

    /// <summary>Refuses (ResourceLimit) where <paramref name="bytes"/> more would pass the bound; takes nothing.</summary>
    public void EnsureRoom(ulong bytes)
    {
        if (bytes > _limit || _taken > _limit - bytes) throw Refusal(_taken + bytes);
    }

    /// <summary>Takes <paramref name="bytes"/> of the budget, or refuses (ResourceLimit) where they would pass the bound.</summary>
    public void Take(ulong bytes)
    {
        EnsureRoom(bytes);
        _taken += bytes;
    }

    private EngineException Refusal(ulong bytes) => new(EngineError.ResourceLimit,
        $"Process {_pid} has at least {bytes} bytes of write-protected pages that pagemap shows as swapped without their frame numbers (which it shows only to CAP_SYS_ADMIN): uffd-wp markers of pages never used, which hold no data, cannot be told from swapped pages, which do, so each would be read, and a read of a marker allocates a page in the process. That is more than {_limit} bytes ({_bound}), so the read stopped before reading them. Run with CAP_SYS_ADMIN, or use -Method SoftDirty or Hash.",
        _pid);

    /// <summary>MemAvailable of /proc/meminfo in bytes; null where it cannot be read.</summary>
    private static ulong? MemAvailable()
    {
        const string key = "MemAvailable:";
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith(key, StringComparison.Ordinal)
                    && ulong.TryParse(line.AsSpan(key.Length).Trim().TrimEnd("kB").Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong kib))
                    return kib > ulong.MaxValue / 1024 ? ulong.MaxValue : kib * 1024;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        return null;
    }
}
