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
}
