using System;
using System.Collections.Generic;

namespace SoftDirty.Emulation;

/// <summary>
/// The bytes of an emulated page, from its 64-bit content word:
/// <list type="bullet">
/// <item>0: all zero.</item>
/// <item>Fill tag | b: every byte is b (a full-page write of one value).</item>
/// <item>Explicit tag | index: bytes kept verbatim (a partial or arbitrary-data write), 4 KiB each.</item>
/// <item>Generated (bit 63): a SplitMix64 stream seeded by the word (a write of new, unspecified data).</item>
/// </list>
/// Equal words mean equal bytes and a write of bytes a page already holds leaves its word unchanged, so a
/// hash of the bytes changes exactly when the content does.
/// </summary>
internal sealed class PageContent
{
    public const int PageSize = 4096;
    public const ulong Zero = 0;
    private const int TagShift = 56;
    private const ulong TagMask = 0x7FUL << TagShift;
    private const ulong FillTag = 1UL << TagShift;
    private const ulong ExplicitTag = 2UL << TagShift;
    private const ulong GeneratedBit = 1UL << 63;
    private const ulong PayloadMask = (1UL << TagShift) - 1;

    private readonly List<byte[]?> _explicit = new();
    private readonly Stack<int> _explicitFree = new();

    public static ulong Fill(byte value) => value == 0 ? Zero : FillTag | value;
    public static ulong Generated(ulong version) => GeneratedBit | (SplitMix(version) >> 1);

    public int ExplicitPages => _explicit.Count - _explicitFree.Count;

    /// <summary>Writes the 4096 bytes a content word stands for.</summary>
    public void Render(ulong word, Span<byte> destination)
    {
        var page = destination[..PageSize];
        if (word == Zero) { page.Clear(); return; }
        if ((word & GeneratedBit) != 0)
        {
            ulong state = word;
            var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(page);
            for (int i = 0; i < words.Length; i++) words[i] = SplitMix(state += 0x9E3779B97F4A7C15UL);
            return;
        }
        switch (word & TagMask)
        {
            case FillTag: page.Fill((byte)word); return;
            case ExplicitTag: _explicit[(int)(word & PayloadMask)].AsSpan().CopyTo(page); return;
            default: throw new InvalidOperationException($"bad content word 0x{word:x}");
        }
    }

    /// <summary>
    /// The word for a page after writing <paramref name="data"/> (or <paramref name="value"/> repeated) at
    /// <paramref name="offset"/>; the same word when the bytes are already there.
    /// </summary>
    public ulong Apply(ulong word, int offset, int length, byte value, ReadOnlySpan<byte> data, bool useData)
    {
        if (offset == 0 && length == PageSize)
        {
            if (!useData) return Fill(value);
            if (IsUniform(data, out byte b)) return Fill(b);
        }
        Span<byte> page = stackalloc byte[PageSize];
        Render(word, page);
        var target = page.Slice(offset, length);
        if (useData ? target.SequenceEqual(data[..length]) : !target.ContainsAnyExcept(value)) return word;
        if (useData) data[..length].CopyTo(target); else target.Fill(value);
        if (IsUniform(page, out byte u)) return Fill(u);
        return NewExplicit(page);
    }

    private static bool IsUniform(ReadOnlySpan<byte> page, out byte value)
    {
        value = page[0];
        return !page.ContainsAnyExcept(value);
    }

    private ulong NewExplicit(ReadOnlySpan<byte> page)
    {
        var bytes = page.ToArray();
        int index;
        if (_explicitFree.Count > 0) { index = _explicitFree.Pop(); _explicit[index] = bytes; }
        else { index = _explicit.Count; _explicit.Add(bytes); }
        return ExplicitTag | (ulong)(uint)index;
    }

    /// <summary>A word with the same bytes that the caller owns (explicit pages are copied).</summary>
    public ulong Duplicate(ulong word)
    {
        if ((word & GeneratedBit) == 0 && (word & TagMask) == ExplicitTag)
            return NewExplicit(_explicit[(int)(word & PayloadMask)]);
        return word;
    }

    /// <summary>Frees what a word owns (the bytes of an explicit page).</summary>
    public void Release(ulong word)
    {
        if ((word & GeneratedBit) != 0 || (word & TagMask) != ExplicitTag) return;
        int index = (int)(word & PayloadMask);
        _explicit[index] = null;
        _explicitFree.Push(index);
    }

    internal static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }
}
