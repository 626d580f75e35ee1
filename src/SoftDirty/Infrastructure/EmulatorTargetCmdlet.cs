using System.Management.Automation;
using SoftDirty.Emulation;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets that act on a real process or an emulated one (-Emulator, its own set): the one
/// -Emulator of <see cref="ProcessOrEmulatorCmdlet"/>'s cmdlets and Save-MemoryImage. -Id is declared below,
/// where its type is known (one pid or several).
/// </summary>
public abstract class EmulatorTargetCmdlet : PipedIdCmdlet
{
    /// <summary>An emulated process (New-EmulatedProcess) instead of a real one.</summary>
    [Parameter(ParameterSetName = EmulatorSet, Mandatory = true, ValueFromPipeline = true)]
    public EmulatedProcess? Emulator { get; set; }

    /// <summary>The emulated process of this record (<see cref="ProcessOrEmulatorCmdlet"/> adds one piped into the Id set).</summary>
    protected virtual EmulatedProcess? EmulatorOfRecord => Emulator;

    /// <summary>Why this record's emulated process and real -Id cannot both be taken; null where they can (<see cref="ProcessOrEmulatorCmdlet"/>).</summary>
    private protected virtual EngineException? RefusedEmulator() => null;

    /// <summary>Writes <see cref="RefusedEmulator"/>'s error and answers true when this record is refused.</summary>
    private protected bool WroteRefusedEmulator()
    {
        if (RefusedEmulator() is not { } refused) return false;
        WriteError(ToErrorRecord(refused));
        return true;
    }

    /// <summary>
    /// The one target of a cmdlet that follows one process: the emulated process wrapped with
    /// <paramref name="workload"/> (so samples and rounds advance emulated time), or the real process <paramref name="id"/>.
    /// </summary>
    private protected IPageSource? OneTarget(int id, EmulatedWorkloadSpec? workload)
    {
        if (WroteRefusedEmulator()) return null;
        var emulator = EmulatorOfRecord;
        if (emulator is null) return OpenProcess(id);
        try { return new EmulatedTarget(emulator, workload); }
        catch (EngineException ex) { WriteError(ToErrorRecord(ex)); return null; }
    }
}
