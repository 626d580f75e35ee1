namespace SoftDirty.Workflows;

/// <summary>Why the live rounds of a pre-copy migration ended.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PreCopyStopReason
{
    /// <summary>The dirty set fell under the stop threshold.</summary>
    Converged,
    /// <summary>The most live rounds allowed were done.</summary>
    MaxIterations,
    /// <summary>The dirty set stopped shrinking: the process dirties memory about as fast as the link sends it.</summary>
    NotConverging,
}
