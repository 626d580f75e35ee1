using System;
using System.Collections.Generic;

namespace SoftDirty.Emulation;

/// <summary>
/// The kernel an emulated process runs on: one named property (a rule) per behaviour that differs between
/// releases, build configurations, boot options or sysfs settings, consulted where it matters. Release
/// profiles: "6.1" (no PAGEMAP_SCAN, no userfaultfd WP_ASYNC, no guard regions, mremap of one VMA only,
/// VM_SOFTDIRTY not sticky on merge), "6.12" (PAGEMAP_SCAN and WP_ASYNC without guard regions), "6.18" (PAGEMAP_SCAN, WP_ASYNC, guard regions, multi-VMA mremap; the
/// default) and "6.19" (VM_SOFTDIRTY sticky on merge), "7.2" (as 6.19) and "7.3" (WRITTEN only in uffd-wp VMAs); 6.12, 7.2 and 7.3 were
/// measured on Debian's kernels by the kernel matrix (tests/vm/kernels.list). A record: a variant is a copy made with
/// <c>with</c>, so no rule is lost (<see cref="WithoutSoftDirty"/>; <see cref="KernelRules.HostProfile"/>
/// for the running kernel, its release profile plus the measured rules).
/// </summary>
public sealed record KernelProfile
{
    /// <summary>Linux 6.1: no PAGEMAP_SCAN, WP_ASYNC or guard regions; mremap of one VMA; the old mmap merge and mremap order.</summary>
    public const string Linux61 = "6.1";
    /// <summary>Linux 6.18: PAGEMAP_SCAN, WP_ASYNC, guard regions, multi-VMA mremap (the default).</summary>
    public const string Linux618 = "6.18";
    /// <summary>Linux 6.19: 6.18 with VM_SOFTDIRTY sticky on merge.</summary>
    public const string Linux619 = "6.19";
    /// <summary>The profile used when none is named.</summary>
    public const string DefaultName = Linux618;
    /// <summary>The -Kernel value for the profile of the running kernel (version plus measured rules).</summary>
    public const string HostName = "Host";
    // Profiles measured in the kernel matrix (tests/vm/kernels.list: Debian's kernels under qemu, every
    // hand-written scenario and 500 random ones of the Pester seed 20261126, 0 differences).
    /// <summary>Debian trixie's 6.12.117: PAGEMAP_SCAN and WP_ASYNC without guard regions (PAGE_IS_GUARD unknown), mremap of one VMA, the old mremap order.</summary>
    public const string Linux612 = "6.12";
    /// <summary>Debian sid's 7.2.13 (amd64; arm64 the same without soft-dirty): the rules of 6.19.</summary>
    public const string Linux72 = "7.2";
    /// <summary>Debian trixie-backports' 7.3.4: 7.2, and PAGEMAP_SCAN reports WRITTEN only in VMAs registered for uffd-wp.</summary>
    public const string Linux73 = "7.3";

    private static readonly Dictionary<string, KernelProfile> s_profiles = ReleaseProfiles();

    /// <summary>The release profiles, each a copy of its predecessor with the rules that changed.</summary>
    private static Dictionary<string, KernelProfile> ReleaseProfiles()
    {
        // Round 21 (THP-eligible windows): 6.1's PMD split does not carry the dirty bit to the PTEs.
        var linux61 = new KernelProfile
        {
            Name = Linux61, LegacyMremapOrder = true, LegacyMmapAnonVmaMerge = true,
            SplitCarriesDirty = false, KsmUnmergeWrites = true, SplitMapsZeroSubpages = false, MigrationCarriesDirty = true,
        };
        // Debian 6.12.117 (kernel matrix): scan's return mask 0x1FF is EINVAL (no PAGE_IS_GUARD, selftest-simple);
        // mremap EFAULT leaves the destination unmapped (regression-61-mremap-efault-*), so the old mremap order.
        var linux612 = linux61 with
        {
            Name = Linux612, LegacyMmapAnonVmaMerge = false, UnaccountsUnfaultedOnMprotect = true,
            HasPagemapScan = true, HasUffdWriteProtectAsync = true, HasMseal = true, SplitCarriesDirty = true, PmdExclusivePerPage = true,
            KsmUnmergeWrites = false, SplitMapsZeroSubpages = true, MigrationCarriesDirty = false,
        };
        // THP rules measured with a THP-eligible window (round 21: Debian's kernels booted with transparent_hugepage=always,
        // the 6.18 host with MADV_HUGEPAGE): 6.12 splits the huge zero PMD on a write; 6.18, 7.2 and 7.3 allocate a THP.
        var linux618 = linux612 with
        {
            Name = Linux618, LegacyMremapOrder = false, HasGuardRegions = true, MremapMovesMultipleVmas = true,
            HugeZeroWriteAllocatesThp = true, PmdExclusivePerPage = false,
        };
        var linux619 = linux618 with { Name = Linux619, StickySoftDirtyOnMerge = true };
        // Debian 7.2.13 amd64 and arm64 (kernel matrix): every print as on 6.19, sticky VM_SOFTDIRTY on merge included.
        var linux72 = linux619 with { Name = Linux72 };
        // Debian 7.3.4 (kernel matrix): a present page of a VMA not registered for uffd-wp is no longer WRITTEN
        // in PAGEMAP_SCAN (pagemap-ioctl-mremap: the moved pages scan 0x88, 7.2 says 0x8a); a moved uffd-wp VMA
        // leaves userfaultfd alone, its neighbours stay registered (regression-uffd-mremap-merge: 0-7 scan 0x91, 7.2 0x90).
        // Round 21: pagemap no longer reports the huge zero page FILE.
        var linux73 = linux72 with
        {
            Name = Linux73, WrittenOnlyInWriteProtectVmas = true, UffdMoveKeepsNeighboursRegistered = true, PagemapHugeZeroIsFile = false,
        };
        return new Dictionary<string, KernelProfile>(StringComparer.Ordinal)
        {
            [Linux61] = linux61, [Linux612] = linux612, [Linux618] = linux618,
            [Linux619] = linux619, [Linux72] = linux72, [Linux73] = linux73,
        };
    }

    private KernelProfile() { }

    /// <summary>One of <see cref="Names"/> (for a host profile, the nearest at or below the host's version).</summary>
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
    /// <summary>mseal(2) (6.10+): sealed VMAs refuse unmapping, moving, mprotect and discarding read-only private anonymous memory.</summary>
    public bool HasMseal { get; init; }
    /// <summary>
    /// A read fault on private anonymous memory maps the shared zero page (present, PFNZERO, not exclusive).
    /// Without it (a boot option, or mm_forbids_zeropage) do_anonymous_page allocates a fresh exclusive page,
    /// writable and dirty when the VMA is writable (pte_mkdirty also sets soft-dirty on x86).
    /// </summary>
    public bool SharedZeroPage { get; init; } = true;
    /// <summary>A read fault of an aligned 2 MiB THP-eligible range maps the huge zero page; without it, a real THP.</summary>
    public bool HugeZeroPage { get; init; } = true;
    /// <summary>
    /// A write fault on the huge zero PMD maps a fresh THP in its place (do_huge_zero_wp_pmd: all 512 pages present,
    /// dirty, soft-dirty); before ("mm: Allocate THP on hugezeropage wp-fault"), the PMD is split into zero-page
    /// PTEs and only the written page is copied. Measured (round 21): 6.12 splits; 6.18, 7.2 and 7.3 allocate.
    /// </summary>
    public bool HugeZeroWriteAllocatesThp { get; init; }
    /// <summary>
    /// pagemap reports FILE (bit 61) for the pages of a huge zero PMD (its folio is not anonymous); false where
    /// the PMD is special and pagemap finds no page for it. Measured (round 21): FILE on 6.1, 6.12, 6.18 and 7.2, not on 7.3.
    /// </summary>
    public bool PagemapHugeZeroIsFile { get; init; } = true;
    /// <summary>
    /// Splitting a PMD makes its PTEs dirty when the PMD was (pte_mkdirty, which sets soft-dirty on x86 too);
    /// 6.1 only marks the folio dirty, so a split PTE is soft-dirty only where the PMD was (measured in round 21).
    /// </summary>
    public bool SplitCarriesDirty { get; init; } = true;
    /// <summary>
    /// MADV_UNMERGEABLE breaks a KSM page with a write fault (break_ksm before 6.2): the private copy is soft-dirty; later
    /// kernels unshare (FAULT_FLAG_UNSHARE) and the copy keeps the entry's soft-dirty bit, which the merge dropped. Measured
    /// in round 24: 6.1 writes; 6.12, 7.2 and 7.3 unshare.
    /// </summary>
    public bool KsmUnmergeWrites { get; init; }
    /// <summary>
    /// The folio split of a THP maps its zero-filled pages to the shared zero page (6.12: "remap unused subpages to shared
    /// zeropage when splitting isolated thp"), keeping their soft-dirty bit. Measured in round 24: 6.12, 7.2 and 7.3 do; 6.1 does not.
    /// </summary>
    public bool SplitMapsZeroSubpages { get; init; } = true;
    /// <summary>
    /// A migrated page whose entry was dirty comes back soft-dirty (pte_mkdirty, x86): after clear_refs 4 a page written
    /// before the clear reads soft-dirty again (an over-count). Measured in round 24 with move_pages between two NUMA nodes:
    /// 6.1 does; 6.12, 7.2 and 7.3 keep the entry's soft-dirty bit as it was. uffd-wp is kept on every kernel.
    /// </summary>
    public bool MigrationCarriesDirty { get; init; }
    /// <summary>
    /// pagemap decides PM_MMAP_EXCLUSIVE (bit 56) of each page of a PMD-mapped THP by that page's own mapcount; false:
    /// by the head page's, one answer for all 512 (where the walk starts makes no difference). Measured in round 21
    /// (a THP written, forked, one page dropped by the child): per page on 6.12 only; the head page on 6.1, 6.18, 7.2, 7.3.
    /// </summary>
    public bool PmdExclusivePerPage { get; init; }
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

    /// <summary>
    /// PAGEMAP_SCAN reports PAGE_IS_WRITTEN only for pages of VMAs registered for userfaultfd write-protect;
    /// before, every page without a uffd-wp bit was WRITTEN (measured: Debian 7.3.4 in the kernel matrix).
    /// </summary>
    public bool WrittenOnlyInWriteProtectVmas { get; init; }
    /// <summary>
    /// mremap of a VMA registered for uffd-wp (without EVENT_REMAP) takes only the moved VMA out of
    /// userfaultfd, before it can merge: registered neighbours at the destination, the rest of the source
    /// VMA included, stay registered; before, the moved VMA merged with them first and all left together
    /// (measured: Debian 7.3.4 in the kernel matrix, regression-uffd-mremap-merge and -merge-next).
    /// </summary>
    public bool UffdMoveKeepsNeighboursRegistered { get; init; }

    /// <summary>The release profile names, oldest first.</summary>
    public static IReadOnlyList<string> Names { get; } = new[] { Linux61, Linux612, Linux618, Linux619, Linux72, Linux73 };

    /// <summary>
    /// The profile of a name; <see cref="HostName"/> gives the running kernel's (<see cref="KernelRules.HostProfile"/>);
    /// throws InvalidArgument for an unknown name.
    /// </summary>
    public static KernelProfile Get(string name, bool noSoftDirty = false)
    {
        KernelProfile p;
        if (string.Equals(name, HostName, StringComparison.OrdinalIgnoreCase)) p = KernelRules.HostProfile();
        else if (!s_profiles.TryGetValue(name, out p!))
            throw new EngineException(EngineError.InvalidArgument,
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

    /// <summary>The <see cref="DefaultName"/> profile.</summary>
    public static KernelProfile Default => Get(DefaultName);

    /// <summary>The same kernel built without CONFIG_MEM_SOFT_DIRTY.</summary>
    public KernelProfile WithoutSoftDirty() => this with { SoftDirtyEnabled = false };

    /// <summary>
    /// The same kernel with other THP settings: /sys/kernel/mm/transparent_hugepage/enabled (or the
    /// transparent_hugepage= boot option) and use_zero_page; null keeps the profile's. A release profile
    /// assumes "madvise" with the huge zero page; Debian's kernels boot "always" (CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS),
    /// and any kernel with under 512 MiB of RAM boots with THP off (hugepage_init).
    /// </summary>
    public KernelProfile WithThpSettings(TransparentHugePageMode? mode, bool? hugeZeroPage = null) =>
        this with { TransparentHugePages = mode ?? TransparentHugePages, HugeZeroPage = hugeZeroPage ?? HugeZeroPage };

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
                R(nameof(HasUffdWriteProtectAsync), HasUffdWriteProtectAsync), R(nameof(HasGuardRegions), HasGuardRegions), R(nameof(HasMseal), HasMseal),
                R(nameof(SharedZeroPage), SharedZeroPage), R(nameof(HugeZeroPage), HugeZeroPage),
                R(nameof(TransparentHugePages), TransparentHugePages), R(nameof(ScanWrittenWithoutPageTable), ScanWrittenWithoutPageTable),
                R(nameof(MremapMovesMultipleVmas), MremapMovesMultipleVmas), R(nameof(LegacyMremapOrder), LegacyMremapOrder),
                R(nameof(UnaccountsUnfaultedOnMprotect), UnaccountsUnfaultedOnMprotect), R(nameof(LegacyMmapAnonVmaMerge), LegacyMmapAnonVmaMerge),
                R(nameof(StickySoftDirtyOnMerge), StickySoftDirtyOnMerge), R(nameof(WrittenOnlyInWriteProtectVmas), WrittenOnlyInWriteProtectVmas),
                R(nameof(UffdMoveKeepsNeighboursRegistered), UffdMoveKeepsNeighboursRegistered),
                R(nameof(HugeZeroWriteAllocatesThp), HugeZeroWriteAllocatesThp), R(nameof(PagemapHugeZeroIsFile), PagemapHugeZeroIsFile),
                R(nameof(SplitCarriesDirty), SplitCarriesDirty), R(nameof(PmdExclusivePerPage), PmdExclusivePerPage),
                R(nameof(KsmUnmergeWrites), KsmUnmergeWrites), R(nameof(SplitMapsZeroSubpages), SplitMapsZeroSubpages),
                R(nameof(MigrationCarriesDirty), MigrationCarriesDirty),
            };
        }
    }

    /// <summary>The rules one a line, "Name = Value".</summary>
    public string DescribeRules() => $"profile {Release}:\n" + string.Join("\n", System.Linq.Enumerable.Select(Rules, r => $"  {r.Name} = {r.Value}"));

    /// <summary>The <see cref="Release"/>.</summary>
    public override string ToString() => Release;
}
