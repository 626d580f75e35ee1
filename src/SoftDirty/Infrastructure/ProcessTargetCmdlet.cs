using System;
using System.Collections.Generic;
using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// The process-target base of the /proc cmdlets that take one or more real processes (-Id) or an emulated
/// one (-Emulator, or piped: see <see cref="ProcessOrEmulatorCmdlet"/> for the default set).
/// </summary>
public abstract class ProcessTargetCmdlet : ProcessOrEmulatorCmdlet
{
    /// <summary>The real processes, by pid.</summary>
    [Parameter(ParameterSetName = IdSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    [ProcessId]
    public int[] Id { get; set; } = Array.Empty<int>();

    /// <inheritdoc/>
    private protected override string GivenId => string.Join(", ", Id);

    /// <summary>The targets of this pipeline record: the emulated process, or each real pid.</summary>
    private protected IEnumerable<IPageSource?> Targets() =>
        WroteRefusedEmulator() ? Array.Empty<IPageSource?>() : Targets(Id, EmulatorOfRecord);
}
