namespace SoftDirty.Workflows;

/// <summary>A pre-copy round while the process runs, or the final one with it stopped.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PreCopyPhase
{
    /// <summary>The process runs while the round's pages are sent.</summary>
    Live,
    /// <summary>The process is stopped and the last dirty pages are sent.</summary>
    StopAndCopy,
}
