using System;
using System.Buffers.Binary;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>One index record.</summary>
internal readonly record struct PageRecord(ulong Address, PageRecordKind Kind, ulong Offset, Hash128 Hash)
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
