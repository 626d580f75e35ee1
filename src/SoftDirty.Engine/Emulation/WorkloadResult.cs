using System;

namespace SoftDirty.Emulation;

/// <summary>What a workload did and what it cost.</summary>
public sealed class WorkloadResult
{
    public long Accesses { get; init; }
    public long Reads { get; init; }
    public long Writes { get; init; }
    /// <summary>The faults the workload took, by kind.</summary>
    public FaultCounts Faults { get; init; }
    public TimeSpan Elapsed { get; init; }
    public double AccessesPerSecond => Elapsed.TotalSeconds > 0 ? Accesses / Elapsed.TotalSeconds : 0;
    public override string ToString() => $"{Accesses} accesses ({Reads} reads, {Writes} writes), {Faults.Total} faults, {Elapsed.TotalMilliseconds:F1} ms";
}
