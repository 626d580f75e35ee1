using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Write-EmulatedMemory: the emulated process writes every page of a byte range, taking write faults as
/// the kernel would (a write to a clean, write-protected page after a clear sets soft-dirty). With -Value
/// each page's bytes become that value, so writing the same value again changes no content.
/// </summary>
[Cmdlet(VerbsCommunications.Write, "EmulatedMemory", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
public sealed class WriteEmulatedMemoryCommand : EmulatorCmdlet
{
    /// <summary>The first byte to write.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    /// <summary>Bytes from -Address (default 1: the page holding the address).</summary>
    [Parameter(Position = 1)]
    public ulong Length { get; set; } = 1;

    /// <summary>The byte to fill the pages with; without it each write changes the page's content.</summary>
    [Parameter]
    public byte? Value { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() =>
        Call(Describe(Address, Length), "write", () => Emulator.Write(Address, Length, Value));
}
