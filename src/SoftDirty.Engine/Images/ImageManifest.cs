using System;
using System.Collections.Generic;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

public sealed class ImageManifest
{
    public string Format { get; set; } = ImageFormat.FormatName;
    public int Version { get; set; } = ImageFormat.Version;
    public Guid Id { get; set; }
    public DateTime Created { get; set; }
    public ImageParentLink? Parent { get; set; }
    /// <summary>0 for a full image; parent's depth + 1 for an increment.</summary>
    public int Depth { get; set; }
    public int ProcessId { get; set; }
    /// <summary>Which process this is, beyond the reusable pid (pid and start time; an emulated process's own id).</summary>
    public string? ProcessIdentity { get; set; }
    public string ProcessName { get; set; } = "";
    public string Kernel { get; set; } = "";
    public int PageSize { get; set; }
    public TrackingMethod Method { get; set; }
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
    public List<ImageMapping> Mappings { get; set; } = new();
    public ulong DataPages { get; set; }
    public ulong ZeroPages { get; set; }
    /// <summary>Pages with data that this image leaves to its parent chain.</summary>
    public ulong InheritedPages { get; set; }
    /// <summary>Present pages looked at.</summary>
    public ulong ScannedPages { get; set; }
    /// <summary>Present pages that could not be read (unmapped or made unreadable during the save): the image lacks them.</summary>
    public ulong UnreadablePages { get; set; }
    public List<ImageFileInfo> Files { get; set; } = new();
    /// <summary>Fast128 of this manifest serialized without this field (<see cref="ImageFormat.ManifestChecksum"/>).</summary>
    public string? Checksum { get; set; }
}
