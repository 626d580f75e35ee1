using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using SoftDirty.Images;

namespace SoftDirty.TestKit.Benchmarks;

/// <summary>
/// Page counts of a CRIU image folder and of a SoftDirty memory image inside one address range, for the CRIU
/// comparison (tests/vm/BenchCriu.ps1): both must have stored the same pages.
/// </summary>
public static class CriuImages
{
    // CRIU's images (criu/include/magic.h, images/pagemap.proto, criu/include/pagemap.h): a u32 common magic
    // and the image's own u32 magic, then entries of a u32 length and a protobuf message.
    private const uint CommonMagic = 0x54564319;
    private const int PagemapVaddrField = 1, PagemapPagesField = 2, PagemapInParentField = 3, PagemapFlagsField = 4;
    private const ulong PagePresentFlag = 1 << 2; // PE_PRESENT: the pages are in pages-*.img
    private const int VarintWire = 0, Fixed64Wire = 1, LengthWire = 2, Fixed32Wire = 5;

    /// <summary>The pages CRIU stored in pages-*.img (PE_PRESENT entries of every pagemap-*.img) inside [lo, hi).</summary>
    public static ulong CountCriuPages(string directory, ulong lo, ulong hi)
    {
        ulong pages = 0;
        foreach (var file in Directory.GetFiles(directory, "pagemap-*.img"))
        {
            var b = File.ReadAllBytes(file);
            int at = BinaryPrimitives.ReadUInt32LittleEndian(b) == CommonMagic ? 8 : 4;
            bool head = true;
            while (at + 4 <= b.Length)
            {
                int size = (int)BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(at));
                var message = b.AsSpan(at + 4, size);
                at += 4 + size;
                if (head) { head = false; continue; } // pagemap_head: pages_id
                ulong vaddr = 0, count = 0, flags = 0;
                bool inParent = false, hasFlags = false;
                int p = 0;
                while (p < message.Length)
                {
                    ulong key = Varint(message, ref p);
                    int field = (int)(key >> 3), wire = (int)(key & 7);
                    ulong value = 0;
                    switch (wire)
                    {
                        case VarintWire: value = Varint(message, ref p); break;
                        case Fixed64Wire: p += 8; break;
                        case Fixed32Wire: p += 4; break;
                        case LengthWire: p += (int)Varint(message, ref p); break;
                        default: throw new InvalidDataException($"{file}: wire type {wire}");
                    }
                    if (field == PagemapVaddrField) vaddr = value;
                    else if (field == PagemapPagesField) count = value;
                    else if (field == PagemapInParentField) inParent = value != 0;
                    else if (field == PagemapFlagsField) { flags = value; hasFlags = true; }
                }
                bool stored = hasFlags ? (flags & PagePresentFlag) != 0 : !inParent;
                if (!stored) continue;
                ulong s = Math.Max(vaddr, lo), e = Math.Min(vaddr + count * (ulong)Environment.SystemPageSize, hi);
                if (e > s) pages += (e - s) / (ulong)Environment.SystemPageSize;
            }
        }
        return pages;
    }

    /// <summary>The data pages a SoftDirty memory image (this image alone, not its parents) stored inside [lo, hi).</summary>
    public static ulong CountImagePages(string path, ulong lo, ulong hi) =>
        (ulong)ImageReader.ReadIndex(ImageReader.Open(path)).LongCount(r => r.Kind == PageRecordKind.Data && r.Address >= lo && r.Address < hi);

    private static ulong Varint(ReadOnlySpan<byte> b, ref int p)
    {
        ulong v = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte x = b[p++];
            v |= (ulong)(x & 0x7F) << shift;
            if (x < 0x80) return v;
        }
    }
}
