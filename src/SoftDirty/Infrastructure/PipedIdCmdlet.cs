using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets whose -Id binds a piped object's Id, PID or ProcessId by property name: an Id that is not a pid
/// (a job's, a runspace's) never opens the process that has it (<see cref="PipedProcessId"/>).
/// </summary>
public abstract class PipedIdCmdlet : PipedObjectCmdlet
{
    private bool _idGiven;

    /// <inheritdoc/>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        // Bound before any input arrives: -Id on the command line (or from $PSDefaultParameterValues), not from the pipeline.
        _idGiven = MyInvocation.BoundParameters.ContainsKey("Id");
    }

    /// <inheritdoc/>
    private protected override EngineException? RefusedPipedId(int pid) =>
        _idGiven || PipedObject is null || PipedProcessId.ForeignKind(PipedObject) is not { } kind ? null : PipedProcessId.Refusal(kind, pid);
}
