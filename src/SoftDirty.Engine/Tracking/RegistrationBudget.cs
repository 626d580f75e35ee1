using System;
using System.Collections.Generic;
using SoftDirty.Injection;

namespace SoftDirty.Tracking;

/// <summary>
/// How much of a real process's address space its write tracking registers, all mappings together: <see cref="Bytes"/>.
/// The first reset marks every page of a registered mapping that was never used (WP_UNPOPULATED), which makes the page
/// tables of all of it, kept until the mapping goes (<see cref="WriteProtectTracker.Registers"/>). A cap on each mapping
/// alone let a process with many mappings, each under it, take that memory many times over (round 33: four 64 GiB
/// MAP_NORESERVE mappings, 513 MiB of page tables at Enable-WriteTracking; two hundred would have taken 25 GiB). The
/// mappings registered already ("uw" in smaps VmFlags) count first, whatever the budget, so that what is tracked stays
/// tracked; the others are taken in address order while they fit. The rest is compared by its present pages, as any
/// mapping the tracking does not register.
/// </summary>
internal static class RegistrationBudget
{
    /// <summary>The address space one process's write tracking registers at most: 64 GiB, whose markers may take 128 MiB of page tables.</summary>
    public const ulong Bytes = 64UL << 30;

    /// <summary>
    /// The starts of the mappings of <paramref name="mappings"/> (one process's, in address order) that
    /// <paramref name="wanted"/> takes and the tracking registers: each one <see cref="WriteProtectTracker.Registers"/>, and
    /// together within <see cref="Bytes"/> with every mapping of the process registered already.
    /// </summary>
    public static HashSet<ulong> Choose(IReadOnlyList<MemoryMapping> mappings, Func<MemoryMapping, bool> wanted)
    {
        var chosen = new HashSet<ulong>();
        ulong used = 0;
        foreach (var m in mappings)
        {
            if (!Registered(m)) continue;
            used += m.End - m.Start;
            if (wanted(m)) chosen.Add(m.Start);
        }
        foreach (var m in mappings)
        {
            if (Registered(m) || !wanted(m) || !WriteProtectTracker.Registers(m)) continue;
            ulong size = m.End - m.Start;
            if (used > Bytes || size > Bytes - used) continue;
            used += size;
            chosen.Add(m.Start);
        }
        return chosen;
    }

    /// <summary>Whether smaps shows <paramref name="m"/> registered for userfaultfd write-protect (and the tracking would register it).</summary>
    private static bool Registered(MemoryMapping m) =>
        WriteProtectTracker.Registers(m) && m.VmFlags.Contains(RemoteWriteProtect.UffdWriteProtectFlag);
}
