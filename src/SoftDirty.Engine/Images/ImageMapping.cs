namespace SoftDirty.Images;

/// <summary>One mapping of the process as a memory image records it.</summary>
internal sealed class ImageMapping
{
    /// <summary>The first address of the mapping.</summary>
    public ulong Start { get; set; }
    /// <summary>The address after the mapping.</summary>
    public ulong End { get; set; }
    /// <summary>The permissions as /proc/PID/maps writes them (rwxp / rwxs).</summary>
    public string Permissions { get; set; } = "";
    /// <summary>The mapped file or pseudo-path; empty for anonymous memory.</summary>
    public string Path { get; set; } = "";
    /// <summary>The offset into the mapped file.</summary>
    public ulong Offset { get; set; }
    /// <summary>
    /// The guard regions in the mapping (MADV_GUARD_INSTALL: any access faults), as pagemap showed them when the image was
    /// saved; null where none (left out of the manifest, so that an image without any reads as before). They hold no data:
    /// a restore into an emulated process installs them again, and a restore to files lists them in mappings.json (the
    /// files hold zeros there). A version that does not know this member refuses such an image rather than restore its
    /// guard regions as readable zeros.
    /// </summary>
    public System.Collections.Generic.List<Tracking.AddressRange>? Guards { get; set; }
    /// <inheritdoc/>
    public override string ToString() => $"0x{Start:x}-0x{End:x} {Permissions} {Path}";
    /// <summary>Members this version does not know (a later version's, or an edit): a manifest with any is refused (<see cref="ImageReader"/>).</summary>
    [System.Text.Json.Serialization.JsonExtensionData]
    public System.Collections.Generic.Dictionary<string, System.Text.Json.JsonElement>? Unknown { get; set; }
}
