namespace SoftDirty.Images;

/// <summary>One mapping Restore-MemoryImage rebuilt into a flat file.</summary>
public sealed class RestoredMapping
{
    internal RestoredMapping() { }

    /// <summary>The first address of the mapping.</summary>
    public ulong Start { get; init; }
    /// <summary>The address after the mapping.</summary>
    public ulong End { get; init; }
    /// <summary>The permissions as /proc/PID/maps writes them.</summary>
    public string Permissions { get; init; } = "";
    /// <summary>The mapped file or pseudo-path of the original mapping.</summary>
    public string Mapping { get; init; } = "";
    /// <summary>The flat file: the mapping's bytes, absent pages as zeros.</summary>
    public string File { get; init; } = "";
    /// <summary>Pages written into the destination for this mapping.</summary>
    public ulong PagesWritten { get; init; }
}
