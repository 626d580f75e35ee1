using System;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>One interval of Watch-DirtyPage.</summary>
public sealed class DirtyPageSample : IDirtyTimelinePoint
{
    public int ProcessId { get; init; }
    public string Name { get; init; } = "";
    public int Index { get; init; }
    public DateTime Time { get; init; }
    public double Elapsed { get; init; }
    /// <summary>The interval this sample covers, in seconds.</summary>
    public double Interval { get; init; }
    public ulong DirtyPages { get; init; }
    public ulong DirtyBytes { get; init; }
    /// <summary>Pages per second over the interval.</summary>
    public double Rate { get; init; }
    public TrackingMethod Method { get; init; }
    public ulong PagesScanned { get; init; }
    /// <summary>Milliseconds the collection took.</summary>
    public double CollectMilliseconds { get; init; }
    public int PageSize { get; init; }
    /// <summary>The dirty pages as address ranges.</summary>
    public JoinedList<AddressRange> Ranges { get; init; } = JoinedList<AddressRange>.Empty;
    public override string ToString() => $"#{Index} {DirtyPages} pages ({Rate:N0}/s, {Method})";
}
