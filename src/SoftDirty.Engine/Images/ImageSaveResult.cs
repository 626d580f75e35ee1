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
    /// <summary>The bytes of the image's three files.</summary>
    public ulong BytesWritten { get; }
    /// <summary>What Get-MemoryImage shows of the image, from what was written (not read back: the image is in place and durable).</summary>
    public MemoryImageInfo Describe() => MemoryImageInfo.From(Path, Manifest, (long)BytesWritten, Elapsed.TotalSeconds);
    /// <summary>The parts of the save in order, with the time each took (reading the parent chain, the pages, the index and manifest, the commit).</summary>
    public System.Collections.Generic.IReadOnlyList<SavePhase> Phases { get; init; } = Array.Empty<SavePhase>();
    /// <summary>
    /// Of the manifest's UnreadablePages, the pages of memory that ends with the process (a memfd, shared anonymous or System V
    /// memory, a deleted file) that it does not map and whose object this user could not open (<see cref="UnnamedObjectPages"/>).
    /// </summary>
    public ulong UnopenedObjectPages { get; init; }
    /// <summary>The first mapping counted in <see cref="UnopenedObjectPages"/> (range and name), for the warning.</summary>
    public string? FirstUnopenedObject { get; init; }
}
