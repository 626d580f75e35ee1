using System;

namespace SoftDirty.Images;

/// <summary>An increment's link to its parent image.</summary>
internal sealed class ImageParentLink
{
    /// <summary>The parent directory, relative to this image's directory.</summary>
    public string Path { get; set; } = "";
    /// <summary>The parent's id.</summary>
    public Guid Id { get; set; }
    /// <summary>The parent's manifest checksum: the child covers every field of its parent.</summary>
    public string? Checksum { get; set; }
    /// <summary>Members this version does not know (a later version's, or an edit): a manifest with any is refused (<see cref="ImageReader"/>).</summary>
    [System.Text.Json.Serialization.JsonExtensionData]
    public System.Collections.Generic.Dictionary<string, System.Text.Json.JsonElement>? Unknown { get; set; }
}
