using System.Management.Automation;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>Copy-EmulatedProcess: fork. The child copies soft-dirty bits and VMA flags; private pages become copy-on-write in both.</summary>
[Cmdlet(VerbsCommon.Copy, "EmulatedProcess", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(EmulatedProcess))]
public sealed class CopyEmulatedProcessCommand : EmulatorCmdlet
{
    /// <summary>The child's name (default: the parent's).</summary>
    [Parameter(Position = 0)]
    public string? Name { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        EmulatedProcess? child = null;
        Call($"emulated process {Emulator.ProcessId} ({Emulator.Name})", "fork", () => child = Emulator.Fork(Name));
        if (child is not null) WriteObject(child);
    }
}
