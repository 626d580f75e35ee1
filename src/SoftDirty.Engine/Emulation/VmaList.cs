using System;
using System.Collections;
using System.Collections.Generic;

namespace SoftDirty.Emulation;

/// <summary>
/// The VMAs of an emulated process, sorted by address and never overlapping: the emulator's mm->mm_mt, with
/// the operations and names of the kernel's mm/vma.c and mm/mmap.c. <see cref="VmaLookup"/> is vma_lookup
/// (the VMA containing an address), <see cref="FindVma"/> is find_vma (the first VMA ending after it);
/// split, merge, insert, remove and the top-down gap search work on this list only, never on page tables.
/// </summary>
internal sealed class VmaList : IReadOnlyList<Vma>
{
    private readonly List<Vma> _vmas = new();
    private readonly bool _stickySoftDirty;

    /// <summary>An empty list; <paramref name="stickySoftDirty"/> is the kernel's <see cref="KernelProfile.StickySoftDirtyOnMerge"/>.</summary>
    public VmaList(bool stickySoftDirty) => _stickySoftDirty = stickySoftDirty;

    /// <summary>The number of VMAs (map_count).</summary>
    public int Count => _vmas.Count;

    /// <summary>The VMA at a position, in address order.</summary>
    public Vma this[int index] => _vmas[index];

    /// <summary>The VMAs in address order.</summary>
    public IEnumerator<Vma> GetEnumerator() => _vmas.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The position of <see cref="FindVma"/>'s result: the first VMA that ends after <paramref name="address"/>, or <see cref="Count"/> when none does.</summary>
    public int FindVmaIndex(ulong address)
    {
        int lo = 0, hi = _vmas.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (_vmas[mid].End <= address) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    /// <summary>find_vma: the first VMA that ends after <paramref name="address"/> (it may start above it), or null.</summary>
    public Vma? FindVma(ulong address)
    {
        int i = FindVmaIndex(address);
        return i < _vmas.Count ? _vmas[i] : null;
    }

    /// <summary>vma_lookup: the VMA containing <paramref name="address"/>, or null.</summary>
    public Vma? VmaLookup(ulong address) => FindVma(address) is { } vma && vma.Start <= address ? vma : null;

    /// <summary>find_vma_intersection: the first VMA overlapping [start, end), or null.</summary>
    public Vma? FindVmaIntersection(ulong start, ulong end) => FindVma(start) is { } vma && vma.Start < end ? vma : null;

    /// <summary>The first address in [start, end) not covered by a VMA, or null when all is mapped.</summary>
    public ulong? FirstHole(ulong start, ulong end)
    {
        ulong a = start;
        for (int i = FindVmaIndex(start); a < end; i++)
        {
            if (i >= _vmas.Count || _vmas[i].Start > a) return a;
            a = _vmas[i].End;
        }
        return null;
    }

    /// <summary>The position of a VMA in the list, or -1.</summary>
    public int IndexOf(Vma vma) => _vmas.IndexOf(vma);

    /// <summary>vma_link: inserts a VMA into a free range; returns its position.</summary>
    public int Insert(Vma vma)
    {
        int i = FindVmaIndex(vma.Start);
        _vmas.Insert(i, vma);
        return i;
    }

    /// <summary>Removes a VMA from the list (its pages are the caller's business).</summary>
    public void Remove(Vma vma) => _vmas.Remove(vma);

    /// <summary>for_each_vma_range: the VMAs overlapping [start, end), in address order (the list must not change meanwhile).</summary>
    public IEnumerable<Vma> Range(ulong start, ulong end)
    {
        for (int i = FindVmaIndex(start); i < _vmas.Count && _vmas[i].Start < end; i++) yield return _vmas[i];
    }

    /// <summary>Removes every VMA that starts in [start, end); the caller has split at both ends first.</summary>
    public void RemoveRange(ulong start, ulong end)
    {
        int i = FindVmaIndex(start);
        while (i < _vmas.Count && _vmas[i].Start < end) _vmas.RemoveAt(i);
    }

    /// <summary>split_vma: splits the VMA that straddles <paramref name="address"/> in two; a no-op where none does.</summary>
    public void Split(ulong address)
    {
        int i = FindVmaIndex(address);
        if (i < _vmas.Count && _vmas[i].Start < address) _vmas.Insert(i + 1, _vmas[i].SplitAt(address));
    }

    /// <summary>
    /// vma_merge: merges the VMA at <paramref name="index"/> with compatible neighbours; returns the merged
    /// VMA's position. VM_SOFTDIRTY never blocks a merge; with <see cref="KernelProfile.StickySoftDirtyOnMerge"/>
    /// the result has it if either side did, else the survivor's flag wins (the previous VMA, or the next
    /// when only it merges).
    /// </summary>
    public int Merge(int index, bool skipPrev = false, bool skipNext = false)
    {
        bool stickySoftDirty = _stickySoftDirty;
        bool mergedPrev = false;
        if (!skipPrev && index > 0 && _vmas[index - 1].CanMergeWith(_vmas[index]))
        {
            var prev = _vmas[index - 1];
            if (stickySoftDirty) prev.Flags |= _vmas[index].Flags & VmaFlags.SoftDirty;
            prev.AbsorbAnonVma(_vmas[index]);
            prev.End = _vmas[index].End;
            _vmas.RemoveAt(index);
            index--;
            mergedPrev = true;
        }
        if (!skipNext && index + 1 < _vmas.Count && _vmas[index].CanMergeWith(_vmas[index + 1]))
        {
            var cur = _vmas[index];
            var next = _vmas[index + 1];
            var sd = next.Flags & VmaFlags.SoftDirty;
            if (stickySoftDirty) cur.Flags |= sd;
            else if (!mergedPrev) cur.Flags = (cur.Flags & ~VmaFlags.SoftDirty) | sd;
            cur.AbsorbAnonVma(next);
            cur.End = next.End;
            _vmas.RemoveAt(index + 1);
        }
        return index;
    }

    /// <summary>
    /// unmapped_area_topdown: the highest <paramref name="align"/>-aligned start of <paramref name="length"/>
    /// free bytes within [<paramref name="low"/>, <paramref name="high"/>), or null when no gap is big enough.
    /// </summary>
    public ulong? UnmappedAreaTopDown(ulong length, ulong align, ulong low, ulong high)
    {
        for (int i = _vmas.Count; i >= 0; i--)
        {
            ulong gapEnd = Math.Min(i < _vmas.Count ? _vmas[i].Start : high, high);
            ulong gapStart = Math.Max(i > 0 ? _vmas[i - 1].End : low, low);
            if (gapEnd <= gapStart || gapEnd - gapStart < length) continue;
            ulong candidate = (gapEnd - length) & ~(align - 1);
            if (candidate >= gapStart) return candidate;
        }
        return null;
    }
}
