using System;
using System.Collections.Generic;

namespace SoftDirty.Emulation;

/// <summary>When a fault may map a transparent huge page (/sys/kernel/mm/transparent_hugepage/enabled).</summary>
public enum TransparentHugePageMode
{
    /// <summary>Never: every fault maps 4 KiB pages.</summary>
    Never,
    /// <summary>Only in VMAs marked MADV_HUGEPAGE.</summary>
    Madvise,
    /// <summary>In every private anonymous VMA (not marked MADV_NOHUGEPAGE).</summary>
    Always,
}

/// <summary>
/// The kernel an emulated process runs on: one named property (a rule) per behaviour that differs between
/// releases, build configurations, boot options or sysfs settings, consulted where it matters. Release
/// profiles: "6.1" (no PAGEMAP_SCAN, no userfaultfd WP_ASYNC, no guard regions, mremap of one VMA only,
/// VM_SOFTDIRTY not sticky on merge), "6.18" (PAGEMAP_SCAN, WP_ASYNC, guard regions, multi-VMA mremap; the
/// default) and "6.19" (VM_SOFTDIRTY sticky on merge). A record: a variant is a copy made with
/// <c>with</c>, so no rule is lost (<see cref="WithoutSoftDirty"/>; <see cref="KernelRules.HostProfile"/>
/// for the running kernel, its release profile plus the measured rules).
/// </summary>
public sealed record KernelProfile
{
    public const string Linux61 = "6.1";
    public const string Linux618 = "6.18";
    public const string Linux619 = "6.19";
    public const string DefaultName = Linux618;
    /// <summary>The -Kernel value for the profile of the running kernel (version plus measured rules).</summary>
    public const string HostName = "Host";

    private static readonly Dictionary<string, KernelProfile> s_profiles = new(StringComparer.Ordinal)
    {
        [Linux61] = new KernelProfile { Name = Linux61, LegacyMremapOrder = true, LegacyMmapAnonVmaMerge = true },
        [Linux618] = new KernelProfile { Name = Linux618, UnaccountsUnfaultedOnMprotect = true, HasPagemapScan = true, HasUffdWriteProtectAsync = true, HasGuardRegions = true, MremapMovesMultipleVmas = true },
        [Linux619] = new KernelProfile { Name = Linux619, UnaccountsUnfaultedOnMprotect = true, HasPagemapScan = true, HasUffdWriteProtectAsync = true, HasGuardRegions = true, MremapMovesMultipleVmas = true, StickySoftDirtyOnMerge = true },
    };

    private KernelProfile() { }

    /// <summary>"6.1", "6.18" or "6.19": the release profile (for a host profile, the nearest at or below the host's version).</summary>
    public string Name { get; init; } = DefaultName;
    /// <summary>The uname -r the emulated kernel reports.</summary>
    public string Release => Name + ".0-emulated" + (HostRelease is null ? string.Empty : "-host") + (SoftDirtyEnabled ? string.Empty : "-nosoftdirty");
    /// <summary>For a profile measured from the running kernel: its uname -r; null for a release profile.</summary>
    public string? HostRelease { get; init; }
    /// <summary>CONFIG_MEM_SOFT_DIRTY: false makes clear_refs "4" a silent no-op and bit 55 never set.</summary>
    public bool SoftDirtyEnabled { get; init; } = true;
    /// <summary>The PAGEMAP_SCAN ioctl (6.7+).</summary>
    public bool HasPagemapScan { get; init; }
    /// <summary>userfaultfd UFFD_FEATURE_WP_ASYNC (6.7+).</summary>
    public bool HasUffdWriteProtectAsync { get; init; }
    /// <summary>MADV_GUARD_INSTALL and pagemap bit 58 (6.15+).</summary>
    public bool HasGuardRegions { get; init; }
    /// <summary>
    /// A read fault on private anonymous memory maps the shared zero page (present, PFNZERO, not exclusive).
    /// Without it (a boot option, or mm_forbids_zeropage) do_anonymous_page allocates a fresh exclusive page,
    /// writable and dirty when the VMA is writable (pte_mkdirty also sets soft-dirty on x86).
    /// </summary>
    public bool SharedZeroPage { get; init; } = true;
    /// <summary>A read fault of an aligned 2 MiB THP-eligible range maps the huge zero page; without it, a real THP.</summary>
    public bool HugeZeroPage { get; init; } = true;
    /// <summary>When a fault may map a THP (a sysfs setting: a host profile reads it when it is built).</summary>
    public TransparentHugePageMode TransparentHugePages { get; init; } = TransparentHugePageMode.Madvise;
    /// <summary>
    /// PAGEMAP_SCAN reports never-touched pages WRITTEN even where no page table exists for their 2 MiB
    /// range. False on 6.18 (pagemap_scan_pte_hole gives the VMA's categories only; a none PTE in an existing
    /// table is WRITTEN), so whether a table exists shows in the scan.
    /// </summary>
    public bool ScanWrittenWithoutPageTable { get; init; }
    /// <summary>mremap MREMAP_FIXED without resizing may move a range of several VMAs, gaps included (6.17+); before, one VMA or EFAULT.</summary>
    public bool MremapMovesMultipleVmas { get; init; }
    /// <summary>
    /// mremap's order of checks before the 6.17 rework: the old address is looked up first (in no VMA:
    /// EFAULT, before the new range is checked); then mremap_to unmaps the MREMAP_FIXED destination (and a
    /// shrinking move's old tail) before it checks that the old range fits its VMA, so a move refused with
    /// EFAULT still leaves a hole at the destination (found by the differential run against Debian's 6.1 kernel).
    /// </summary>
    public bool LegacyMremapOrder { get; init; }
    /// <summary>
    /// "allow unfaulted VMAs to be unaccounted on mprotect()" (6.7): making never-faulted private anonymous
    /// memory non-writable drops VM_ACCOUNT, so it can merge with an unaccounted neighbour; before, it keeps
    /// VM_ACCOUNT and does not merge (found by the differential run against Debian's 6.1 kernel).
    /// </summary>
    public bool UnaccountsUnfaultedOnMprotect { get; init; }
    /// <summary>
    /// mmap_region before the VMA merge rework: a new mapping between two mergeable neighbours first takes
    /// the next one, then checks prev against next's anon_vma, which a prev without one (an empty anon_vma
    /// chain) fails, so only next merges (found by the differential run against Debian's 6.1 kernel).
    /// </summary>
    public bool LegacyMmapAnonVmaMerge { get; init; }
    /// <summary>"propagate VM_SOFTDIRTY on merge" (6.19): a merged VMA is soft-dirty if either side was; before, the survivor's flag wins.</summary>
    public bool StickySoftDirtyOnMerge { get; init; }

    /// <summary>The release profile names, oldest first.</summary>
    public static IReadOnlyList<string> Names { get; } = new[] { Linux61, Linux618, Linux619 };

    /// <summary>
    /// The profile of a name; <see cref="HostName"/> gives the running kernel's (<see cref="KernelRules.HostProfile"/>);
    /// throws InvalidArgument for an unknown name.
    /// </summary>
    public static KernelProfile Get(string name, bool noSoftDirty = false)
    {
        KernelProfile p;
        if (string.Equals(name, HostName, StringComparison.OrdinalIgnoreCase)) p = KernelRules.HostProfile();
        else if (!s_profiles.TryGetValue(name, out p!))
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument,
                $"Unknown kernel profile '{name}'; known profiles: {string.Join(", ", Names)}, {HostName}.", name);
        return noSoftDirty ? p.WithoutSoftDirty() : p;
    }

    /// <summary>The nearest release profile at or below a kernel version (6.1 for anything older).</summary>
    public static KernelProfile ForVersion(Version version)
    {
        ArgumentNullException.ThrowIfNull(version);
        string best = Linux61;
        foreach (var n in Names)
            if (Version.Parse(n) <= new Version(version.Major, Math.Max(version.Minor, 0))) best = n;
        return s_profiles[best];
    }

    public static KernelProfile Default => Get(DefaultName);

    /// <summary>The same kernel built without CONFIG_MEM_SOFT_DIRTY.</summary>
    public KernelProfile WithoutSoftDirty() => this with { SoftDirtyEnabled = false };

    /// <summary>Every rule of the profile as Name/Value/Evidence (for a host profile, the evidence says it was measured).</summary>
    public IReadOnlyList<KernelRule> Rules
    {
        get
        {
            string evidence = HostRelease is null ? $"release profile {Name}" : $"measured on {HostRelease} (release profile {Name})";
            KernelRule R(string name, object value) => new(name, value.ToString()!, evidence);
            return new[]
            {
                R(nameof(SoftDirtyEnabled), SoftDirtyEnabled), R(nameof(HasPagemapScan), HasPagemapScan),
                R(nameof(HasUffdWriteProtectAsync), HasUffdWriteProtectAsync), R(nameof(HasGuardRegions), HasGuardRegions),
                R(nameof(SharedZeroPage), SharedZeroPage), R(nameof(HugeZeroPage), HugeZeroPage),
                R(nameof(TransparentHugePages), TransparentHugePages), R(nameof(ScanWrittenWithoutPageTable), ScanWrittenWithoutPageTable),
                R(nameof(MremapMovesMultipleVmas), MremapMovesMultipleVmas), R(nameof(LegacyMremapOrder), LegacyMremapOrder),
                R(nameof(UnaccountsUnfaultedOnMprotect), UnaccountsUnfaultedOnMprotect), R(nameof(LegacyMmapAnonVmaMerge), LegacyMmapAnonVmaMerge),
                R(nameof(StickySoftDirtyOnMerge), StickySoftDirtyOnMerge),
            };
        }
    }

    /// <summary>The rules one a line, "Name = Value".</summary>
    public string DescribeRules() => $"profile {Release}:\n" + string.Join("\n", System.Linq.Enumerable.Select(Rules, r => $"  {r.Name} = {r.Value}"));

    public override string ToString() => Release;
}
