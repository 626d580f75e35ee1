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
public sealed class GetSoftDirtySupportCommand : SoftDirtyCmdlet
{
    private const string KernelSet = "Kernel";

    /// <summary>Probe again instead of using the answer cached for this session.</summary>
    [Parameter(ParameterSetName = KernelSet)]
    public SwitchParameter Refresh { get; set; }

    /// <summary>What an emulated process's kernel profile supports, instead of this kernel.</summary>
    [Parameter(ParameterSetName = EmulatorSet, Mandatory = true, ValueFromPipeline = true)]
    public EmulatedProcess? Emulator { get; set; }

    protected override void ProcessRecord()
    {
        if (Emulator is not null) WriteObject(Emulator.Features);
    }

    protected override void EndProcessing()
    {
        if (ParameterSetName == EmulatorSet) return;
        EnsureLinux();
        try { WriteObject(Refresh ? KernelProbe.Refresh() : KernelProbe.Current); }
        catch (SoftDirtyException ex) { ThrowTerminatingError(ToErrorRecord(ex)); }
    }
}
