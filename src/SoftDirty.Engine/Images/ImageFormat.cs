using System.IO;
using System.Text.Json;
using System.Text.Json.Serialization;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/*
 On-disk format of a memory image (version 2): a directory (mode 0700) holding three files (mode 0600).

   pages.bin      the bytes of the pages this image records, one page after another, no header.
   index.bin      a 16-byte header ("SDIMGIDX", u32 version = 2 (the format version), u32 page size: both as the manifest
                  says, or the image is corrupt), then one 40-byte record per
                  recorded page in ascending address order, little-endian:
                    u64 address | u32 kind (1 = data, 2 = zero) | u32 reserved (0) | u64 offset in pages.bin
                    (data) or 0 (zero) | 16 bytes: Fast128 hash of the page's bytes (the zero page's for kind 2)
   manifest.json  written last: format, version, id, parent {path (relative to where the image folder really
                  is, links on the way resolved), id, checksum}, process (pid, identity: pid and start time),
                  page size, method, the tracking epoch it armed, mappings (the layout at this moment), page
                  counts (unreadable pages included), the sizes of pages.bin and index.bin with the hash of
                  index.bin, and "checksum": Fast128 of the manifest serialized without it. A child's parent
                  link carries the parent's checksum: every field of the chain is covered.
 The three files are written into a private folder (.NAME.partial-GUID, 0700) renamed onto NAME when complete.

 A reader refuses another format version, and a manifest with a member it does not know (a later version's, which the
 checksum it takes over the members it knows would not cover): a change of what a field or record means bumps the version.

 A page an image does not record is as in its parent (or zero in a full image, which has no parent). A kind 2
 record says the page now holds zeros though the parent chain has data there. A directory without
 manifest.json is an interrupted save: incomplete, never part of a chain.
*/

/// <summary>The constants and JSON settings of the memory image format (version 2) described above.</summary>
internal static class ImageFormat
{
    /// <summary>The names of the three files of an image directory.</summary>
    public const string ManifestFile = "manifest.json", PagesFile = "pages.bin", IndexFile = "index.bin";
    /// <summary>The format name a manifest carries.</summary>
    public const string FormatName = "SoftDirty.MemoryImage";
    /// <summary>The format version, the size of the index header and of one index record.</summary>
    public const int Version = 2, IndexHeaderSize = 16, RecordSize = 40;
    /// <summary>Base page sizes Linux uses (4 KiB to 64 KiB): an image claiming another is corrupt.</summary>
    public const int MinPageSize = 4096, MaxPageSize = 65536;
    /// <summary>Bounds that keep reading a hostile manifest cheap: mappings (the kernel's default max_map_count is 65530) and chain depth.</summary>
    public const int MaxMappings = 1 << 20, MaxDepth = 100_000;
    /// <summary>Where the index header holds the format version and the page size (each a u32).</summary>
    public const int IndexVersionOffset = 8, IndexPageSizeOffset = 12;
    /// <summary>The first 8 bytes of index.bin.</summary>
    public static readonly byte[] IndexMagic = "SDIMGIDX"u8.ToArray();
    /// <summary>The mode of an image directory (0700).</summary>
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    /// <summary>The mode of an image file (0600).</summary>
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>How a manifest is serialized (camelCase, enums as strings, nulls left out).</summary>
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
