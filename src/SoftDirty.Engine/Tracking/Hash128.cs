using System;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace SoftDirty.Tracking;

/// <summary>A 128-bit page hash: 16 bytes a page.</summary>
[StructLayout(LayoutKind.Sequential)]
internal readonly record struct Hash128(ulong Low, ulong High)
{
    /// <inheritdoc/>
    public override string ToString() => $"{High:x16}{Low:x16}";

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Low);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], High);
    }

    public static Hash128 ReadFrom(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt64LittleEndian(source), BinaryPrimitives.ReadUInt64LittleEndian(source[8..]));
}
