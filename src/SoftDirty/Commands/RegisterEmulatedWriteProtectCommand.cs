using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Register-EmulatedWriteProtect: userfaultfd async write-protect on a range of an emulated process
/// (UFFDIO_REGISTER MODE_WP with WP_ASYNC, then UFFDIO_WRITEPROTECT). Writes then show as the Written
/// category of Search-PageMap, which -WriteProtect re-arms: write tracking without soft-dirty.
/// </summary>
[Cmdlet(VerbsLifecycle.Register, "EmulatedWriteProtect", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
public sealed class RegisterEmulatedWriteProtectCommand : EmulatorCmdlet
{
    /// <summary>The start of the range (page-aligned).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    /// <summary>The length in bytes, rounded up to pages.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    public ulong Length { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() =>
        Call(Describe(Address, Length), "register for userfaultfd async write-protect", () => Emulator.RegisterUffdWriteProtectAsync(Address, Length));
}
