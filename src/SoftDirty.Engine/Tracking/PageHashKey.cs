using System;
using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;

namespace SoftDirty.Tracking;

/// <summary>
/// The secret words Fast128 mixes into every stripe (<see cref="PageHash"/>). With a fixed, public secret the hash
/// is easy to collide on purpose: a process that knows it can change its memory so that a page keeps its hash
/// (two words of one lane whose low halves equal the secret's multiply to zero, and their sum is all the lane
/// keeps), and whatever compared pages by that hash took the change for no change. So every comparison that
/// decides whether a page changed uses a random key: a Hash tracker one of its own, a memory-image chain one
/// written in its full image's manifest (a process that cannot read the image cannot learn it). Unkeyed, the
/// fixed secret, checks files (index.bin, manifests) and the pages of images saved before chains had a key.
/// </summary>
internal sealed class PageHashKey
{
    /// <summary>Bytes of a key: 256 random bits, expanded into the hash's secret with SHA-256.</summary>
    public const int KeyBytes = 32;
    /// <summary>Words of the secret Fast128 takes (stripe s of a block uses words s..s+7, the scramble 24..31).</summary>
    public const int SecretWords = 32;
    private const ulong FixedSeed = 0x5D1E7A3C9B1F4C6EUL, Golden = 0x9E3779B97F4A7C15UL;

    private readonly byte[]? _key;
    private readonly object _gate = new();
    private Hash128? _zero;
    private int _zeroSize;

    private PageHashKey(byte[]? key, ulong[] secret)
    {
        _key = key;
        Secret = secret;
    }

    /// <summary>The secret words (read only: the hash loads them by reference).</summary>
    internal ulong[] Secret { get; }

    /// <summary>The fixed secret: the hash of files, and of pages of images that carry no key.</summary>
    public static PageHashKey Unkeyed { get; } = new(null, FixedSecret());

    /// <summary>A new random key.</summary>
    public static PageHashKey NewRandom() => FromBytes(RandomNumberGenerator.GetBytes(KeyBytes));

    /// <summary>The key written as <paramref name="hex"/> (<see cref="Hex"/>); null for null (an image without a key).</summary>
    public static PageHashKey? Parse(string? hex)
    {
        if (hex is null) return null;
        if (hex.Length != KeyBytes * 2) throw new FormatException($"a page-hash key is {KeyBytes * 2} hexadecimal digits, not {hex.Length}.");
        return FromBytes(Convert.FromHexString(hex));
    }

    private static PageHashKey FromBytes(byte[] key)
    {
        // SHA-256 of the key and a block number, eight blocks of four words.
        var secret = new ulong[SecretWords];
        Span<byte> input = stackalloc byte[KeyBytes + 1];
        Span<byte> digest = stackalloc byte[32];
        key.CopyTo(input);
        for (int block = 0; block < SecretWords / 4; block++)
        {
            input[KeyBytes] = (byte)block;
            SHA256.HashData(input, digest);
            for (int w = 0; w < 4; w++) secret[block * 4 + w] = BinaryPrimitives.ReadUInt64LittleEndian(digest[(w * 8)..]);
        }
        return new PageHashKey(key, secret);
    }

    private static ulong[] FixedSecret()
    {
        // SplitMix64 of a fixed seed.
        var k = new ulong[SecretWords];
        ulong x = FixedSeed;
        for (int i = 0; i < k.Length; i++)
        {
            ulong z = x += Golden;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            k[i] = z ^ (z >> 31);
        }
        return k;
    }

    /// <summary>Whether this is the fixed secret.</summary>
    public bool IsUnkeyed => _key is null;

    /// <summary>The hash of a page of zeros of <paramref name="pageSize"/> bytes under this key (kept for the last size asked).</summary>
    public Hash128 ZeroPage(int pageSize)
    {
        lock (_gate)
        {
            if (_zero is not { } z || _zeroSize != pageSize)
            {
                z = PageHash.Fast128(new byte[pageSize], this);
                _zero = z;
                _zeroSize = pageSize;
            }
            return z;
        }
    }

    /// <summary>The key as hexadecimal digits (for a manifest); null for the fixed secret.</summary>
    public string? Hex => _key is null ? null : Convert.ToHexString(_key).ToLower(CultureInfo.InvariantCulture);
}
