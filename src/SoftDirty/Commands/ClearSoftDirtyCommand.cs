using System;
using System.Diagnostics;
using System.Linq;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// Clear-SoftDirty: writes "4" to /proc/PID/clear_refs, so that from now on the pages the process writes
/// read soft-dirty. Refuses, with SoftDirtyNotSupported, on a kernel where bit 55 would never be set.
/// </summary>
[Cmdlet(VerbsCommon.Clear, "SoftDirty", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = IdSet)]
[OutputType(typeof(Process), typeof(EmulatedProcess))]
public sealed class ClearSoftDirtyCommand : ProcessTargetCmdlet
{
    /// <summary>Emit the process after clearing.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() => ForEachSource(Targets(), Clear);

    private void Clear(IPageSource source)
    {
        ClearRefsAction.Run(this, source, ClearRefsType.SoftDirty);
        if (PassThru) WriteObject(PassThruObject(source));
    }

}
