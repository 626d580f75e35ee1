using System;

// Memory images exist for Linux processes (and emulated ones): Unix file modes are part of the format.
#pragma warning disable CA1416
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
