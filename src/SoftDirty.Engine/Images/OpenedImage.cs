namespace SoftDirty.Images;

/// <summary>One image of a chain, opened: its directory and manifest.</summary>
internal sealed class OpenedImage
{
    public OpenedImage(string path, ImageManifest manifest)
    {
        Path = path;
        Manifest = manifest;
    }

    public string Path { get; }
    public ImageManifest Manifest { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);
}
