using System.Management.Automation;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>Move-EmulatedMapping: mremap a range to a fixed new place (MREMAP_MAYMOVE|MREMAP_FIXED); moved pages become soft-dirty.</summary>
[Cmdlet(VerbsCommon.Move, "EmulatedMapping", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(MemoryMapping))]
public sealed class MoveEmulatedMappingCommand : EmulatorCmdlet
{
    /// <summary>The start of the range to move (page-aligned).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    /// <summary>The bytes to move, rounded up to pages.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    public ulong Length { get; set; }

    /// <summary>Where the range goes (page-aligned, not overlapping the old range).</summary>
    [Parameter(Mandatory = true, Position = 2)]
    public ulong NewAddress { get; set; }

    /// <summary>The new size (default: the same).</summary>
    [Parameter]
    public ulong? NewLength { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        MemoryMapping? moved = null;
        Call(Describe(Address, Length), $"mremap to 0x{NewAddress:x}", () =>
            moved = Emulator.Mremap(Address, Length, NewAddress, NewLength ?? Length));
        if (moved is not null) WriteObject(moved);
    }
}
