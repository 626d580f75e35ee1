using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;

namespace SoftDirty;

/// <summary>
/// Where pages come from: a real process's /proc files or an emulated process. Both speak the kernel's
/// formats (pagemap entries, clear_refs text, PAGEMAP_SCAN requests and regions, maps/smaps fields), so the
/// code above cannot tell them apart.
/// </summary>
public interface IPageSource : IDisposable
{
    /// <summary>The pid (a real one, or the emulator's own numbering).</summary>
    int ProcessId { get; }
    /// <summary>The process name (comm).</summary>
    string Name { get; }
    int PageSize { get; }
    /// <summary>What the kernel (or the emulated kernel profile) behind this source supports.</summary>
    KernelFeatures Features { get; }

    /// <summary>The VMAs in address order; with counters, as smaps (counters and VmFlags), else as maps.</summary>
    IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters);

    /// <summary>
    /// Reads the pagemap entries of consecutive virtual pages from <paramref name="firstPage"/> (an address
    /// divided by the page size). Returns how many were read: fewer only past the end of the address space.
    /// </summary>
    int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination);

    /// <summary>
    /// Reads the bytes of the process's memory at <paramref name="address"/> (as /proc/PID/mem does);
    /// returns how many were read, fewer where the range reaches an unmapped or unreadable page.
    /// </summary>
    int ReadMemory(ulong address, Span<byte> destination);

    /// <summary>Writes to clear_refs, parsed as the kernel parses it; returns the byte count accepted.</summary>
    int WriteClearRefs(ReadOnlySpan<byte> text);

    /// <summary>
    /// The PAGEMAP_SCAN ioctl: fills <paramref name="regions"/>, returns how many, and sets
    /// <see cref="PagemapScanRequest.WalkEnd"/>. Throws PagemapScanNotSupported where the kernel lacks it.
    /// </summary>
    int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions);
}

public static class PageSourceExtensions
{
    /// <summary>
    /// Writes one of the clear_refs types, as "N\n": the one place the module clears. A soft-dirty clear starts
    /// a new tracking epoch of the process (<see cref="Tracking.TrackingEpoch"/>), which it returns (null where none can be kept).
    /// </summary>
    public static string? ClearRefs(this IPageSource source, ClearRefsType type)
    {
        Span<byte> text = stackalloc byte[2];
        text[0] = (byte)('0' + (int)type);
        text[1] = (byte)'\n';
        source.WriteClearRefs(text);
        return type == ClearRefsType.SoftDirty ? Tracking.TrackingEpoch.Record(source) : null;
    }
}

/// <summary>What a kernel supports for write tracking, measured (for /proc) or from the profile (emulator).</summary>
public sealed class KernelFeatures
{
    public string KernelRelease { get; init; } = string.Empty;
    /// <summary>Bit 55 really gets set by a write after clear_refs "4".</summary>
    public bool SoftDirty { get; init; }
    public string? SoftDirtyReason { get; init; }
    /// <summary>The PAGEMAP_SCAN ioctl (6.7+).</summary>
    public bool PagemapScan { get; init; }
    public string? PagemapScanReason { get; init; }
    /// <summary>userfaultfd with UFFD_FEATURE_WP_ASYNC (6.7+): write tracking without soft-dirty.</summary>
    public bool UffdWriteProtectAsync { get; init; }
    public string? UffdWriteProtectAsyncReason { get; init; }
    /// <summary>The caller sees page frame numbers (CAP_SYS_ADMIN); else they read as zero.</summary>
    public bool PfnVisible { get; init; }
    public string? PfnVisibleReason { get; init; }
    /// <summary>True for an emulated kernel.</summary>
    public bool Emulated { get; init; }
    /// <summary>
    /// Every rule in which kernels differ (zero page, THP, page-table WRITTEN, userfaultfd, guard regions,
    /// swap...), each with the value measured and the evidence (<see cref="KernelRules"/>); for an emulated
    /// kernel, the rules of its profile. Its string form joins the rules with <see cref="RuleSeparator"/> (Export-Csv writes it).
    /// </summary>
    public IReadOnlyList<KernelRule> Rules { get => _rules; init => _rules = new JoinedList<KernelRule>(value.ToArray(), RuleSeparator); }
    private readonly JoinedList<KernelRule> _rules = JoinedList<KernelRule>.Empty;
    /// <summary>What joins the rules in the string form of <see cref="Rules"/> (a rule's evidence holds spaces).</summary>
    public const string RuleSeparator = "; ";

    internal KernelFeatures WithRules(IReadOnlyList<KernelRule> rules) => new()
    {
        KernelRelease = KernelRelease, SoftDirty = SoftDirty, SoftDirtyReason = SoftDirtyReason, PagemapScan = PagemapScan,
        PagemapScanReason = PagemapScanReason, UffdWriteProtectAsync = UffdWriteProtectAsync,
        UffdWriteProtectAsyncReason = UffdWriteProtectAsyncReason, PfnVisible = PfnVisible, PfnVisibleReason = PfnVisibleReason,
        Emulated = Emulated, Rules = rules,
    };
}
