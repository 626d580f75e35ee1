using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Get-PageMap: the pagemap entries of a process's pages, one object per page (or per run of equal pages
/// with -AsRange). Filters run on the raw entries before anything is emitted.
/// </summary>
[Cmdlet(VerbsCommon.Get, "PageMap", DefaultParameterSetName = IdSet)]
[OutputType(typeof(PageEntry), typeof(PageRange))]
public sealed class GetPageMapCommand : PageRangeCmdlet
{
    /// <summary>Only soft-dirty pages (with -SoftDirty:$false, only clean ones).</summary>
    [Parameter]
    public SwitchParameter SoftDirty { get; set; }

    /// <summary>Only present pages (with -Present:$false, only absent ones).</summary>
    [Parameter]
    public SwitchParameter Present { get; set; }

    /// <summary>Only swapped pages (with -Swapped:$false, only others).</summary>
    [Parameter]
    public SwitchParameter Swapped { get; set; }

    /// <summary>Emit runs of contiguous pages with equal flags instead of single pages.</summary>
    [Parameter]
    public SwitchParameter AsRange { get; set; }

    /// <summary>How entries are found: Auto, Pread, or PagemapScan (6.7+).</summary>
    [Parameter]
    public PageReadMethod ReadMethod { get; set; } = PageReadMethod.Auto;

    private PageFilter BuildFilter()
    {
        var filter = new PageFilter();
        if (MyInvocation.BoundParameters.ContainsKey(nameof(SoftDirty))) filter = filter.Require(PagemapFlags.SoftDirty, SoftDirty.IsPresent);
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Present))) filter = filter.Require(PagemapFlags.Present, Present.IsPresent);
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Swapped))) filter = filter.Require(PagemapFlags.Swapped, Swapped.IsPresent);
        return filter;
    }

    /// <inheritdoc/>
    private protected override void ReadRange(IPageSource source)
    {
        WarnIfNoSoftDirty(source, "the SoftDirty property");
        var mappings = source.ReadMappings(withCounters: false);
        var spans = SelectSpans(source, mappings);
        if (spans is null) return;
        var filter = BuildFilter();
        // A span read again after its mapping changed takes only mappings -Mapping names.
        var reader = new PageMapReader(source) { Selector = Address is null && Mapping is { Length: > 0 } names ? new MappingSelector(names).IsMatch : null };
        ulong total = 0;
        foreach (var s in spans) total += (s.End - s.Start) / (ulong)source.PageSize;
        var method = reader.Resolve(ReadMethod, filter, total, out var why);
        if (VerboseEnabled)
            WriteVerbose($"Process {source.ProcessId} ({source.Name}): {spans.Count} span(s) of {mappings.Count} mapping(s), {total:N0} pages, filter {filter}; " +
                $"read method {method}{(ReadMethod == PageReadMethod.Auto ? " (Auto: " + why + ")" : "")}.");
        var progress = new Progress(this, $"Reading the page map of {source.Name} ({source.ProcessId})", $"{total:N0} pages");
        reader.Progress = done => progress.Report(done, total, Progress.PagesStatus);

        int pid = source.ProcessId;
        ulong emitted = 0;
        if (AsRange)
        {
            // Ranges are built from the raw chunks: the cost per page is a vector compare, an object per range.
            foreach (var range in reader.ReadRanges(spans, filter, method, Cancellation)) { WriteObject(range); emitted++; }
        }
        else
        {
            // Mapping names are shared strings: one per VMA, not one per page.
            foreach (var batch in reader.ReadBatches(spans, filter, method, Cancellation))
                foreach (ref readonly var hit in batch.Span)
                {
                    WriteObject(new PageEntry(pid, hit.Address, hit.Entry, hit.Mapping?.DisplayName, source.PageSize));
                    emitted++;
                }
        }
        progress.Complete();
        if (VerboseEnabled) WriteVerbose($"Process {pid}: {emitted:N0} {(AsRange ? "range(s)" : "page(s)")} of {total:N0} pages read.");
    }

}
