using SoftDirty.Emulation;

namespace SoftDirty.Workflows;

/// <summary>What an emulated process does between samples and rounds: a workload over a range, in accesses per emulated second.</summary>
public sealed class EmulatedWorkloadSpec
{
    /// <summary>The first address the workload touches.</summary>
    public ulong Address { get; init; }
    /// <summary>The bytes of the range the workload touches.</summary>
    public ulong Length { get; init; }
    /// <summary>How the accesses are spread over the range.</summary>
    public WorkloadPattern Pattern { get; init; } = WorkloadPattern.HotSet;
    /// <summary>Accesses per emulated second.</summary>
    public double AccessesPerSecond { get; init; } = 10_000;
    /// <summary>The share of accesses that write.</summary>
    public double WriteRatio { get; init; } = 0.5;
    /// <summary>The random seed of the first interval (each interval uses the next).</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Far above what any CPU writes (about 1e9 stores a second per core): a rate above it is a typo, not a workload.</summary>
    public const double MaxAccessesPerSecond = 1e10;

    /// <summary>Throws InvalidArgument for a rate or ratio no workload has, or a range that wraps.</summary>
    public void Validate()
    {
        if (!double.IsFinite(AccessesPerSecond) || AccessesPerSecond < 0 || AccessesPerSecond > MaxAccessesPerSecond)
            throw new EngineException(EngineError.InvalidArgument, $"The workload's AccessesPerSecond {AccessesPerSecond} is out of range (0 to {MaxAccessesPerSecond:g}).", AccessesPerSecond);
        if (!double.IsFinite(WriteRatio) || WriteRatio < 0 || WriteRatio > 1)
            throw new EngineException(EngineError.InvalidArgument, $"The workload's WriteRatio {WriteRatio} is out of range (0 to 1).", WriteRatio);
        if (Length == 0 || Length > ulong.MaxValue - Address)
            throw new EngineException(EngineError.InvalidArgument, $"The workload's range 0x{Address:x} + 0x{Length:x} is empty or wraps past the end of the address space.", Length);
    }
}
