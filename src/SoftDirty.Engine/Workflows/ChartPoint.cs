using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>One point of a chart line: seconds since its series began, pages dirtied per second, the dirty ranges.</summary>
internal readonly record struct ChartPoint(double Elapsed, double Rate, int PageSize, AddressRange[] Ranges);
