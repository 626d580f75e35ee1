using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// Get-SoftDirtySupport: what this kernel really does, measured as CRIU measures it (map a page, clear,
/// write, read bit 55), with a reason for every feature that is missing.
/// </summary>
[Cmdlet(VerbsCommon.Get, "SoftDirtySupport", DefaultParameterSetName = KernelSet)]
[OutputType(typeof(KernelFeatures))]
[OutputType(typeof(SoftDirty.Injection.WriteTrackingSupport), ParameterSetName = new[] { IdSet })]
public sealed class GetSoftDirtySupportCommand : PipedIdCmdlet
{
    private const string KernelSet = "Kernel";

    /// <summary>Probe again instead of using the answer cached for this session.</summary>
    [Parameter(ParameterSetName = KernelSet)]
    public SwitchParameter Refresh { get; set; }

    /// <summary>What an emulated process's kernel profile supports, instead of this kernel.</summary>
    [Parameter(ParameterSetName = EmulatorSet, Mandatory = true, ValueFromPipeline = true)]
    public EmulatedProcess? Emulator { get; set; }

    /// <summary>Whether these processes can be tracked by WriteProtect from outside (Enable-WriteTracking), and why not.</summary>
    [Parameter(ParameterSetName = IdSet, Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    [ProcessId]
    public int[] Id { get; set; } = System.Array.Empty<int>();

    /// <summary>The object this pipeline record came as (see <see cref="PipedObjectCmdlet"/>): not in the Kernel set, which takes no input.</summary>
    [Parameter(ParameterSetName = EmulatorSet, ValueFromPipeline = true, DontShow = true)]
    [Parameter(ParameterSetName = IdSet, ValueFromPipeline = true, DontShow = true)]
    public override PSObject? PipedObject { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        if (Emulator is not null) WriteObject(Emulator.Features);
        if (ParameterSetName == IdSet)
            ForEachSource(Targets(Id, null), s => WriteObject(SoftDirty.Injection.WriteTrackingSupport.For((ProcPageSource)s)));
    }

    /// <inheritdoc/>
    protected override void EndProcessing()
    {
        if (ParameterSetName != KernelSet) return;
        EnsureLinux();
        try { WriteObject(Refresh ? KernelProbe.Refresh(Cancellation) : KernelProbe.Get(Cancellation)); }
        catch (EngineException ex) { ThrowTerminatingError(ToErrorRecord(ex)); }
        catch (System.OperationCanceledException) when (Cancellation.IsCancellationRequested) { throw new PipelineStoppedException(); }
    }
}
