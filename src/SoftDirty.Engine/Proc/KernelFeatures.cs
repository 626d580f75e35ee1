using System.Collections.Generic;
using System.Linq;

namespace SoftDirty;

/// <summary>What a kernel supports for write tracking, measured (for /proc) or from the profile (emulator).</summary>
public sealed class KernelFeatures
{
    internal KernelFeatures() { }

    /// <summary>The kernel's release string (uname -r), or the emulated profile's.</summary>
    public string KernelRelease { get; internal init; } = string.Empty;
    /// <summary>Bit 55 really gets set by a write after clear_refs "4".</summary>
    public bool SoftDirty { get; internal init; }
    /// <summary>Why <see cref="SoftDirty"/> is false; null when it is true.</summary>
    public string? SoftDirtyReason { get; internal init; }
    /// <summary>The PAGEMAP_SCAN ioctl (6.7+).</summary>
    public bool PagemapScan { get; internal init; }
    /// <summary>Why <see cref="PagemapScan"/> is false; null when it is true.</summary>
    public string? PagemapScanReason { get; internal init; }
    /// <summary>
    /// The page categories the kernel's PAGEMAP_SCAN takes: PAGE_IS_GUARD only from 6.15 (guard regions); before, a mask
    /// that names it is EINVAL (Debian's 6.12), so a scan with every category asks for these. Not part of the output: a
    /// flags enum travels as a number through Export-Clixml and remoting, and the object would print otherwise there.
    /// </summary>
    internal PageCategory PagemapScanCategories { get; init; } = PagemapScanRequest.ValidCategories;
    /// <summary>userfaultfd with UFFD_FEATURE_WP_ASYNC (6.7+): write tracking without soft-dirty.</summary>
    public bool UffdWriteProtectAsync { get; internal init; }
    /// <summary>Why <see cref="UffdWriteProtectAsync"/> is false; null when it is true.</summary>
    public string? UffdWriteProtectAsyncReason { get; internal init; }
    /// <summary>The caller sees page frame numbers (CAP_SYS_ADMIN); else they read as zero.</summary>
    public bool PfnVisible { get; internal init; }
    /// <summary>Why <see cref="PfnVisible"/> is false; null when it is true.</summary>
    public string? PfnVisibleReason { get; internal init; }
    /// <summary>True for an emulated kernel.</summary>
    public bool Emulated { get; internal init; }
    /// <summary>
    /// Every rule in which kernels differ (zero page, THP, page-table WRITTEN, userfaultfd, guard regions,
    /// swap...), each with the value measured and the evidence (<see cref="KernelRules"/>); for an emulated
    /// kernel, the rules of its profile. Its string form joins the rules with <see cref="RuleSeparator"/> (Export-Csv writes it).
    /// </summary>
    public IReadOnlyList<KernelRule> Rules { get => _rules; internal init => _rules = new JoinedList<KernelRule>(value.ToArray(), RuleSeparator); }
    private readonly JoinedList<KernelRule> _rules = JoinedList<KernelRule>.Empty;
    /// <summary>What joins the rules in the string form of <see cref="Rules"/> (a rule's evidence holds spaces).</summary>
    public const string RuleSeparator = "; ";

    internal KernelFeatures WithRules(IReadOnlyList<KernelRule> rules) => new()
    {
        KernelRelease = KernelRelease, SoftDirty = SoftDirty, SoftDirtyReason = SoftDirtyReason, PagemapScan = PagemapScan,
        PagemapScanReason = PagemapScanReason, PagemapScanCategories = PagemapScanCategories, UffdWriteProtectAsync = UffdWriteProtectAsync,
        UffdWriteProtectAsyncReason = UffdWriteProtectAsyncReason, PfnVisible = PfnVisible, PfnVisibleReason = PfnVisibleReason,
        Emulated = Emulated, Rules = rules,
    };
}
