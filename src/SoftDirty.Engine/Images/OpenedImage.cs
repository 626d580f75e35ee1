namespace SoftDirty.Images;

/// <summary>
/// One image of a chain, opened: its directory (a descriptor: every file of the image is read relative to it,
/// without following a link, so a folder swapped after the manifest was read cannot mix in another image's files)
/// and manifest.
/// </summary>
internal sealed class OpenedImage : System.IDisposable
{
    public OpenedImage(string path, ImageManifest manifest, SafeDirectory folder)
    {
        Path = path;
        Manifest = manifest;
        Folder = folder;
    }

    public string Path { get; }
    public ImageManifest Manifest { get; }
    /// <summary>The key its page records are hashed under (checked with the manifest: <see cref="ImageReader"/>).</summary>
    public SoftDirty.Tracking.PageHashKey PageKey => _pageKey ??= SoftDirty.Tracking.PageHashKey.Parse(Manifest.PageKey) ?? SoftDirty.Tracking.PageHashKey.Unkeyed;
    private SoftDirty.Tracking.PageHashKey? _pageKey;
    /// <summary>The image directory, opened when the manifest was read.</summary>
    public SafeDirectory Folder { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);
    /// <summary>Where the image directory really is: a parent link is relative to it, not to the spelling it was opened by (a link to it, say).</summary>
    public string RealPath => Folder.RealPath();

    /// <summary>Closes the folder's descriptor.</summary>
    public void Dispose() => Folder.Dispose();
}
