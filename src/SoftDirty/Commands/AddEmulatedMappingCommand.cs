using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>Add-EmulatedMapping: mmap in an emulated process; returns the new mapping (its Start is the address).</summary>
[Cmdlet(VerbsCommon.Add, "EmulatedMapping", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(MemoryMapping))]
public sealed class AddEmulatedMappingCommand : EmulatorCmdlet
{
    /// <summary>Bytes to map (rounded up to pages).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Length { get; set; }

    /// <summary>Where to map: a hint, or the exact place with -Fixed.</summary>
    [Parameter]
    public ulong? Address { get; set; }

    /// <summary>MAP_FIXED: map exactly at -Address, replacing what is there.</summary>
    [Parameter]
    public SwitchParameter Fixed { get; set; }

    /// <summary>Read, Write, Execute or None (default Read, Write).</summary>
    [Parameter]
    public Protection Protection { get; set; } = Protection.Read | Protection.Write;

    /// <summary>MAP_SHARED instead of MAP_PRIVATE.</summary>
    [Parameter]
    public SwitchParameter Shared { get; set; }

    /// <summary>Map this (emulated) file instead of anonymous memory.</summary>
    [Parameter]
    public string? Path { get; set; }

    /// <summary>The file offset of a file mapping (page-aligned).</summary>
    [Parameter]
    public ulong Offset { get; set; }

    /// <summary>MADV_HUGEPAGE: aligned 2 MiB of private anonymous memory fault in as one transparent huge page.</summary>
    [Parameter]
    public SwitchParameter HugePage { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        if (Fixed && Address is null)
        {
            WriteError(EngineError.InvalidArgument, "-Fixed needs -Address.", Length);
            return;
        }
        MemoryMapping? mapping = null;
        Call(Describe(Address ?? 0, Length), "mmap", () =>
            mapping = Emulator.Mmap(Address, Length, Protection, (Shared ? MmapFlags.Shared : 0) | (Fixed ? MmapFlags.Fixed : 0) | (HugePage ? MmapFlags.HugePage : 0), Path, Offset));
        if (mapping is not null) WriteObject(mapping);
    }
}
