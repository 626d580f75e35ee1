using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>Remove-EmulatedMapping: munmap a range of an emulated process.</summary>
[Cmdlet(VerbsCommon.Remove, "EmulatedMapping", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
public sealed class RemoveEmulatedMappingCommand : EmulatorCmdlet
{
    /// <summary>The start of the range (page-aligned).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    /// <summary>The length in bytes, rounded up to pages.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    public ulong Length { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() =>
        Call(Describe(Address, Length), "munmap", () => Emulator.Munmap(Address, Length));
}
