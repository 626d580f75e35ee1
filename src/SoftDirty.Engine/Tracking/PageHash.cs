using System;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace SoftDirty.Tracking;

/// <summary>A 128-bit page hash: 16 bytes a page.</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct Hash128(ulong Low, ulong High)
{
    public override string ToString() => $"{High:x16}{Low:x16}";

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Low);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], High);
    }

    public static Hash128 ReadFrom(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt64LittleEndian(source), BinaryPrimitives.ReadUInt64LittleEndian(source[8..]));
}

/// <summary>
/// Page hashes. Fast128 is this project's own non-cryptographic hash: four independent 64-bit lanes with
/// XXH64's round (multiply, rotate, multiply) over 32 bytes a step, so the CPU runs the lanes in parallel,
/// and two different finalisations of the 256-bit state give the two halves. It is not keyed and not meant
/// to resist an adversary; Sha256 (truncated to 128 bits) is, at several times the cost.
/// </summary>
public static class PageHash
{
    private const ulong P1 = 0x9E3779B185EBCA87UL, P2 = 0xC2B2AE3D27D4EB4FUL, P3 = 0x165667B19E3779F9UL,
        P4 = 0x85EBCA77C2B2AE63UL, P5 = 0x27D4EB2F165667C5UL;

    public static Hash128 Compute(PageHashAlgorithm algorithm, ReadOnlySpan<byte> data) =>
        algorithm == PageHashAlgorithm.Sha256 ? Sha256(data) : Fast128(data);

    public static Hash128 Sha256(ReadOnlySpan<byte> data)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(data, digest);
        return Hash128.ReadFrom(digest);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Round(ulong acc, ulong input) => BitOperations.RotateLeft(acc + input * P2, 31) * P1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Avalanche(ulong h)
    {
        h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32;
        return h;
    }

    public static Hash128 Fast128(ReadOnlySpan<byte> data)
    {
        ulong v1 = unchecked(P1 + P2), v2 = P2, v3 = 0, v4 = unchecked(0 - P1);
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        int n = words.Length & ~3;
        ref ulong w = ref MemoryMarshal.GetReference(words);
        for (int i = 0; i < n; i += 4)
        {
            v1 = Round(v1, Unsafe.Add(ref w, i));
            v2 = Round(v2, Unsafe.Add(ref w, i + 1));
            v3 = Round(v3, Unsafe.Add(ref w, i + 2));
            v4 = Round(v4, Unsafe.Add(ref w, i + 3));
        }
        // The tail: whole words, then bytes, folded into v1..v4 in turn.
        ulong tail = 0;
        int k = 0;
        for (int i = n; i < words.Length; i++, k++)
        {
            switch (k & 3) { case 0: v1 = Round(v1, words[i]); break; case 1: v2 = Round(v2, words[i]); break; case 2: v3 = Round(v3, words[i]); break; default: v4 = Round(v4, words[i]); break; }
        }
        for (int i = words.Length * 8; i < data.Length; i++) tail = (tail << 8) | data[i];
        ulong len = (ulong)data.Length;
        ulong a = BitOperations.RotateLeft(v1, 1) + BitOperations.RotateLeft(v2, 7) + BitOperations.RotateLeft(v3, 12) + BitOperations.RotateLeft(v4, 18);
        a = (a ^ Round(0, v1)) * P1 + P4;
        a = (a ^ Round(0, v2)) * P1 + P4;
        a = (a ^ Round(0, v3)) * P1 + P4;
        a = (a ^ Round(0, v4)) * P1 + P4;
        ulong b = BitOperations.RotateLeft(v4, 3) ^ BitOperations.RotateLeft(v3, 17) ^ BitOperations.RotateLeft(v2, 29) ^ BitOperations.RotateLeft(v1, 41);
        b = (b + v1 * P3) * P5;
        b = (b ^ (v2 * P4)) * P1;
        b = (b + v3 * P5) * P2;
        b = (b ^ (v4 * P3)) * P4;
        a += len ^ Round(0, tail);
        b ^= (len * P5) + tail * P3;
        return new Hash128(Avalanche(a), Avalanche(b ^ (a >> 17)));
    }

    private static readonly object Gate = new();
    private static (int Size, Hash128 Fast, Hash128 Sha)? _zero;

    /// <summary>The hash of a page of zeros (what an absent page holds).</summary>
    public static Hash128 ZeroPage(PageHashAlgorithm algorithm, int pageSize)
    {
        lock (Gate)
        {
            if (_zero is not { } z || z.Size != pageSize)
            {
                var zeros = new byte[pageSize];
                z = (pageSize, Fast128(zeros), Sha256(zeros));
                _zero = z;
            }
            return algorithm == PageHashAlgorithm.Sha256 ? z.Sha : z.Fast;
        }
    }

    /// <summary>True when every byte is zero (vectorised).</summary>
    public static bool IsZero(ReadOnlySpan<byte> data) => data.IndexOfAnyExcept((byte)0) < 0;
}
