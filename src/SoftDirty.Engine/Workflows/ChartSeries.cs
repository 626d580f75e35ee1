using System.Collections.Generic;

namespace SoftDirty.Workflows;

/// <summary>
/// One line of a dirty-page chart: the samples or rounds of one process (on one host, for samples that came
/// back from remoting), labelled for the legend.
/// </summary>
internal sealed record ChartSeries(string Label, IReadOnlyList<ChartPoint> Points);
