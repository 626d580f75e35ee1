using System;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>One interval of Watch-DirtyPage.</summary>
public sealed class DirtyPageSample : IDirtyTimelinePoint
{
    /// <summary>The process watched.</summary>
    public int ProcessId { get; init; }
    /// <summary>The process's name.</summary>
    public string Name { get; init; } = "";
    /// <summary>The sample's number, from 1.</summary>
    public int Index { get; init; }
    /// <summary>When the sample was taken.</summary>
    public DateTime Time { get; init; }
    /// <inheritdoc/>
    public double Elapsed { get; init; }
    /// <summary>The interval this sample covers, in seconds.</summary>
    public double Interval { get; init; }
    /// <summary>Pages written during the interval.</summary>
    public ulong DirtyPages { get; init; }
    /// <summary>Bytes written during the interval (<see cref="DirtyPages"/> pages).</summary>
    public ulong DirtyBytes { get; init; }
    /// <summary>Pages per second over the interval.</summary>
    public double Rate { get; init; }
    /// <summary>How the pages were found.</summary>
    public TrackingMethod Method { get; init; }
    /// <summary>Pages the tracker looked at.</summary>
    public ulong PagesScanned { get; init; }
    /// <summary>Milliseconds the collection took.</summary>
    public double CollectMilliseconds { get; init; }
    /// <inheritdoc/>
    public int PageSize { get; init; }
    /// <summary>The dirty pages as address ranges.</summary>
    public JoinedList<AddressRange> Ranges { get; init; } = JoinedList<AddressRange>.Empty;
    /// <inheritdoc/>
    public override string ToString() => $"#{Index} {DirtyPages} pages ({Rate:N0}/s, {Method})";
}
