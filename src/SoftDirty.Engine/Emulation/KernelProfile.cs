using System;
using System.Collections.Generic;

namespace SoftDirty.Emulation;

/// <summary>
/// The kernel an emulated process runs on: one named property per behaviour that differs between
/// releases, consulted where it matters. Profiles: "6.1" (no PAGEMAP_SCAN, no userfaultfd WP_ASYNC, no
/// guard regions, mremap of one VMA only, VM_SOFTDIRTY not sticky on merge), "6.18" (PAGEMAP_SCAN, WP_ASYNC,
/// guard regions, multi-VMA mremap; the default) and "6.19" (VM_SOFTDIRTY sticky on merge). <see cref="WithoutSoftDirty"/> gives the same kernel
/// built without CONFIG_MEM_SOFT_DIRTY.
/// </summary>
public sealed class KernelProfile
{
    public const string Linux61 = "6.1";
    public const string Linux618 = "6.18";
    public const string Linux619 = "6.19";
    public const string DefaultName = Linux618;

    private static readonly Dictionary<string, KernelProfile> s_profiles = new(StringComparer.Ordinal)
    {
        [Linux61] = new KernelProfile { Name = Linux61, LegacyMremapOrder = true, LegacyMmapAnonVmaMerge = true },
        [Linux618] = new KernelProfile { Name = Linux618, UnaccountsUnfaultedOnMprotect = true, HasPagemapScan = true, HasUffdWriteProtectAsync = true, HasGuardRegions = true, MremapMovesMultipleVmas = true },
        [Linux619] = new KernelProfile { Name = Linux619, UnaccountsUnfaultedOnMprotect = true, HasPagemapScan = true, HasUffdWriteProtectAsync = true, HasGuardRegions = true, MremapMovesMultipleVmas = true, StickySoftDirtyOnMerge = true },
    };

    private KernelProfile() { }

    /// <summary>"6.1", "6.18" or "6.19".</summary>
    public string Name { get; private init; } = DefaultName;
    /// <summary>The uname -r the emulated kernel reports.</summary>
    public string Release => Name + ".0-emulated" + (SoftDirtyEnabled ? string.Empty : "-nosoftdirty");
    /// <summary>CONFIG_MEM_SOFT_DIRTY: false makes clear_refs "4" a silent no-op and bit 55 never set.</summary>
    public bool SoftDirtyEnabled { get; private init; } = true;
    /// <summary>The PAGEMAP_SCAN ioctl (6.7+).</summary>
    public bool HasPagemapScan { get; private init; }
    /// <summary>userfaultfd UFFD_FEATURE_WP_ASYNC (6.7+).</summary>
    public bool HasUffdWriteProtectAsync { get; private init; }
    /// <summary>MADV_GUARD_INSTALL and pagemap bit 58 (6.15+).</summary>
    public bool HasGuardRegions { get; private init; }
    /// <summary>mremap MREMAP_FIXED without resizing may move a range of several VMAs, gaps included (6.17+); before, one VMA or EFAULT.</summary>
    public bool MremapMovesMultipleVmas { get; private init; }
    /// <summary>
    /// mremap's order of checks before the 6.17 rework: the old address is looked up first (in no VMA:
    /// EFAULT, before the new range is checked); then mremap_to unmaps the MREMAP_FIXED destination (and a
    /// shrinking move's old tail) before it checks that the old range fits its VMA, so a move refused with
    /// EFAULT still leaves a hole at the destination (found by the differential run against Debian's 6.1 kernel).
    /// </summary>
    public bool LegacyMremapOrder { get; private init; }
    /// <summary>
    /// "allow unfaulted VMAs to be unaccounted on mprotect()" (6.7): making never-faulted private anonymous
    /// memory non-writable drops VM_ACCOUNT, so it can merge with an unaccounted neighbour; before, it keeps
    /// VM_ACCOUNT and does not merge (found by the differential run against Debian's 6.1 kernel).
    /// </summary>
    public bool UnaccountsUnfaultedOnMprotect { get; private init; }
    /// <summary>
    /// mmap_region before the VMA merge rework: a new mapping between two mergeable neighbours first takes
    /// the next one, then checks prev against next's anon_vma, which a prev without one (an empty anon_vma
    /// chain) fails, so only next merges (found by the differential run against Debian's 6.1 kernel).
    /// </summary>
    public bool LegacyMmapAnonVmaMerge { get; private init; }
    /// <summary>"propagate VM_SOFTDIRTY on merge" (6.19): a merged VMA is soft-dirty if either side was; before, the survivor's flag wins.</summary>
    public bool StickySoftDirtyOnMerge { get; private init; }

    /// <summary>The profile names, oldest first.</summary>
    public static IReadOnlyList<string> Names { get; } = new[] { Linux61, Linux618, Linux619 };

    /// <summary>The profile of a name; throws InvalidArgument for an unknown one.</summary>
    public static KernelProfile Get(string name, bool noSoftDirty = false)
    {
        if (!s_profiles.TryGetValue(name, out var p))
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument,
                $"Unknown kernel profile '{name}'; known profiles: {string.Join(", ", Names)}.", name);
        return noSoftDirty ? p.WithoutSoftDirty() : p;
    }

    public static KernelProfile Default => Get(DefaultName);

    /// <summary>The same kernel built without CONFIG_MEM_SOFT_DIRTY.</summary>
    public KernelProfile WithoutSoftDirty() => new()
    {
        Name = Name, SoftDirtyEnabled = false, HasPagemapScan = HasPagemapScan,
        HasUffdWriteProtectAsync = HasUffdWriteProtectAsync, HasGuardRegions = HasGuardRegions,
        StickySoftDirtyOnMerge = StickySoftDirtyOnMerge, MremapMovesMultipleVmas = MremapMovesMultipleVmas,
        LegacyMremapOrder = LegacyMremapOrder, UnaccountsUnfaultedOnMprotect = UnaccountsUnfaultedOnMprotect,
        LegacyMmapAnonVmaMerge = LegacyMmapAnonVmaMerge,
    };

    public override string ToString() => Release;
}
