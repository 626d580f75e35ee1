using System.Collections.Generic;
using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the /proc cmdlets that read pages of a range (Get-PageMap, Search-PageMap): what selects the pages
/// (-Address with -Length, or -Mapping, or every mapping) and the warning that soft-dirty bits stay clear.
/// </summary>
public abstract class PageRangeCmdlet : ProcessTargetCmdlet
{
    /// <summary>Start of the range (page-aligned). A piped mapping's or range's Start binds here, so each piped object selects its own range.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Start")]
    [ArgumentCompleter(typeof(AddressCompleter))]
    public ulong? Address { get; set; }

    /// <summary>Bytes from -Address; default one page. A piped object's Size (a mapping or range) binds here.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Size")]
    public ulong? Length { get; set; }

    /// <summary>Mappings, by path or pseudo-name ('[heap]'), with wildcards; a file name alone also matches.</summary>
    [Parameter]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(MappingNameCompleter))]
    public string[]? Mapping { get; set; }

    /// <summary>Checks the range parameters, then reads the pages of each target.</summary>
    protected sealed override void ProcessRecord()
    {
        CheckRangeParameters();
        ForEachSource(Targets(), ReadRange);
    }

    /// <summary>The cmdlet's work on one target: select its spans (<see cref="SelectSpans"/>) and read them.</summary>
    private protected abstract void ReadRange(IPageSource source);

    /// <summary>-Length needs -Address, and -Address excludes -Mapping: a terminating InvalidArgument otherwise.</summary>
    private void CheckRangeParameters()
    {
        if (Address is null && Length is not null)
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument, "-Length needs -Address.", Length)));
        if (Address is not null && Mapping is not null)
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument, "Give either -Address with -Length or -Mapping, not both.", Mapping)));
    }

    /// <summary>
    /// The spans -Address/-Length or -Mapping select (every mapping without either). An address range outside
    /// every mapping throws InvalidArgument; no matching name writes MappingNotFound and returns null. With
    /// <paramref name="roundLength"/> the length is rounded up to a page, as PAGEMAP_SCAN rounds its end;
    /// else it must be page-aligned and pages outside any mapping are skipped with a warning.
    /// </summary>
    private protected List<PageSpan>? SelectSpans(IPageSource source, IReadOnlyList<MemoryMapping> mappings, bool roundLength = false)
    {
        ulong pageSize = (ulong)source.PageSize;
        if (Address is { } start)
        {
            ulong len = Length ?? pageSize;
            RangeCheck.CheckNoWrap(start, len, roundLength ? pageSize : 1);
            if (roundLength) len = (len + pageSize - 1) / pageSize * pageSize;
            var spans = PageMapReader.SpansOfRange(mappings, start, len, source.PageSize, out var unmapped);
            if (spans.Count == 0)
                throw new EngineException(EngineError.InvalidArgument,
                    $"0x{start:x}-0x{start + len:x} lies outside every mapping of process {source.ProcessId} ({source.Name}); {MappingHint.For(source)}.", start);
            if (unmapped != 0 && !roundLength)
                WriteWarning($"{unmapped / pageSize} page(s) of 0x{start:x}-0x{start + len:x} lie outside any mapping of process {source.ProcessId} and are skipped.");
            return spans;
        }
        if (Mapping is { Length: > 0 } mapping)
        {
            var spans = PageMapReader.SpansOf(mappings, new MappingSelector(mapping).IsMatch);
            if (spans.Count == 0)
            {
                WriteError(EngineError.MappingNotFound,
                    $"No mapping of process {source.ProcessId} ({source.Name}) matches '{string.Join("', '", mapping)}'; {MappingHint.For(source)}.", source.ProcessId);
                return null;
            }
            return spans;
        }
        if (mappings.Count == 0)
        {
            WriteError(EngineError.MappingNotFound,
                $"Process {source.ProcessId} ({source.Name}) has no user address space (a kernel thread, or a zombie): there are no pages to read.", source.ProcessId);
            return null;
        }
        return PageMapReader.SpansOf(mappings);
    }

    private static readonly HashSet<string> _warnedNoSoftDirty = new();

    /// <summary>
    /// Warns, once per session and kernel, that soft-dirty bits stay clear on <paramref name="source"/>'s kernel
    /// (what about is the cmdlet's part of the sentence). Returns whether soft-dirty is supported.
    /// </summary>
    private protected bool WarnIfNoSoftDirty(IPageSource source, string what)
    {
        var f = source.Features;
        if (f.SoftDirty) return true;
        string kernel = (f.Emulated ? "emulated " : "") + f.KernelRelease;
        bool first;
        lock (_warnedNoSoftDirty) first = _warnedNoSoftDirty.Add(kernel);
        if (first)
            WriteWarning($"Kernel {kernel} has no soft-dirty bits: {what} is always false here (once per session; see Get-SoftDirtySupport).");
        else if (VerboseEnabled)
            WriteVerbose($"Kernel {kernel} has no soft-dirty bits: {what} is always false here.");
        return false;
    }
}
