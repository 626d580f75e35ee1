using System;
using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// Invoke-EmulatedWorkload: many reads and writes over a range in a pattern, or the replay of an access
/// trace (CSV lines "read|write,address[,length]"); returns what it did and the faults it took, so the
/// cost of tracking shows.
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "EmulatedWorkload", DefaultParameterSetName = PatternSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(WorkloadResult))]
public sealed class InvokeEmulatedWorkloadCommand : EmulatorCmdlet
{
    private const string PatternSet = "Pattern";
    private const string TraceSet = "Trace";

    /// <summary>The start of the range the pattern draws pages from.</summary>
    [Parameter(ParameterSetName = PatternSet, Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    /// <summary>The length of the range in bytes.</summary>
    [Parameter(ParameterSetName = PatternSet, Mandatory = true, Position = 1)]
    public ulong Length { get; set; }

    /// <summary>Sequential, Random, HotSet (90% of accesses to 10% of pages) or Zipf.</summary>
    [Parameter(ParameterSetName = PatternSet)]
    public WorkloadPattern Pattern { get; set; } = WorkloadPattern.Random;

    /// <summary>Number of accesses.</summary>
    [Parameter(ParameterSetName = PatternSet)]
    [ValidateRange(0, long.MaxValue)]
    public long Count { get; set; } = 100_000;

    /// <summary>Fraction of accesses that write (0 to 1).</summary>
    [Parameter(ParameterSetName = PatternSet)]
    [ValidateRange(0.0, 1.0)]
    public double WriteRatio { get; set; } = 0.3;

    /// <summary>Seed of the access sequence: the same seed, the same accesses.</summary>
    [Parameter(ParameterSetName = PatternSet)]
    public int Seed { get; set; } = 1;

    /// <summary>A CSV access trace to replay: lines "read|write,address[,length]" (addresses in decimal or 0x hex).</summary>
    [Parameter(ParameterSetName = TraceSet, Mandatory = true)]
    public string TracePath { get; set; } = string.Empty;

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        WorkloadResult? result = null;
        if (ParameterSetName == TraceSet)
        {
            var path = FileSystemPath(TracePath);
            var trace = OpenTrace(path);
            if (trace is null) return;
            using (trace)
                Call($"emulated process {Emulator.ProcessId} ({Emulator.Name})", $"replay {path}", () =>
                {
                    try { result = EmulatedWorkload.Replay(Emulator, trace.Lines(Cancellation)); }
                    catch (FormatException ex) { throw new EngineException(EngineError.InvalidArgument, $"{path}: {ex.Message}", path, inner: ex); }
                });
        }
        else
        {
            Call(Describe(Address, Length), $"{Count} {Pattern} accesses", () =>
                result = EmulatedWorkload.Run(Emulator, Address, Length, Pattern, Count, WriteRatio, Seed, Cancellation));
        }
        if (result is not null) WriteObject(result);
    }

    /// <summary>Opens the trace (<see cref="TraceFile"/>: a regular file or a pipe, never a hang), or writes why not: TraceNotFound (missing), PermissionDenied (unreadable), InvalidArgument (a directory, device or socket), TraceReadError or ResourceLimit (another failure).</summary>
    private TraceFile? OpenTrace(string path)
    {
        try { return TraceFile.Open(path); }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            WriteError(new ErrorRecord(new FileNotFoundException($"No trace file '{path}'.", path), "TraceNotFound", ErrorCategory.ObjectNotFound, path));
        }
        catch (UnauthorizedAccessException ex) { WriteError(EngineError.PermissionDenied, $"The trace {path} cannot be read: {ex.Message}", path); }
        catch (EngineException ex) { WriteError(ToErrorRecord(ex)); }
        return null;
    }
}
