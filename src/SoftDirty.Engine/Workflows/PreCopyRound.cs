using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>One round of a pre-copy migration.</summary>
public sealed class PreCopyRound : IDirtyTimelinePoint
{
    internal PreCopyRound() { }

    /// <summary>The round's number, from 1.</summary>
    public int Round { get; init; }
    /// <summary>Live or the final stop-and-copy.</summary>
    public PreCopyPhase Phase { get; init; }
    /// <summary>Pages sent this round.</summary>
    public ulong PagesSent { get; init; }
    /// <summary>Bytes sent this round (<see cref="PagesSent"/> pages); with -ToSession the bytes of the round's image that crossed the session.</summary>
    public ulong BytesSent { get; init; }
    /// <summary>Seconds the bytes take at the given bandwidth; with -ToSession the measured seconds until the destination had the round's image, verified.</summary>
    public double TransferSeconds { get; init; }
    /// <summary>Seconds the round really lasted (at least the transfer time for a live round).</summary>
    public double RoundSeconds { get; init; }
    /// <summary>Pages dirtied while the round ran: what the next round sends.</summary>
    public ulong DirtyPages { get; init; }
    /// <summary>Pages per second dirtied during the round.</summary>
    public double Rate { get; init; }
    /// <inheritdoc/>
    public double Elapsed { get; init; }
    /// <inheritdoc/>
    public int PageSize { get; init; }
    /// <summary>How the dirty pages were found.</summary>
    public TrackingMethod Method { get; init; }
    /// <summary>The image this round wrote (with -Destination; with -ToSession its path on the destination).</summary>
    public string? ImagePath { get; init; }
    /// <summary>The computer of the destination session (-ToSession), where <see cref="ImagePath"/> lies; null on a simulated link.</summary>
    public string? ToComputer { get; init; }
    /// <summary>The pages dirtied during the round, as ranges.</summary>
    public JoinedList<AddressRange> Ranges { get; init; } = JoinedList<AddressRange>.Empty;
    /// <inheritdoc/>
    public override string ToString() => $"round {Round} {Phase}: {PagesSent} pages sent, {DirtyPages} dirtied";
}
