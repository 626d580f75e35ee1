namespace SoftDirty.Images;

public sealed class ImageFileInfo
{
    public string Name { get; set; } = "";
    public long Size { get; set; }
    /// <summary>Fast128 of the whole file (index.bin only; pages.bin is checked page by page).</summary>
    public string? Hash { get; set; }
}
