using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>Get-MemoryMapping: one object per VMA from /proc/PID/smaps, with counters and VmFlags.</summary>
[Cmdlet(VerbsCommon.Get, "MemoryMapping", DefaultParameterSetName = IdSet)]
[OutputType(typeof(MemoryMapping))]
public sealed class GetMemoryMappingCommand : ProcessTargetCmdlet
{
    /// <summary>Only mappings whose path or pseudo-name matches (wildcards); a file name alone also matches.</summary>
    [Parameter]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(MappingNameCompleter))]
    public string[]? Mapping { get; set; }

    // -Mapping/-Address stay here, not PageRangeCmdlet's: -Address selects the mapping that contains it (no -Length), binding nothing piped.
    /// <summary>Only the mapping that contains this address.</summary>
    [Parameter]
    [ArgumentCompleter(typeof(AddressCompleter))]
    public ulong? Address { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() => ForEachSource(Targets(), Emit);

    private void Emit(IPageSource source)
    {
        var selector = Mapping is null ? null : new MappingSelector(Mapping);
        var mappings = source.ReadMappings(withCounters: true);
        int emitted = 0;
        foreach (var m in mappings)
        {
            if (Address is { } a && !m.Contains(a)) continue;
            if (selector is not null && !selector.IsMatch(m)) continue;
            WriteObject(m);
            emitted++;
        }
        WriteVerbose($"Process {source.ProcessId} ({source.Name}): {emitted} of {mappings.Count} mapping(s) from {(source.Features.Emulated ? "the emulator" : $"/proc/{source.ProcessId}/smaps")}" +
            (Address is { } at ? $" containing 0x{at:x}" : "") + (Mapping is null ? "" : $" matching '{string.Join("', '", Mapping)}'") + ".");
    }
}
