using System.Management.Automation;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the workflow cmdlets that follow one process over time (Watch-DirtyPage, Invoke-PreCopyMigration):
/// one real process (-Id) or an emulated one that runs a workload in emulated time (see
/// <see cref="ProcessOrEmulatorCmdlet"/> for the default set), and the mappings to follow.
/// </summary>
public abstract class WorkflowCmdlet : ProcessOrEmulatorCmdlet
{
    /// <summary>The process id of the real process.</summary>
    [Parameter(ParameterSetName = IdSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    [ProcessId]
    public int Id { get; set; }

    /// <summary>What the emulated process does meanwhile: @{ Address; Length; Pattern; AccessesPerSecond; WriteRatio; Seed } (accesses per emulated second).</summary>
    [Parameter(ParameterSetName = EmulatorSet)]
    [WorkloadSpec]
    public EmulatedWorkloadSpec? Workload { get; set; }

    /// <summary>Follow only these mappings (names or paths, wildcards).</summary>
    [Parameter]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MappingNameCompleter))]
    public string[]? Mapping { get; set; }

    /// <inheritdoc/>
    private protected override string GivenId => Id.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The one target of this record: the emulated process running -Workload, or the real process.</summary>
    private protected IPageSource? Target() => OneTarget(Id, Workload);
}
