using System;
using System.Collections.Generic;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>The manifest.json of a memory image: identity, parent link, process, layout, page counts and file checksums.</summary>
internal sealed class ImageManifest
{
    /// <summary>The format name (<see cref="ImageFormat.FormatName"/>).</summary>
    public string Format { get; set; } = ImageFormat.FormatName;
    /// <summary>The format version (<see cref="ImageFormat.Version"/>).</summary>
    public int Version { get; set; } = ImageFormat.Version;
    /// <summary>The image's own id.</summary>
    public Guid Id { get; set; }
    /// <summary>When the image was saved, UTC.</summary>
    public DateTime Created { get; set; }
    /// <summary>The parent image of an increment; null for a full image.</summary>
    public ImageParentLink? Parent { get; set; }
    /// <summary>0 for a full image; parent's depth + 1 for an increment.</summary>
    public int Depth { get; set; }
    /// <summary>The process the image was taken of.</summary>
    public int ProcessId { get; set; }
    /// <summary>Which process this is, beyond the reusable pid (pid and start time; an emulated process's own id).</summary>
    public string? ProcessIdentity { get; set; }
    /// <summary>The process's name.</summary>
    public string ProcessName { get; set; } = "";
    /// <summary>The kernel release the image was taken on.</summary>
    public string Kernel { get; set; } = "";
    /// <summary>The page size in bytes.</summary>
    public int PageSize { get; set; }
    /// <summary>How the changed pages of this image were found.</summary>
    public TrackingMethod Method { get; set; }
    /// <summary>Whether the process was stopped while the image was taken.</summary>
    public bool Frozen { get; set; }
    /// <summary>Soft-dirty was cleared (or write-protect re-armed) when this image was taken: the next increment may use it.</summary>
    public TrackingMethod? Armed { get; set; }
    /// <summary>The tracking epoch this save's clear started (<see cref="TrackingEpoch"/>): an increment trusts the tracker only while it is still current.</summary>
    public string? ArmedEpoch { get; set; }
    /// <summary>
    /// WriteProtect of another process: the reset of its write tracking this image was taken at
    /// (<see cref="SoftDirty.Injection.WriteTrackingState.ResetId"/>). The next increment collects the written
    /// pages only while the tracking is still at this reset (no other command reset it since).
    /// </summary>
    public Guid? WriteTrackingReset { get; set; }
    /// <summary>
    /// A real process's memory that the kernel could write through its own mapping when this image was taken, after its
    /// reset (io_uring registered buffers, <see cref="PinnedBuffers"/>), and every mapping of a process KSM touched, whose merges
    /// leave pages without their soft-dirty bits (<see cref="KsmMergeable"/>), as "0xSTART-0xEND" ranges; null: none. The next
    /// increment compares the mappings holding them by content, whether or not they are still registered then.
    /// </summary>
    public List<string>? KernelWritten { get; set; }
    /// <summary>True where the kernel could write memory of the process that no one can locate when this image was taken (<see cref="PinnedBuffers.WritesUnlocated"/>): the next increment compares every page by content. Null otherwise.</summary>
    public bool? KernelWritesUnlocated { get; set; }
    /// <summary>The process's mappings when the image was taken.</summary>
    public List<ImageMapping> Mappings { get; set; } = new();
    /// <summary>Pages recorded with their bytes.</summary>
    public ulong DataPages { get; set; }
    /// <summary>Pages recorded as zero.</summary>
    public ulong ZeroPages { get; set; }
    /// <summary>Pages with data that this image leaves to its parent chain.</summary>
    public ulong InheritedPages { get; set; }
    /// <summary>Present pages looked at.</summary>
    public ulong ScannedPages { get; set; }
    /// <summary>Pages that could not be read in mappings still there (made unreadable during the save, memfd_secret, pages a userfaultfd of the process would have to serve, every page of a VM_PFNMAP mapping, pages of a memfd, shared anonymous or System V memory or a deleted file that the process did not map and whose object could not be opened: UnnamedObjectPages): the image lacks them.</summary>
    public ulong UnreadablePages { get; set; }
    /// <summary>
    /// The chain's page-hash key (<see cref="PageHashKey"/>, hexadecimal): every page record's hash is Fast128 under
    /// it, and an increment compares the process's pages with its parent's under it. Made at random by the full
    /// image, carried by each increment; absent in images saved before chains had one (the fixed secret).
    /// </summary>
    public string? PageKey { get; set; }
    /// <summary>pages.bin and index.bin with their sizes (and the hash of index.bin).</summary>
    public List<ImageFileInfo> Files { get; set; } = new();
    /// <summary>Fast128 of this manifest serialized without this field (<see cref="ImageFormat.ManifestChecksum"/>).</summary>
    public string? Checksum { get; set; }
    /// <summary>Members this version does not know (a later version's, or an edit): a manifest with any is refused (<see cref="ImageReader"/>).</summary>
    [System.Text.Json.Serialization.JsonExtensionData]
    public System.Collections.Generic.Dictionary<string, System.Text.Json.JsonElement>? Unknown { get; set; }
}
