using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SoftDirty;

/// <summary>
/// Vectorised searches over a chunk of raw pagemap entries: where the next entry that passes a filter is,
/// and where a run of entries with equal flags ends. Four entries per compare (AVX2), a scalar tail.
/// </summary>
internal static class PagemapSearch
{
    /// <summary>
    /// The first index at or after <paramref name="from"/> whose (raw &amp; mask) == value is
    /// <paramref name="equal"/>; the span's length when there is none.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int IndexOf(ReadOnlySpan<PagemapEntry> entries, int from, ulong mask, ulong value, bool equal)
    {
        var raw = MemoryMarshal.Cast<PagemapEntry, ulong>(entries);
        int i = from;
        int width = Vector256<ulong>.Count;
        if (Vector256.IsHardwareAccelerated && raw.Length - i >= width)
        {
            var m = Vector256.Create(mask);
            var v = Vector256.Create(value);
            uint all = (1u << width) - 1;
            ref ulong r0 = ref MemoryMarshal.GetReference(raw);
            for (; i <= raw.Length - width; i += width)
            {
                uint bits = Vector256.Equals(Vector256.LoadUnsafe(ref r0, (nuint)i) & m, v).ExtractMostSignificantBits();
                if (!equal) bits = ~bits & all;
                if (bits != 0) return i + BitOperations.TrailingZeroCount(bits);
            }
        }
        for (; i < raw.Length; i++)
            if (((raw[i] & mask) == value) == equal) return i;
        return raw.Length;
    }

    /// <summary>The end of the run of entries from <paramref name="from"/> whose flag bits (55-63) equal its own.</summary>
    public static int RunEnd(ReadOnlySpan<PagemapEntry> entries, int from) =>
        IndexOf(entries, from + 1, PagemapEntry.FlagMask, entries[from].Raw & PagemapEntry.FlagMask, equal: false);
}
