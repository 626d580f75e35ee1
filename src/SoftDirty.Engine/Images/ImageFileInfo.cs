namespace SoftDirty.Images;

/// <summary>A file of a memory image as its manifest records it (name, size, hash).</summary>
internal sealed class ImageFileInfo
{
    /// <summary>The file name inside the image directory.</summary>
    public string Name { get; set; } = "";
    /// <summary>The file size in bytes.</summary>
    public long Size { get; set; }
    /// <summary>Fast128 of the whole file (index.bin only; pages.bin is checked page by page).</summary>
    public string? Hash { get; set; }
    /// <summary>Members this version does not know (a later version's, or an edit): a manifest with any is refused (<see cref="ImageReader"/>).</summary>
    [System.Text.Json.Serialization.JsonExtensionData]
    public System.Collections.Generic.Dictionary<string, System.Text.Json.JsonElement>? Unknown { get; set; }
}
