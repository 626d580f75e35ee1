using System.Management.Automation;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets that take a real process (-Id, the default set, so that a bare call prompts for Id)
/// or an emulated one (-Emulator). PowerShell binds pipeline input to the default set first, where an
/// EmulatedProcess's ProcessId would bind -Id by property name; <see cref="PipedEmulator"/> catches the
/// emulated process by value before that happens, so <c>$e | Get-PageMap</c> reads the emulated process.
/// </summary>
public abstract class ProcessOrEmulatorCmdlet : SoftDirtyCmdlet
{
    /// <summary>An emulated process piped in ($e | Get-PageMap); the same as -Emulator.</summary>
    [Parameter(ParameterSetName = IdSet, ValueFromPipeline = true, DontShow = true)]
    public EmulatedProcess? PipedEmulator { get; set; }

    /// <summary>The emulated process of this record: -Emulator, or one that came down the pipeline.</summary>
    protected override EmulatedProcess? EmulatorOf(EmulatedProcess? emulator) =>
        ParameterSetName == EmulatorSet ? emulator : PipedEmulator;
}
