using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>Something with a time, a dirty rate and the dirty address ranges: a chart can draw it.</summary>
internal interface IDirtyTimelinePoint
{
    /// <summary>Seconds since the start (emulated seconds for an emulated process).</summary>
    double Elapsed { get; }
    /// <summary>Pages dirtied per second.</summary>
    double Rate { get; }
    int PageSize { get; }
    JoinedList<AddressRange> Ranges { get; }
}
