using System;

namespace SoftDirty.Images;

/// <summary>What a save produced.</summary>
internal sealed class ImageSaveResult
{
    public ImageSaveResult(string path, ImageManifest manifest, TimeSpan elapsed, ulong bytesWritten)
    {
        Path = path; Manifest = manifest; Elapsed = elapsed; BytesWritten = bytesWritten;
    }
    public string Path { get; }
    public ImageManifest Manifest { get; }
    public TimeSpan Elapsed { get; }
    public ulong BytesWritten { get; }
}
