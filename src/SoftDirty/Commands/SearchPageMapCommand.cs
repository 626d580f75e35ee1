using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// Search-PageMap: the PAGEMAP_SCAN ioctl (Linux 6.7+). The kernel walks the page tables and returns
/// regions of pages whose categories match, merged where contiguous; -WriteProtect re-arms userfaultfd
/// async write-protect on the matched pages (get-and-clear of Written).
/// </summary>
[Cmdlet(VerbsCommon.Search, "PageMap", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = EmulatorSet)]
[OutputType(typeof(PageScanRegion))]
public sealed class SearchPageMapCommand : SoftDirtyCmdlet
{
    [Parameter(ParameterSetName = IdSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    public int[] Id { get; set; } = Array.Empty<int>();

    /// <summary>An emulated process (New-EmulatedProcess) instead of a real one.</summary>
    [Parameter(ParameterSetName = EmulatorSet, Mandatory = true, ValueFromPipeline = true)]
    public EmulatedProcess? Emulator { get; set; }

    /// <summary>Start of the range to scan (page-aligned).</summary>
    [Parameter]
    public ulong? Address { get; set; }

    /// <summary>Bytes to scan from -Address; the kernel rounds the end up to a page.</summary>
    [Parameter]
    public ulong? Length { get; set; }

    /// <summary>Mappings to scan, by path or pseudo-name, with wildcards.</summary>
    [Parameter]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(MappingNameCompleter))]
    public string[]? Mapping { get; set; }

    /// <summary>Categories a page must all have (category_mask).</summary>
    [Parameter(Position = 1)]
    public PageCategory Category { get; set; }

    /// <summary>Categories of which a page must have at least one (category_anyof_mask).</summary>
    [Parameter]
    public PageCategory AnyCategory { get; set; }

    /// <summary>Categories inverted before matching (category_inverted): with -Category, pages that lack them.</summary>
    [Parameter]
    public PageCategory InvertCategory { get; set; }

    /// <summary>Categories reported, and by which regions merge (return_mask); default: those asked about, or all.</summary>
    [Parameter]
    public PageCategory? ReturnCategory { get; set; }

    /// <summary>Stop after this many matching pages (max_pages); 0 means no limit.</summary>
    [Parameter]
    public ulong MaxPages { get; set; }

    /// <summary>Write-protect the matching pages (PM_SCAN_WP_MATCHING), re-arming userfaultfd async write tracking.</summary>
    [Parameter]
    public SwitchParameter WriteProtect { get; set; }

    /// <summary>Fail on a range not registered for userfaultfd async write-protect (PM_SCAN_CHECK_WPASYNC).</summary>
    [Parameter]
    public SwitchParameter CheckWriteProtectAsync { get; set; }

    protected override void BeginProcessing() => CheckRangeParameters(Address, Length, Mapping);

    protected override void ProcessRecord() => ForEachSource(Targets(Id, Emulator), Scan);

    private void Scan(IPageSource source)
    {
        if (!source.Features.PagemapScan)
            throw new SoftDirtyException(SoftDirtyError.PagemapScanNotSupported,
                source.Features.PagemapScanReason ?? "PAGEMAP_SCAN is not available.", source.ProcessId);
        var mappings = source.ReadMappings(withCounters: false);
        var spans = SelectSpans(source, mappings, Address, Length, Mapping, roundLength: true);
        if (spans is null) return;

        var flags = (WriteProtect ? PagemapScanFlags.WriteProtectMatching : 0) | (CheckWriteProtectAsync ? PagemapScanFlags.CheckWriteProtectAsync : 0);
        if (WriteProtect && !ShouldProcess($"process {source.ProcessId} ({source.Name})", "Write-protect the matching pages (PAGEMAP_SCAN WP_MATCHING)"))
            return;
        var asked = Category | AnyCategory | InvertCategory;
        var template = new PagemapScanRequest
        {
            Flags = flags,
            MaxPages = MaxPages,
            CategoryMask = Category,
            CategoryAnyOf = AnyCategory,
            CategoryInverted = InvertCategory,
            ReturnMask = ReturnCategory ?? (asked == PageCategory.None ? PagemapScanRequest.ValidCategories : asked),
        };
        var reader = new PageMapReader(source, chunkEntries: 1);
        var byStart = mappings.ToArray();
        foreach (var region in reader.ScanRegions(spans, template, Cancellation))
            WriteObject(new PageScanRegion(source.ProcessId, region, MappingAt(byStart, region.Start)?.DisplayName, source.PageSize));
    }

    private static MemoryMapping? MappingAt(MemoryMapping[] sorted, ulong address)
    {
        int lo = 0, hi = sorted.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) / 2;
            if (address < sorted[mid].Start) hi = mid - 1;
            else if (address >= sorted[mid].End) lo = mid + 1;
            else return sorted[mid];
        }
        return null;
    }
}
