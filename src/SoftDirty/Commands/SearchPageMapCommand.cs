using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Search-PageMap: the PAGEMAP_SCAN ioctl (Linux 6.7+). The kernel walks the page tables and returns
/// regions of pages whose categories match, merged where contiguous; -WriteProtect re-arms userfaultfd
/// async write-protect on the matched pages (get-and-clear of Written).
/// </summary>
[Cmdlet(VerbsCommon.Search, "PageMap", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = IdSet)]
[OutputType(typeof(PageScanRegion))]
public sealed class SearchPageMapCommand : PageRangeCmdlet
{
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

    /// <inheritdoc/>
    private protected override void ReadRange(IPageSource source)
    {
        if (!source.Features.PagemapScan)
            throw new EngineException(EngineError.PagemapScanNotSupported,
                source.Features.PagemapScanReason ?? "PAGEMAP_SCAN is not available.", source.ProcessId);
        var asked = Category | AnyCategory | InvertCategory | (ReturnCategory ?? PageCategory.None);
        if ((asked & PageCategory.SoftDirty) != 0) WarnIfNoSoftDirty(source, "the SoftDirty category");
        var mappings = source.ReadMappings(withCounters: WriteProtect);
        var spans = SelectSpans(source, mappings, roundLength: true);
        if (spans is null) return;
        WriteVerbose($"Process {source.ProcessId} ({source.Name}): PAGEMAP_SCAN over {spans.Count} span(s), categories {Category}, any of {AnyCategory}, inverted {InvertCategory}{(WriteProtect ? ", write-protecting the matches" : "")}.");

        var flags = (WriteProtect ? PagemapScanFlags.WriteProtectMatching : 0) | (CheckWriteProtectAsync ? PagemapScanFlags.CheckWriteProtectAsync : 0);
        if (WriteProtect && !ShouldProcess($"process {source.ProcessId} ({source.Name})", "Write-protect the matching pages (PAGEMAP_SCAN WP_MATCHING)"))
            return;
        if (WriteProtect && !CheckWriteProtectAsync && !AnyRegisteredForWriteProtect(mappings, spans))
            throw new EngineException(EngineError.WriteProtectNotSupported,
                $"-WriteProtect would arm nothing: no selected mapping of process {source.ProcessId} ({source.Name}) is registered for userfaultfd write-protect (VmFlags 'uw'). " +
                "Only the process that owns a userfaultfd can register its memory (Register-EmulatedWriteProtect does it for an emulated process).", source.ProcessId);
        asked = Category | AnyCategory | InvertCategory;
        var template = new PagemapScanRequest
        {
            Flags = flags,
            MaxPages = MaxPages,
            CategoryMask = Category,
            CategoryAnyOf = AnyCategory,
            CategoryInverted = InvertCategory,
            ReturnMask = ReturnCategory ?? (asked == PageCategory.None ? source.Features.PagemapScanCategories : asked),
        };
        var reader = new PageMapReader(source, chunkEntries: 1) { CheckScannedMappings = true };
        var byStart = mappings.ToArray();
        int regions = 0;
        IEnumerable<PageRegion> found = reader.ScanRegions(spans, template, Cancellation);
        // A write-protect is a reset of the module's write tracking of the process: recorded first, and the scan made under
        // the tracking's lock (OutsideReset), then emitted once the lock is let go, so that a command further down the
        // pipeline may take it.
        if (WriteProtect)
            using (SoftDirty.Tracking.OutsideReset.Begin(source, Cancellation)) found = found.ToList();
        foreach (var region in found)
        {
            WriteObject(new PageScanRegion(source.ProcessId, region, MappingAt(byStart, region.Start)?.DisplayName, source.PageSize));
            regions++;
        }
        WriteVerbose($"Process {source.ProcessId}: {regions} matching region(s).");
    }

    /// <summary>Whether any mapping overlapping the spans carries VM_UFFD_WP ("uw"), so WP_MATCHING can arm something.</summary>
    private static bool AnyRegisteredForWriteProtect(IReadOnlyList<MemoryMapping> mappings, List<PageSpan> spans) =>
        mappings.Any(m => m.VmFlags.Contains(UffdWriteProtectVmFlag) && spans.Any(s => s.Start < m.End && m.Start < s.End));

    /// <summary>The smaps VmFlags mnemonic of VM_UFFD_WP.</summary>
    private const string UffdWriteProtectVmFlag = "uw";

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
