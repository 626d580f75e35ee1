using System.Management.Automation;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets that write clear_refs (Clear-SoftDirty, Clear-PageReference): the one place that does
/// it for a cmdlet (support check, ShouldProcess, write), and -PassThru.
/// </summary>
public abstract class ClearRefsCmdlet : ProcessTargetCmdlet
{
    /// <summary>Emit the process after clearing.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Writes <paramref name="type"/> to the clear_refs of each target of this record.</summary>
    protected void ClearRefs(ClearRefsType type) => ForEachSource(Targets(), source =>
    {
        if (type == ClearRefsType.SoftDirty && !source.Features.SoftDirty)
            throw new EngineException(EngineError.SoftDirtyNotSupported,
                $"Not clearing soft-dirty bits of process {source.ProcessId} ({source.Name}): {source.Features.SoftDirtyReason}", source.ProcessId);
        // -PassThru emits only a process cleared: -WhatIf or a -Confirm answered No emitted it as if it had been (round 32).
        if (!ShouldProcess($"process {source.ProcessId} ({source.Name})", $"Write {(int)type} ({type}) to clear_refs")) return;
        source.ClearRefs(type, Cancellation);
        if (PassThru) WriteObject(PassThruObject(source));
    });
}
