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
public sealed class ClearSoftDirtyCommand : ClearRefsCmdlet
{
    /// <inheritdoc/>
    protected override void ProcessRecord() => ClearRefs(ClearRefsType.SoftDirty);
}
