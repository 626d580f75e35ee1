using System;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets that act on an emulated process as system calls would: the process comes from the
/// pipeline, and a failing call becomes a non-terminating error whose ErrorId names the errno
/// (InvalidArgument, EmulatorNotMapped, SegmentationFault) while nothing changes.
/// </summary>
public abstract class EmulatorCmdlet : EngineCmdlet
{
    /// <summary>The emulated process (from New-EmulatedProcess).</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    public EmulatedProcess Emulator { get; set; } = null!;

    /// <summary>Runs one emulated call, turning its failure into an error record.</summary>
    protected void Call(string target, string action, Action call)
    {
        if (!ShouldProcess(target, action)) return;
        try { call(); }
        catch (EngineException ex) { WriteError(ToErrorRecord(ex)); }
        catch (OperationCanceledException) when (Cancellation.IsCancellationRequested) { throw new PipelineStoppedException(); }
    }

    /// <summary>The target of a ShouldProcess message: the emulated process and the range.</summary>
    protected string Describe(ulong address, ulong length) =>
        $"emulated process {Emulator.ProcessId} ({Emulator.Name}) 0x{address:x}-0x{address + length:x}";
}
