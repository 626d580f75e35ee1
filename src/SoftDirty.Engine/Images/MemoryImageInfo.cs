using System;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>One image of a chain, with its statistics (Get-MemoryImage, Save-MemoryImage).</summary>
public sealed class MemoryImageInfo
{
    internal MemoryImageInfo() { }

    /// <summary>The image directory.</summary>
    public string Path { get; init; } = "";
    /// <summary>The image's id.</summary>
    public Guid Id { get; init; }
    /// <summary>Full or incremental.</summary>
    public MemoryImageKind Kind { get; init; }
    /// <summary>0 for a full image; the parent's depth + 1 for an increment.</summary>
    public int Depth { get; init; }
    /// <summary>The parent image's directory; null for a full image.</summary>
    public string? ParentPath { get; init; }
    /// <summary>When the image was saved, UTC.</summary>
    public DateTime Created { get; init; }
    /// <summary>The process the image was taken of.</summary>
    public int ProcessId { get; init; }
    /// <summary>The process's name.</summary>
    public string ProcessName { get; init; } = "";
    /// <summary>How the changed pages were found.</summary>
    public TrackingMethod Method { get; init; }
    /// <summary>Whether the process was stopped while the image was taken.</summary>
    public bool Frozen { get; init; }
    /// <summary>The page size in bytes.</summary>
    public int PageSize { get; init; }
    /// <summary>The number of mappings recorded.</summary>
    public int MappingCount { get; init; }
    /// <summary>Pages whose bytes this image holds.</summary>
    public ulong DataPages { get; init; }
    /// <summary>Pages this image records as zero (they had data in the parent chain).</summary>
    public ulong ZeroPages { get; init; }
    /// <summary>Pages with data left to the parent chain.</summary>
    public ulong InheritedPages { get; init; }
    /// <summary>Present pages looked at.</summary>
    public ulong ScannedPages { get; init; }
    /// <summary>Pages the save could not read in mappings still there (memfd_secret, a userfaultfd of the process, pages of a memfd, shared anonymous or System V memory or a deleted file that the process did not map and whose object the user could not open): the image lacks them; memory unmapped meanwhile is gone, not unreadable.</summary>
    public ulong UnreadablePages { get; init; }
    /// <summary>Bytes of page data recorded (<see cref="DataPages"/> pages).</summary>
    public ulong DataBytes => DataPages * (ulong)PageSize;
    /// <summary>Bytes on disk (pages.bin, index.bin, manifest.json).</summary>
    public long FileBytes { get; init; }
    /// <summary>Seconds the save took (Save-MemoryImage only).</summary>
    public double? SaveSeconds { get; init; }

    internal static MemoryImageInfo From(OpenedImage image, double? saveSeconds = null)
    {
        long bytes = 0;
        foreach (var f in new[] { ImageFormat.PagesFile, ImageFormat.IndexFile, ImageFormat.ManifestFile })
        {
            var fi = new System.IO.FileInfo(image.File(f));
            if (fi.Exists) bytes += fi.Length;
        }
        return From(image.Path, image.Manifest, bytes, saveSeconds);
    }

    /// <summary>
    /// The image at <paramref name="path"/> whose manifest is <paramref name="m"/> and whose files hold <paramref name="bytes"/>:
    /// what a save or receive just wrote, described without reading it back (round 26: an EIO reading the manifest back said
    /// ImageReadError of an image that was in place and durable).
    /// </summary>
    internal static MemoryImageInfo From(string path, ImageManifest m, long bytes, double? saveSeconds = null)
    {
        return new MemoryImageInfo
        {
            Path = path, Id = m.Id, Kind = m.Parent is null ? MemoryImageKind.Full : MemoryImageKind.Incremental, Depth = m.Depth,
            ParentPath = m.Parent is null ? null : System.IO.Path.GetFullPath(System.IO.Path.Combine(path, m.Parent.Path)),
            Created = m.Created, ProcessId = m.ProcessId, ProcessName = m.ProcessName, Method = m.Method, Frozen = m.Frozen,
            PageSize = m.PageSize, MappingCount = m.Mappings.Count, DataPages = m.DataPages, ZeroPages = m.ZeroPages,
            InheritedPages = m.InheritedPages, ScannedPages = m.ScannedPages, UnreadablePages = m.UnreadablePages, FileBytes = bytes, SaveSeconds = saveSeconds,
        };
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Path} ({Kind}, {DataPages} pages)";
}
