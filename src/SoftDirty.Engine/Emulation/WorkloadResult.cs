using System;

namespace SoftDirty.Emulation;

/// <summary>What a workload did and what it cost.</summary>
public sealed class WorkloadResult
{
    internal WorkloadResult() { }

    /// <summary>Accesses made (reads plus writes).</summary>
    public long Accesses { get; internal init; }
    /// <summary>Accesses that read.</summary>
    public long Reads { get; internal init; }
    /// <summary>Accesses that wrote.</summary>
    public long Writes { get; internal init; }
    /// <summary>The faults the workload took, by kind.</summary>
    public FaultCounts Faults { get; internal init; }
    /// <summary>Wall-clock time the accesses took on this machine.</summary>
    public TimeSpan Elapsed { get; internal init; }
    /// <summary>Accesses per second of <see cref="Elapsed"/> (0 when too fast to time).</summary>
    public double AccessesPerSecond => Elapsed.TotalSeconds > 0 ? Accesses / Elapsed.TotalSeconds : 0;
    /// <summary>A one-line summary: accesses, faults, time.</summary>
    public override string ToString() => $"{Accesses} accesses ({Reads} reads, {Writes} writes), {Faults.Total} faults, {Elapsed.TotalMilliseconds:F1} ms";
}
