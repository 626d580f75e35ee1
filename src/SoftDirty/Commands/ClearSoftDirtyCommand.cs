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
public sealed class ClearSoftDirtyCommand : ProcessOrEmulatorCmdlet
{
    [Parameter(ParameterSetName = IdSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    public int[] Id { get; set; } = Array.Empty<int>();

    /// <summary>An emulated process (New-EmulatedProcess) instead of a real one.</summary>
    [Parameter(ParameterSetName = EmulatorSet, Mandatory = true, ValueFromPipeline = true)]
    public EmulatedProcess? Emulator { get; set; }

    /// <summary>Emit the process after clearing.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForEachSource(Targets(Id, Emulator), Clear);

    private void Clear(IPageSource source)
    {
        ClearRefsAction.Run(this, source, ClearRefsType.SoftDirty);
        if (PassThru) WriteObject(PassThruObject(source));
    }

    internal static object PassThruObject(IPageSource source)
    {
        if (source is BorrowedSource borrowed) return borrowed.Inner;
        if (source is ProcPageSource)
        {
            try { return Process.GetProcessById(source.ProcessId); }
            catch (ArgumentException) { throw new SoftDirtyException(SoftDirtyError.ProcessExited, $"Process {source.ProcessId} exited.", source.ProcessId); }
        }
        return source;
    }
}

/// <summary>The one place that writes clear_refs for a cmdlet: support check, ShouldProcess, write.</summary>
internal static class ClearRefsAction
{
    public static bool Run(SoftDirtyCmdlet cmdlet, IPageSource source, ClearRefsType type)
    {
        if (type == ClearRefsType.SoftDirty && !source.Features.SoftDirty)
            throw new SoftDirtyException(SoftDirtyError.SoftDirtyNotSupported,
                $"Not clearing soft-dirty bits of process {source.ProcessId} ({source.Name}): {source.Features.SoftDirtyReason}", source.ProcessId);
        if (!cmdlet.ShouldProcess($"process {source.ProcessId} ({source.Name})", $"Write {(int)type} ({type}) to clear_refs"))
            return false;
        source.ClearRefs(type);
        return true;
    }
}
