namespace SoftDirty.Images;

/// <summary>One mapping Restore-MemoryImage rebuilt into a flat file.</summary>
public sealed class RestoredMapping
{
    internal RestoredMapping() { }

    public ulong Start { get; init; }
    public ulong End { get; init; }
    public string Permissions { get; init; } = "";
    public string Mapping { get; init; } = "";
    /// <summary>The flat file: the mapping's bytes, absent pages as zeros.</summary>
    public string File { get; init; } = "";
    public ulong PagesWritten { get; init; }
}
