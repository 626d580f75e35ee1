using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Security.Cryptography;

namespace SoftDirty.Tracking;

/// <summary>
/// Page hashes. Fast128 is this project's own non-cryptographic 128-bit hash, built the way XXH3 is: eight
/// 64-bit accumulators take 64-byte stripes (each lane adds the product of the two 32-bit halves of the data
/// XORed with a per-stripe key, and its neighbour's data), a non-linear scramble every 1 KiB block, and two
/// different 128-bit multiply-fold finalisations for the two halves. The same arithmetic runs with AVX2
/// (four lanes an instruction), AVX-512 (eight) or in scalar code, so a hash is the same on every machine: memory images
/// stay portable. Its secret words come from a <see cref="PageHashKey"/>: the fixed one (files), or a random one
/// wherever a hash decides that a page did not change (see there: the fixed one is easy to collide on purpose).
/// It is not meant to resist an adversary who knows the key; Sha256 (truncated) is.
/// The hot methods are compiled fully optimised at once (AggressiveOptimization): tiered compilation ran a
/// whole snapshot of a few hundred MiB at tier 0 (unoptimised vector intrinsics, ~8x slower) on a busy
/// machine, where the background promotion to tier 1 comes late.
/// </summary>
internal static class PageHash
{
    private const ulong P1 = 0x9E3779B185EBCA87UL, P2 = 0xC2B2AE3D27D4EB4FUL, P3 = 0x165667B19E3779F9UL,
        P4 = 0x85EBCA77C2B2AE63UL, P5 = 0x27D4EB2F165667C5UL, P32_1 = 0x9E3779B1UL, P32_2 = 0x85EBCA77UL, P32_3 = 0xC2B2AE3DUL;
    private const int StripeWords = 8, StripesPerBlock = 16, BlockBytes = StripesPerBlock * StripeWords * 8;

    public static Hash128 Compute(PageHashAlgorithm algorithm, ReadOnlySpan<byte> data, PageHashKey key) =>
        algorithm == PageHashAlgorithm.Sha256 ? Sha256(data) : Fast128(data, key);

    public static Hash128 Sha256(ReadOnlySpan<byte> data)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(data, digest);
        return Hash128.ReadFrom(digest);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Round(ulong acc, ulong input) => BitOperations.RotateLeft(acc + input * P2, 31) * P1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Fold(ulong a, ulong b)
    {
        ulong hi = Math.BigMul(a, b, out ulong lo);
        return hi ^ lo;
    }

    private static ulong Avalanche(ulong h)
    {
        h ^= h >> 37; h *= P3; h ^= h >> 32;
        return h;
    }

    /// <summary>Fast128 with the fixed secret (<see cref="PageHashKey.Unkeyed"/>).</summary>
    public static Hash128 Fast128(ReadOnlySpan<byte> data) => Fast128(data, PageHashKey.Unkeyed);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Hash128 Fast128(ReadOnlySpan<byte> data, PageHashKey key)
    {
        Span<ulong> acc = stackalloc ulong[8] { P32_3, P1, P2, P3, P4, P32_2, P5, P32_1 };
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        int blocks = words.Length / StripeWords / StripesPerBlock;
        Accumulate(acc, words, blocks, key.Secret);
        return Finish(acc, data, words, blocks, (ulong)data.Length, key.Secret);
    }

    /// <summary>Bytes a block of the hash takes (the unit <see cref="Fast128Hasher"/> feeds in).</summary>
    internal const int Fast128BlockBytes = BlockBytes;

    /// <summary>The first accumulator values of Fast128.</summary>
    internal static void Seed(Span<ulong> acc)
    {
        ReadOnlySpan<ulong> seed = [P32_3, P1, P2, P3, P4, P32_2, P5, P32_1];
        seed.CopyTo(acc);
    }

    /// <summary>Whole 1 KiB blocks into the accumulators (AVX2 where the machine has it, the same arithmetic either way).</summary>
    internal static void Accumulate(Span<ulong> acc, ReadOnlySpan<ulong> words, int blocks, ulong[] secret)
    {
        if (blocks > 0 && Avx512F.IsSupported) AccumulateAvx512(acc, words, blocks, secret);
        else if (blocks > 0 && Avx2.IsSupported) AccumulateAvx2(acc, words, blocks, secret);
        else AccumulateScalar(acc, words, blocks, secret);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static Hash128 Finish(Span<ulong> acc, ReadOnlySpan<byte> data, ReadOnlySpan<ulong> words, int blocks, ulong totalLength, ulong[] secret)
    {
        // Stripes after the last whole block, then the words and bytes left, as a scrambled tail.
        int w = blocks * StripesPerBlock * StripeWords;
        for (int s = 0; w + StripeWords <= words.Length; s++, w += StripeWords) Stripe(acc, words.Slice(w, StripeWords), s, secret);
        for (int k = 0; w < words.Length; w++, k++) acc[k & 7] = Round(acc[k & 7], words[w]);
        ulong tail = 0;
        for (int i = words.Length * 8; i < data.Length; i++) tail = (tail << 8) | data[i];
        ulong len = totalLength;
        acc[7] = Round(acc[7], tail ^ len);
        ulong low = len * P1, high = ~(len * P2);
        for (int i = 0; i < 4; i++)
        {
            low += Fold(acc[2 * i] ^ secret[2 * i], acc[2 * i + 1] ^ secret[2 * i + 1]);
            high += Fold(acc[2 * i] ^ secret[16 + 2 * i], acc[2 * i + 1] ^ secret[17 + 2 * i]);
        }
        return new Hash128(Avalanche(low), Avalanche(high ^ BitOperations.RotateLeft(low, 29)));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Stripe(Span<ulong> acc, ReadOnlySpan<ulong> d, int s, ulong[] secret)
    {
        for (int i = 0; i < 8; i++)
        {
            ulong dk = d[i] ^ secret[s + i];
            acc[i ^ 1] += d[i];
            acc[i] += (dk & 0xFFFFFFFFUL) * (dk >> 32);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scramble(Span<ulong> acc, ulong[] secret)
    {
        for (int i = 0; i < 8; i++)
        {
            ulong a = acc[i];
            a ^= a >> 47;
            a ^= secret[24 + (i & 7)];
            acc[i] = a * P32_1;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateScalar(Span<ulong> acc, ReadOnlySpan<ulong> words, int blocks, ulong[] secret)
    {
        for (int b = 0; b < blocks; b++)
        {
            int baseWord = b * StripesPerBlock * StripeWords;
            for (int s = 0; s < StripesPerBlock; s++) Stripe(acc, words.Slice(baseWord + s * StripeWords, StripeWords), s, secret);
            Scramble(acc, secret);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateAvx2(Span<ulong> acc, ReadOnlySpan<ulong> words, int blocks, ulong[] secret)
    {
        ref ulong a0 = ref MemoryMarshal.GetReference(acc);
        ref ulong w0 = ref MemoryMarshal.GetReference(words);
        ref ulong k0 = ref MemoryMarshal.GetArrayDataReference(secret);
        var accA = Vector256.LoadUnsafe(ref a0, 0);
        var accB = Vector256.LoadUnsafe(ref a0, 4);
        var prime = Vector256.Create(P32_1).AsUInt32();
        var scrA = Vector256.LoadUnsafe(ref k0, 24);
        var scrB = Vector256.LoadUnsafe(ref k0, 28);
        for (int b = 0; b < blocks; b++)
        {
            nuint baseWord = (nuint)(b * StripesPerBlock * StripeWords);
            for (int s = 0; s < StripesPerBlock; s++)
            {
                nuint at = baseWord + (nuint)(s * StripeWords);
                var dA = Vector256.LoadUnsafe(ref w0, at);
                var dB = Vector256.LoadUnsafe(ref w0, at + 4);
                var kA = dA ^ Vector256.LoadUnsafe(ref k0, (nuint)s);
                var kB = dB ^ Vector256.LoadUnsafe(ref k0, (nuint)s + 4);
                var pA = Avx2.Multiply(kA.AsUInt32(), Vector256.ShiftRightLogical(kA, 32).AsUInt32());
                var pB = Avx2.Multiply(kB.AsUInt32(), Vector256.ShiftRightLogical(kB, 32).AsUInt32());
                accA += Avx2.Permute4x64(dA, 0b10_11_00_01) + pA;
                accB += Avx2.Permute4x64(dB, 0b10_11_00_01) + pB;
            }
            accA = ScrambleAvx2(accA, scrA, prime);
            accB = ScrambleAvx2(accB, scrB, prime);
        }
        accA.StoreUnsafe(ref a0, 0);
        accB.StoreUnsafe(ref a0, 4);
    }

    /// <summary>The AVX2 arithmetic with the eight lanes in one 512-bit register (a stripe an instruction).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AccumulateAvx512(Span<ulong> acc, ReadOnlySpan<ulong> words, int blocks, ulong[] secret)
    {
        ref ulong a0 = ref MemoryMarshal.GetReference(acc);
        ref ulong w0 = ref MemoryMarshal.GetReference(words);
        ref ulong k0 = ref MemoryMarshal.GetArrayDataReference(secret);
        var a = Vector512.LoadUnsafe(ref a0, 0);
        var prime = Vector512.Create(P32_1).AsUInt32();
        var scramble = Vector512.LoadUnsafe(ref k0, 24);
        // Each lane takes its neighbour's data (lane i ^ 1), as the 256-bit permute does within its half.
        var neighbour = Vector512.Create(1UL, 0, 3, 2, 5, 4, 7, 6);
        for (int b = 0; b < blocks; b++)
        {
            nuint baseWord = (nuint)(b * StripesPerBlock * StripeWords);
            for (int s = 0; s < StripesPerBlock; s++)
            {
                var d = Vector512.LoadUnsafe(ref w0, baseWord + (nuint)(s * StripeWords));
                var k = d ^ Vector512.LoadUnsafe(ref k0, (nuint)s);
                var product = Avx512F.Multiply(k.AsUInt32(), Vector512.ShiftRightLogical(k, 32).AsUInt32());
                a += Avx512F.PermuteVar8x64(d, neighbour) + product;
            }
            a ^= Vector512.ShiftRightLogical(a, 47);
            a ^= scramble;
            var lo = Avx512F.Multiply(a.AsUInt32(), prime);
            var hi = Avx512F.Multiply(Vector512.ShiftRightLogical(a, 32).AsUInt32(), prime);
            a = lo + Vector512.ShiftLeft(hi, 32);
        }
        a.StoreUnsafe(ref a0, 0);
    }

    /// <summary>The same hash with AVX2 only (tests compare the paths).</summary>
    internal static Hash128 Fast128Avx2(ReadOnlySpan<byte> data)
    {
        Span<ulong> acc = stackalloc ulong[8];
        Seed(acc);
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        int blocks = words.Length / StripeWords / StripesPerBlock;
        var secret = PageHashKey.Unkeyed.Secret;
        if (Avx2.IsSupported && blocks > 0) AccumulateAvx2(acc, words, blocks, secret);
        else AccumulateScalar(acc, words, blocks, secret);
        return Finish(acc, data, words, blocks, (ulong)data.Length, secret);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> ScrambleAvx2(Vector256<ulong> a, Vector256<ulong> key, Vector256<uint> prime)
    {
        a ^= Vector256.ShiftRightLogical(a, 47);
        a ^= key;
        var lo = Avx2.Multiply(a.AsUInt32(), prime);
        var hi = Avx2.Multiply(Vector256.ShiftRightLogical(a, 32).AsUInt32(), prime);
        return lo + Vector256.ShiftLeft(hi, 32);
    }

    /// <summary>The same hash without AVX2 (tests compare the two paths).</summary>
    internal static Hash128 Fast128Scalar(ReadOnlySpan<byte> data)
    {
        Span<ulong> acc = stackalloc ulong[8] { P32_3, P1, P2, P3, P4, P32_2, P5, P32_1 };
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        int blocks = words.Length / StripeWords / StripesPerBlock;
        AccumulateScalar(acc, words, blocks, PageHashKey.Unkeyed.Secret);
        return Finish(acc, data, words, blocks, (ulong)data.Length, PageHashKey.Unkeyed.Secret);
    }

    private static readonly object Gate = new();
    private static (int Size, Hash128 Sha)? _zero;

    /// <summary>The hash of a page of zeros (what an absent page holds); Fast128 under <paramref name="key"/>.</summary>
    public static Hash128 ZeroPage(PageHashAlgorithm algorithm, int pageSize, PageHashKey key)
    {
        if (algorithm != PageHashAlgorithm.Sha256) return key.ZeroPage(pageSize);
        lock (Gate)
        {
            if (_zero is not { } z || z.Size != pageSize)
            {
                z = (pageSize, Sha256(new byte[pageSize]));
                _zero = z;
            }
            return z.Sha;
        }
    }

    /// <summary>True when every byte is zero (vectorised).</summary>
    public static bool IsZero(ReadOnlySpan<byte> data) => data.IndexOfAnyExcept((byte)0) < 0;
}
