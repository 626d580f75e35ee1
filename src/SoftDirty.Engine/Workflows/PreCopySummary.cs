using SoftDirty.Tracking;

// Memory images exist for Linux processes (and emulated ones): Unix file modes are part of the format.
#pragma warning disable CA1416
namespace SoftDirty.Workflows;

/// <summary>The outcome of a pre-copy migration.</summary>
public sealed class PreCopySummary
{
    public int ProcessId { get; init; }
    public string Name { get; init; } = "";
    public TrackingMethod Method { get; init; }
    public int LiveRounds { get; init; }
    public ulong TotalPagesSent { get; init; }
    public ulong TotalBytesSent { get; init; }
    public double Bandwidth { get; init; }
    /// <summary>Seconds the process would be stopped: the final round's transfer plus the time to find what is dirty.</summary>
    public double EstimatedDowntime { get; init; }
    public bool Converged { get; init; }
    public PreCopyStopReason StopReason { get; init; }
    public string Reason { get; init; } = "";
    public double TotalSeconds { get; init; }
    /// <summary>The last image (with -Destination): restore the chain from here.</summary>
    public string? FinalImage { get; init; }
}
