using System;
using System.Diagnostics;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Injection;

namespace SoftDirty.Commands;

/// <summary>
/// Disable-WriteTracking: ends the write tracking Enable-WriteTracking (or a memory image chain) left in a
/// process: injects UFFDIO_UNREGISTER of its registered mappings and close() of the userfaultfd.
/// </summary>
[Cmdlet(VerbsLifecycle.Disable, "WriteTracking", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(Process))]
public sealed class DisableWriteTrackingCommand : PipedIdCmdlet
{
    /// <summary>The ids of the processes to stop tracking.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    [ProcessId]
    public int[] Id { get; set; } = Array.Empty<int>();

    /// <summary>Emit the process after disabling.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() => ForEachSource(Targets(Id, null), Disable);

    private void Disable(IPageSource source)
    {
        var proc = (ProcPageSource)source;
        var state = RemoteWriteProtect.Require(proc.ProcessId);
        if (!ShouldProcess($"process {proc.ProcessId} ({proc.Name})", $"Unregister its mappings and close userfaultfd {state.Descriptor}")) return;
        using (WriteTrackingStore.Lock(proc.ProcessId, Cancellation)) // not while another command checks, scans or injects
        {
            RemoteWriteProtect.Require(proc.ProcessId);
            RemoteWriteProtect.Disable(proc, RemoteWriteProtect.RegisteredRanges(proc), Cancellation);
        }
        if (PassThru) WriteObject(PassThruObject(source));
    }
}
