using System.Management.Automation;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets that act on a real process (-Id) or an emulated one (-Emulator): of
/// <see cref="ProcessTargetCmdlet"/> (the /proc cmdlets) and <see cref="WorkflowCmdlet"/>. It owns the hidden
/// -PipedEmulator of the Id set.
/// </summary>
/// <remarks>
/// Why these cmdlets default to the Id set, and why the Id set holds a hidden -PipedEmulator: a bare call
/// must prompt for -Id (a real process is the common target), so Id is the default set
/// (DefaultParameterSetName = IdSet on each cmdlet). But PowerShell binds pipeline input to the default set
/// first, where a piped EmulatedProcess's ProcessId property would bind -Id by property name and the cmdlet
/// would read the real process with that pid. <see cref="PipedEmulator"/> takes the EmulatedProcess by value
/// in the Id set (by-value binding comes before by-property-name binding), so <c>$e | Get-PageMap</c> reads
/// the emulated process; -Emulator names it explicitly and is its own set. Two cmdlets with -Id and -Emulator
/// do not derive from here: Save-MemoryImage defaults to the Emulator set, so a piped EmulatedProcess binds
/// there by value without a -PipedEmulator, and Get-SoftDirtySupport defaults to its Kernel set.
/// </remarks>
public abstract class ProcessOrEmulatorCmdlet : EmulatorTargetCmdlet
{
    /// <summary>An emulated process piped in ($e | Get-PageMap); the same as -Emulator.</summary>
    [Parameter(ParameterSetName = IdSet, ValueFromPipeline = true, DontShow = true)]
    public EmulatedProcess? PipedEmulator { get; set; }

    /// <summary>The emulated process of this record: -Emulator, or one that came down the pipeline.</summary>
    protected override EmulatedProcess? EmulatorOfRecord =>
        ParameterSetName == EmulatorSet ? Emulator : PipedEmulator;

    /// <inheritdoc/>
    /// <remarks>
    /// -Id given beside a piped EmulatedProcess ($e | Get-PageMap -Id 42) keeps the Id set, where the object still binds
    /// -PipedEmulator by value: one of the two would be dropped without a word, so the record is refused, as
    /// Save-MemoryImage refuses it (where the object binds nothing but -PipedObject).
    /// </remarks>
    private protected override EngineException? RefusedEmulator() =>
        PipedEmulator is { } piped && ParameterSetName != EmulatorSet && Given("Id")
            ? new EngineException(EngineError.InvalidArgument,
                $"The piped {piped.GetType().FullName} and -Id {GivenId} are both given (-Id on the command line or by $PSDefaultParameterValues): the command would act on only one of them. " +
                "Pipe the emulated process without -Id, or give -Id without piping.", null)
            : null;

    /// <summary>The -Id of this cmdlet as text, for messages.</summary>
    private protected abstract string GivenId { get; }
}
