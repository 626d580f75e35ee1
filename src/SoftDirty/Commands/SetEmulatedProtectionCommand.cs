using System.Management.Automation;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>Set-EmulatedProtection: mprotect a range of an emulated process.</summary>
[Cmdlet(VerbsCommon.Set, "EmulatedProtection", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
public sealed class SetEmulatedProtectionCommand : EmulatorCmdlet
{
    /// <summary>The start of the range (page-aligned).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    /// <summary>The length in bytes, rounded up to pages.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    public ulong Length { get; set; }

    /// <summary>The new protection.</summary>
    [Parameter(Mandatory = true, Position = 2)]
    public Protection Protection { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() =>
        Call(Describe(Address, Length), $"mprotect {Protection}", () => Emulator.Mprotect(Address, Length, Protection));
}
