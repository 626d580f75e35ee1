using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>The outcome of a pre-copy migration.</summary>
public sealed class PreCopySummary
{
    /// <summary>The process migrated.</summary>
    public int ProcessId { get; init; }
    /// <summary>The process's name.</summary>
    public string Name { get; init; } = "";
    /// <summary>How the dirty pages were found.</summary>
    public TrackingMethod Method { get; init; }
    /// <summary>Rounds while the process ran.</summary>
    public int LiveRounds { get; init; }
    /// <summary>Pages sent in all rounds.</summary>
    public ulong TotalPagesSent { get; init; }
    /// <summary>Bytes sent in all rounds.</summary>
    public ulong TotalBytesSent { get; init; }
    /// <summary>The modelled bandwidth in bytes a second; with -ToSession the measured one: the bytes sent over the session divided by the seconds the transfers took (until the destination had verified each image).</summary>
    public double Bandwidth { get; init; }
    /// <summary>Seconds the process would be stopped: the final round's transfer plus the time to find what is dirty; with -ToSession measured: from the freeze until the destination held the final image, verified.</summary>
    public double EstimatedDowntime { get; init; }
    /// <summary>True when the dirty set fell under the stop threshold.</summary>
    public bool Converged { get; init; }
    /// <summary>Why the live rounds ended.</summary>
    public PreCopyStopReason StopReason { get; init; }
    /// <summary>Why the live rounds ended, for a person.</summary>
    public string Reason { get; init; } = "";
    /// <summary>Seconds the whole migration took (emulated seconds for an emulated process).</summary>
    public double TotalSeconds { get; init; }
    /// <summary>The last image (with -Destination): restore the chain from here (with -ToSession, a path on the destination).</summary>
    public string? FinalImage { get; init; }
    /// <summary>The computer of the destination session (-ToSession); null on a simulated link.</summary>
    public string? ToComputer { get; init; }
    /// <summary>Where the final image was restored on the destination (-ToSession with -RestorePath).</summary>
    public string? RestorePath { get; init; }
}
