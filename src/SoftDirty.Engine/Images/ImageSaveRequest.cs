using System;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>What Save-MemoryImage asks of <see cref="ImageSave"/>: where, against which parent, how, and what to tell on the way.</summary>
internal sealed class ImageSaveRequest
{
    /// <summary>The new image's directory (a full path).</summary>
    public required string Path { get; init; }
    /// <summary>The image this one is an increment of (a full path), or null for a full image.</summary>
    public string? Parent { get; init; }
    public TrackingMethod Method { get; init; } = TrackingMethod.Auto;
    /// <summary>Stop the process for the dump (<see cref="ProcessFreeze"/>).</summary>
    public bool Freeze { get; init; }
    /// <summary>Compare every page's contents with the parent's hashes even where soft-dirty could narrow the search.</summary>
    public bool Verify { get; init; }
    /// <summary>
    /// The mapping selector, made once the destination and the parent were checked (it reads the process's mappings, and its
    /// refusal, MappingNotFound, must not leave the folders the destination check made). Null, or returning null: every mapping.
    /// </summary>
    public Func<Func<MemoryMapping, bool>?>? Select { get; init; }
    /// <summary>Told what the user should know (a chain without a page-hash key, pages the image lacks, a reset tracking).</summary>
    public Action<string>? Warn { get; init; }
    /// <summary>Told how the save went (the method's candidates, the time each part took).</summary>
    public Action<string>? Verbose { get; init; }
    /// <summary>Told the pages done of the pages to do.</summary>
    public Action<ulong, ulong>? Progress { get; init; }
}
