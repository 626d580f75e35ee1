using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text.Json;
using System.Text.Json.Serialization;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/*
 On-disk format of a memory image (version 2): a directory (mode 0700) holding three files (mode 0600).

   pages.bin      the bytes of the pages this image records, one page after another, no header.
   index.bin      a 16-byte header ("SDIMGIDX", u32 version = 1, u32 page size), then one 40-byte record per
                  recorded page in ascending address order, little-endian:
                    u64 address | u32 kind (1 = data, 2 = zero) | u32 reserved (0) | u64 offset in pages.bin
                    (data) or 0 (zero) | 16 bytes: Fast128 hash of the page's bytes (the zero page's for kind 2)
   manifest.json  written last: format, version, id, parent {path (relative), id, checksum}, process (pid,
                  identity: pid and start time), page size, method, the tracking epoch it armed, mappings (the
                  layout at this moment), page counts (unreadable pages included), the sizes of pages.bin and
                  index.bin with the hash of index.bin, and "checksum": Fast128 of the manifest serialized without
                  it. A child's parent link carries the parent's checksum: every field of the chain is covered.
 The three files are written into a private folder (.NAME.partial-GUID, 0700) renamed onto NAME when complete.

 A page an image does not record is as in its parent (or zero in a full image, which has no parent). A kind 2
 record says the page now holds zeros though the parent chain has data there. A directory without
 manifest.json is an interrupted save: incomplete, never part of a chain.
*/

public static class ImageFormat
{
    public const string ManifestFile = "manifest.json", PagesFile = "pages.bin", IndexFile = "index.bin";
    public const string FormatName = "SoftDirty.MemoryImage";
    public const int Version = 2, IndexHeaderSize = 16, RecordSize = 40;
    /// <summary>Base page sizes Linux uses (4 KiB to 64 KiB): an image claiming another is corrupt.</summary>
    public const int MinPageSize = 4096, MaxPageSize = 65536;
    /// <summary>Bounds that keep reading a hostile manifest cheap: mappings (the kernel's default max_map_count is 65530) and chain depth.</summary>
    public const int MaxMappings = 1 << 20, MaxDepth = 100_000;
    public static readonly byte[] IndexMagic = "SDIMGIDX"u8.ToArray();
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>The checksum of a manifest: Fast128 of its serialization without the checksum field.</summary>
    public static string ManifestChecksum(ImageManifest m)
    {
        var saved = m.Checksum;
        m.Checksum = null;
        try { return PageHash.Fast128(JsonSerializer.SerializeToUtf8Bytes(m, Json)).ToString(); }
        finally { m.Checksum = saved; }
    }
}

[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PageRecordKind : uint { Data = 1, Zero = 2 }

/// <summary>One index record.</summary>
public readonly record struct PageRecord(ulong Address, PageRecordKind Kind, ulong Offset, Hash128 Hash)
{
    public void WriteTo(Span<byte> d)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(d, Address);
        BinaryPrimitives.WriteUInt32LittleEndian(d[8..], (uint)Kind);
        BinaryPrimitives.WriteUInt32LittleEndian(d[12..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(d[16..], Offset);
        Hash.WriteTo(d[24..]);
    }

    public static PageRecord ReadFrom(ReadOnlySpan<byte> s) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(s), (PageRecordKind)BinaryPrimitives.ReadUInt32LittleEndian(s[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[16..]), Hash128.ReadFrom(s[24..]));
}

public sealed class ImageParentLink
{
    /// <summary>The parent directory, relative to this image's directory.</summary>
    public string Path { get; set; } = "";
    public Guid Id { get; set; }
    /// <summary>The parent's manifest checksum: the child covers every field of its parent.</summary>
    public string? Checksum { get; set; }
}

public sealed class ImageMapping
{
    public ulong Start { get; set; }
    public ulong End { get; set; }
    public string Permissions { get; set; } = "";
    public string Path { get; set; } = "";
    public ulong Offset { get; set; }
    public override string ToString() => $"0x{Start:x}-0x{End:x} {Permissions} {Path}";
}

public sealed class ImageFileInfo
{
    public string Name { get; set; } = "";
    public long Size { get; set; }
    /// <summary>Fast128 of the whole file (index.bin only; pages.bin is checked page by page).</summary>
    public string? Hash { get; set; }
}

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
