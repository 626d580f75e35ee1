using SoftDirty.Tracking;

// Memory images exist for Linux processes (and emulated ones): Unix file modes are part of the format.
#pragma warning disable CA1416
namespace SoftDirty.Workflows;

/// <summary>One round of a pre-copy migration.</summary>
public sealed class PreCopyRound : IDirtyTimelinePoint
{
    internal PreCopyRound() { }

    public int Round { get; init; }
    public PreCopyPhase Phase { get; init; }
    public ulong PagesSent { get; init; }
    public ulong BytesSent { get; init; }
    /// <summary>Seconds the bytes take at the given bandwidth.</summary>
    public double TransferSeconds { get; init; }
    /// <summary>Seconds the round really lasted (at least the transfer time for a live round).</summary>
    public double RoundSeconds { get; init; }
    /// <summary>Pages dirtied while the round ran: what the next round sends.</summary>
    public ulong DirtyPages { get; init; }
    /// <summary>Pages per second dirtied during the round.</summary>
    public double Rate { get; init; }
    public double Elapsed { get; init; }
    public int PageSize { get; init; }
    public TrackingMethod Method { get; init; }
    /// <summary>The image this round wrote (with -Destination).</summary>
    public string? ImagePath { get; init; }
    /// <summary>The pages dirtied during the round, as ranges.</summary>
    public JoinedList<AddressRange> Ranges { get; init; } = JoinedList<AddressRange>.Empty;
    public override string ToString() => $"round {Round} {Phase}: {PagesSent} pages sent, {DirtyPages} dirtied";
}
