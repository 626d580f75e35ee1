using System.Management.Automation;
using SoftDirty.Emulation;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the workflow cmdlets that follow one process over time (Watch-DirtyPage, Invoke-PreCopyMigration):
/// one real process (-Id) or an emulated one that runs a workload in emulated time (see
/// <see cref="ProcessOrEmulatorCmdlet"/> for the default set). -Emulator and -Workload stay on each cmdlet:
/// PowerShell lists a base class's parameters after the cmdlet's own, and their place in the syntax is documented.
/// </summary>
public abstract class WorkflowCmdlet : ProcessOrEmulatorCmdlet
{
    /// <summary>The process id of the real process.</summary>
    [Parameter(ParameterSetName = IdSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    public int Id { get; set; }

    /// <summary>The one target of this record: <paramref name="emulator"/> running <paramref name="workload"/>, or the real process.</summary>
    private protected IPageSource? Target(EmulatedProcess? emulator, EmulatedWorkloadSpec? workload) => WorkflowTarget(Id, emulator, workload);
}
