using System.Management.Automation;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>
/// Get-SoftDirtySupport: what this kernel really does, measured as CRIU measures it (map a page, clear,
/// write, read bit 55), with a reason for every feature that is missing.
/// </summary>
[Cmdlet(VerbsCommon.Get, "SoftDirtySupport")]
[OutputType(typeof(KernelFeatures))]
public sealed class GetSoftDirtySupportCommand : SoftDirtyCmdlet
{
    /// <summary>Probe again instead of using the answer cached for this session.</summary>
    [Parameter]
    public SwitchParameter Refresh { get; set; }

    protected override void EndProcessing()
    {
        EnsureLinux();
        try { WriteObject(Refresh ? KernelProbe.Refresh() : KernelProbe.Current); }
        catch (SoftDirtyException ex) { ThrowTerminatingError(ToErrorRecord(ex)); }
    }
}
