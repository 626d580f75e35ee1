using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets whose -Id binds a piped object's Id, PID or ProcessId by property name: an Id that is not a pid
/// (a job's, a runspace's) never opens the process that has it, nor does the pid of a process on another computer
/// (<see cref="PipedProcessId"/>).
/// </summary>
public abstract class PipedIdCmdlet : PipedObjectCmdlet
{
    /// <inheritdoc/>
    private protected override EngineException? RefusedPipedId(int pid)
    {
        if (PipedObject is null) return null;
        if (Given("Id")) return Unused($"-Id {pid}");
        if (PipedProcessId.RemoteComputer(PipedObject) is { } computer) return PipedProcessId.RemoteRefusal(computer, pid);
        return PipedProcessId.ForeignKind(PipedObject) is { } kind ? PipedProcessId.Refusal(kind, pid) : null;
    }
}
