using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>Remove-EmulatedMapping: munmap a range of an emulated process.</summary>
[Cmdlet(VerbsCommon.Remove, "EmulatedMapping", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
public sealed class RemoveEmulatedMappingCommand : EmulatorCmdlet
{
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    [Parameter(Mandatory = true, Position = 1)]
    public ulong Length { get; set; }

    protected override void ProcessRecord() =>
        Call(Describe(Address, Length), "munmap", () => Emulator.Munmap(Address, Length));
}
