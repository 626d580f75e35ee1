namespace SoftDirty.Emulation;

/// <summary>How a workload picks its pages.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum WorkloadPattern
{
    /// <summary>Page 0, 1, 2, ... wrapping around.</summary>
    Sequential,
    /// <summary>Uniformly random pages.</summary>
    Random,
    /// <summary>90% of accesses to a hot 10% of the pages (a contiguous block at a seed-chosen place), 10% anywhere.</summary>
    HotSet,
    /// <summary>Zipf-like with s = 1: page k drawn with probability about 1/(k+1) (log-uniform inverse).</summary>
    Zipf,
}
