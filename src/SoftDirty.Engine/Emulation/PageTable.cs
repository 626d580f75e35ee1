using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SoftDirty.Emulation;

/// <summary>
/// A lazily allocated multi-level page table of packed <see cref="Pte"/> values: a 256-entry top level
/// (bits 39-46 of the address), 512-entry upper tables, and PMD tables of 512 slots, one per 2 MiB leaf.
/// A PMD slot is empty, a transparent huge page (one PMD entry covering 512 pages), or a leaf of 512 PTEs
/// stored in one of three forms so sparse use stays cheap (random use of 64 GiB touches ~30 pages a leaf):
/// <list type="bullet">
/// <item>Single: the slot itself holds the only PTE (with its index in <see cref="Pte.IndexMask"/>).</item>
/// <item>Sparse: up to <see cref="MaxSparseEntries"/> PTEs, sorted by index, in a block of a pooled arena.</item>
/// <item>Dense: a 512-entry ulong array, to which a leaf is promoted once it outgrows the sparse form.</item>
/// </list>
/// Every form lives in contiguous ulong arrays, so clearing bits in all entries is a vectorised AND-NOT
/// (<see cref="AndNotAll"/>); the slot encodings never use the bits such a clear touches.
/// </summary>
internal sealed class PageTable
{
    public const int LeafShift = 9;
    public const int LeafEntries = 1 << LeafShift;
    public const ulong LeafIndexMask = LeafEntries - 1;
    public const int MaxSparseEntries = 64;
    private const int TopEntries = 256;
    private const int UpperShift = 18;
    private const int KindShift = 52;
    private const ulong KindMask = 7UL << KindShift;
    private const ulong KindSingle = 1UL << KindShift;
    private const ulong KindHuge = 2UL << KindShift;
    private const ulong KindDense = 3UL << KindShift;
    private const ulong KindSparse = 4UL << KindShift;
    // A sparse slot: class in bits 0-2 (block sizes 2, 4, 8, 16, 32, 64), count in bits 3-9, block id in bits 10-39;
    // clear of the PTE flag bits (40 and up) that AndNotAll clears in every slot.
    private const int SparseClasses = 6;
    private const int SparseCountShift = 3;
    private const ulong SparseClassMask = 7;
    private const ulong SparseCountMask = 127;
    private const int SparseBlockShift = 10;
    private const ulong SparseBlockMask = (1UL << 30) - 1;
    /// <summary>Sparse blocks of at most this many entries are searched in order; larger ones by bisection.</summary>
    private const int LinearSearchEntries = 8;
    private const int ArenaChunkWords = 8192;
    private const long NoBlock = -1;

    public enum SlotKind { None, Single, Huge, Dense, Sparse }

    private readonly ulong[]?[]?[] _top = new ulong[]?[]?[TopEntries];
    private ulong[]?[] _dense = new ulong[]?[16];
    private int _denseCount;
    private readonly Stack<int> _denseFree = new();
    private readonly List<ulong[]>[] _arena = new List<ulong[]>[SparseClasses];
    private readonly long[] _arenaBlocks = new long[SparseClasses];
    private readonly long[] _freeHead = new long[SparseClasses];
    // The leaves (2 MiB ranges) for which the kernel would have a PTE table: made by the first PTE set in
    // the range, kept when its entries are cleared, gone when the range becomes a huge PMD or FreeTable
    // is called (free_pgtables). PAGEMAP_SCAN shows the difference for never-touched pages. A sparse
    // bitmap: one bit a leaf, in chunks of 4096 leaves (8 GiB of address space, 512 bytes).
    private const int TableChunkShift = 12;
    private const ulong TableChunkMask = (1UL << TableChunkShift) - 1;
    private readonly Dictionary<ulong, ulong[]> _tables = new();

    public PageTable()
    {
        for (int c = 0; c < SparseClasses; c++) { _arena[c] = new List<ulong[]>(); _freeHead[c] = NoBlock; }
    }

    public static SlotKind KindOf(ulong slot) => slot == 0 ? SlotKind.None : (SlotKind)((slot & KindMask) >> KindShift);
    /// <summary>The PMD value of a huge slot (the slot without its kind bits).</summary>
    public static ulong HugeValue(ulong slot) => slot & ~KindMask;

    private ulong[]? PmdTable(ulong leaf, bool create)
    {
        ref var upper = ref _top[leaf >> UpperShift];
        if (upper == null) { if (!create) return null; upper = new ulong[]?[LeafEntries]; }
        ref var pmd = ref upper[(leaf >> LeafShift) & LeafIndexMask];
        if (pmd == null) { if (!create) return null; pmd = new ulong[LeafEntries]; }
        return pmd;
    }

    public ulong GetSlot(ulong leaf)
    {
        var pmd = PmdTable(leaf, false);
        return pmd == null ? 0 : pmd[leaf & LeafIndexMask];
    }

    private ref ulong SlotRef(ulong leaf) => ref PmdTable(leaf, true)![leaf & LeafIndexMask];

    /// <summary>The dense PTE array of a leaf, or null when the leaf has another form.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong[]? TryGetDense(ulong leaf)
    {
        var upper = _top[leaf >> UpperShift];
        if (upper == null) return null;
        var pmd = upper[(leaf >> LeafShift) & LeafIndexMask];
        if (pmd == null) return null;
        ulong slot = pmd[leaf & LeafIndexMask];
        return (slot & KindMask) == KindDense ? _dense[(int)(uint)slot] : null;
    }

    /// <summary>The PTE of a page; 0 for none. Not for huge leaves (see <see cref="GetSlot"/>).</summary>
    public ulong Get(ulong page)
    {
        ulong slot = GetSlot(page >> LeafShift);
        return slot == 0 ? 0 : GetInSlot(slot, (int)(page & LeafIndexMask));
    }

    private ulong GetInSlot(ulong slot, int index)
    {
        switch (slot & KindMask)
        {
            case KindDense: return _dense[(int)(uint)slot]![index];
            case KindSingle:
                return (int)((slot & Pte.IndexMask) >> Pte.IndexShift) == index ? slot & ~(KindMask | Pte.IndexMask) : 0;
            case KindSparse:
            {
                var (chunk, offset, count) = SparseBlock(slot);
                int at = Find(chunk, offset, count, index);
                return at < 0 ? 0 : chunk[at] & ~Pte.IndexMask;
            }
            default: throw new InvalidOperationException("huge leaf read as PTEs");
        }
    }

    /// <summary>Where the entry of <paramref name="index"/> is in a sparse block (sorted by index), or -1.</summary>
    private static int Find(ulong[] chunk, int offset, int count, int index)
    {
        int lo = offset, hi = offset + count; // narrow by bisection to a few entries, then scan them
        ulong key = (ulong)index << Pte.IndexShift;
        while (hi - lo > LinearSearchEntries)
        {
            int mid = (lo + hi) >>> 1;
            if ((chunk[mid] & Pte.IndexMask) < key) lo = mid + 1; else hi = mid;
        }
        for (int i = lo; i < offset + count; i++)
        {
            ulong ix = chunk[i] & Pte.IndexMask;
            if (ix == key) return i;
            if (ix > key) break;
        }
        return -1;
    }

    /// <summary>Sets the PTE of a page (0 removes it), changing the leaf's form as needed. Not for huge leaves.</summary>
    public void Set(ulong page, ulong pte)
    {
        ulong leaf = page >> LeafShift;
        int index = (int)(page & LeafIndexMask);
        ulong slot = GetSlot(leaf);
        switch (slot & KindMask)
        {
            case 0 when slot == 0:
                if (pte != 0) { SlotRef(leaf) = pte | ((ulong)index << Pte.IndexShift) | KindSingle; AddTable(leaf); }
                return;
            case KindDense:
                _dense[(int)(uint)slot]![index] = pte;
                return;
            case KindHuge:
                throw new InvalidOperationException("PTE set inside a huge leaf");
            case KindSparse when pte != 0:
            {
                var (chunk, offset, count) = SparseBlock(slot);
                int at = Find(chunk, offset, count, index);
                if (at >= 0) { chunk[at] = pte | ((ulong)index << Pte.IndexShift); return; } // an entry changed in place
                break;
            }
        }
        // Single and sparse: rebuild through a small buffer of (index, pte) pairs.
        Span<ulong> entries = stackalloc ulong[MaxSparseEntries + 1];
        int n = 0;
        bool placed = false;
        ulong tagged = pte == 0 ? 0 : pte | ((ulong)index << Pte.IndexShift);
        if ((slot & KindMask) == KindSingle)
        {
            ulong e = slot & ~KindMask;
            int ix = (int)((e & Pte.IndexMask) >> Pte.IndexShift);
            if (ix == index) { placed = true; if (tagged != 0) entries[n++] = tagged; }
            else
            {
                if (!placed && tagged != 0 && index < ix) { entries[n++] = tagged; placed = true; }
                entries[n++] = e;
            }
        }
        else
        {
            var (chunk, offset, count) = SparseBlock(slot);
            for (int i = 0; i < count; i++)
            {
                ulong e = chunk[offset + i];
                int ix = (int)((e & Pte.IndexMask) >> Pte.IndexShift);
                if (ix == index) { placed = true; if (tagged != 0) entries[n++] = tagged; continue; }
                if (!placed && index < ix) { placed = true; if (tagged != 0) entries[n++] = tagged; }
                entries[n++] = e;
            }
        }
        if (!placed && tagged != 0) entries[n++] = tagged;
        StoreTagged(leaf, slot, entries[..n]);
    }

    /// <summary>Stores a sorted list of index-tagged PTEs as a leaf, freeing the old form.</summary>
    private void StoreTagged(ulong leaf, ulong oldSlot, ReadOnlySpan<ulong> tagged)
    {
        int n = tagged.Length;
        if (n > MaxSparseEntries)
        {
            ReleaseStorage(oldSlot);
            int id = AllocDense();
            var arr = _dense[id]!;
            foreach (ulong e in tagged) arr[(int)((e & Pte.IndexMask) >> Pte.IndexShift)] = e & ~Pte.IndexMask;
            SlotRef(leaf) = KindDense | (uint)id;
            return;
        }
        if ((oldSlot & KindMask) == KindSparse)
        {
            int cls = (int)(oldSlot & SparseClassMask);
            if (n > 1 && n <= (2 << cls))
            {
                var (chunk, offset, _) = SparseBlock(oldSlot);
                tagged.CopyTo(chunk.AsSpan(offset));
                SlotRef(leaf) = (oldSlot & ~(SparseCountMask << SparseCountShift)) | ((ulong)n << SparseCountShift);
                return;
            }
        }
        ReleaseStorage(oldSlot);
        if (n == 0) { ref ulong s = ref SlotRef(leaf); s = 0; return; }
        if (n == 1) { SlotRef(leaf) = tagged[0] | KindSingle; return; }
        int c = 0;
        while ((2 << c) < n) c++;
        long block = AllocBlock(c);
        var (ch, off) = BlockLocation(c, block);
        tagged.CopyTo(ch.AsSpan(off));
        SlotRef(leaf) = KindSparse | (uint)c | ((ulong)(uint)n << SparseCountShift) | ((ulong)block << SparseBlockShift);
    }

    /// <summary>Expands a (non-huge) leaf into 512 PTEs.</summary>
    public void ReadLeaf(ulong slot, Span<ulong> destination)
    {
        switch (slot & KindMask)
        {
            case KindDense: _dense[(int)(uint)slot].AsSpan().CopyTo(destination); return;
            case KindHuge: throw new InvalidOperationException("huge leaf read as PTEs");
        }
        destination[..LeafEntries].Clear();
        if (slot == 0) return;
        if ((slot & KindMask) == KindSingle)
        {
            ulong e = slot & ~KindMask;
            destination[(int)((e & Pte.IndexMask) >> Pte.IndexShift)] = e & ~Pte.IndexMask;
            return;
        }
        var (chunk, offset, count) = SparseBlock(slot);
        for (int i = 0; i < count; i++)
        {
            ulong e = chunk[offset + i];
            destination[(int)((e & Pte.IndexMask) >> Pte.IndexShift)] = e & ~Pte.IndexMask;
        }
    }

    /// <summary>Copies the index-tagged PTEs of a single or sparse slot; returns how many.</summary>
    public int SparseEntries(ulong slot, Span<ulong> tagged)
    {
        if ((slot & KindMask) == KindSingle) { tagged[0] = slot & ~KindMask; return 1; }
        var (chunk, offset, count) = SparseBlock(slot);
        chunk.AsSpan(offset, count).CopyTo(tagged);
        return count;
    }

    /// <summary>Replaces a leaf with 512 PTEs, choosing the smallest form.</summary>
    public void WriteLeaf(ulong leaf, ReadOnlySpan<ulong> ptes)
    {
        ulong slot = GetSlot(leaf);
        if (slot == 0 || (slot & KindMask) == KindHuge) { if (ptes[..LeafEntries].IndexOfAnyExcept(0UL) >= 0) AddTable(leaf); }
        if ((slot & KindMask) == KindDense) { ptes[..LeafEntries].CopyTo(_dense[(int)(uint)slot]); return; }
        Span<ulong> tagged = stackalloc ulong[MaxSparseEntries + 1];
        int n = 0;
        for (int i = 0; i < LeafEntries; i++)
        {
            if (ptes[i] == 0) continue;
            if (n > MaxSparseEntries) { n++; break; }
            tagged[n++] = ptes[i] | ((ulong)i << Pte.IndexShift);
        }
        if (n > MaxSparseEntries)
        {
            ReleaseStorage(slot);
            int id = AllocDense();
            ptes[..LeafEntries].CopyTo(_dense[id]);
            SlotRef(leaf) = KindDense | (uint)id;
            return;
        }
        StoreTagged(leaf, slot, tagged[..n]);
    }

    /// <summary>Makes a leaf a huge PMD entry (freeing its PTEs) or updates one.</summary>
    public void SetHuge(ulong leaf, ulong pmd)
    {
        ulong slot = GetSlot(leaf);
        if ((slot & KindMask) != KindHuge) ReleaseStorage(slot);
        SlotRef(leaf) = (pmd & ~KindMask) | KindHuge;
        FreeTable(leaf);
    }

    private void AddTable(ulong leaf)
    {
        if (!_tables.TryGetValue(leaf >> TableChunkShift, out var bits))
            _tables[leaf >> TableChunkShift] = bits = new ulong[(1 << TableChunkShift) / 64];
        bits[(int)((leaf & TableChunkMask) >> 6)] |= 1UL << (int)(leaf & 63);
    }

    /// <summary>Whether the kernel would have a PTE table for this leaf (empty or not; never for a huge PMD).</summary>
    public bool HasTable(ulong leaf) =>
        _tables.TryGetValue(leaf >> TableChunkShift, out var bits) && (bits[(int)((leaf & TableChunkMask) >> 6)] & (1UL << (int)(leaf & 63))) != 0;

    /// <summary>Makes (an empty) PTE table for a leaf that has none, as pte_alloc does; a huge leaf is left alone.</summary>
    public void MakeTable(ulong leaf)
    {
        if (KindOf(GetSlot(leaf)) != SlotKind.Huge) AddTable(leaf);
    }

    /// <summary>free_pgtables: the leaf's PTE table goes (its entries must be none already).</summary>
    public void FreeTable(ulong leaf)
    {
        if (_tables.TryGetValue(leaf >> TableChunkShift, out var bits))
            bits[(int)((leaf & TableChunkMask) >> 6)] &= ~(1UL << (int)(leaf & 63));
    }

    /// <summary>The leaves in [from, end) that have a PTE table, in order.</summary>
    public List<ulong> TablesIn(ulong from, ulong end)
    {
        var list = new List<ulong>();
        if (end <= from) return list;
        var chunks = new List<ulong>();
        foreach (var key in _tables.Keys)
            if (key >= from >> TableChunkShift && key <= (end - 1) >> TableChunkShift) chunks.Add(key);
        chunks.Sort();
        foreach (var key in chunks)
        {
            var bits = _tables[key];
            for (int w = 0; w < bits.Length; w++)
            {
                for (ulong word = bits[w]; word != 0; word &= word - 1)
                {
                    ulong leaf = (key << TableChunkShift) | ((ulong)(uint)w << 6) | (uint)System.Numerics.BitOperations.TrailingZeroCount(word);
                    if (leaf >= from && leaf < end) list.Add(leaf);
                }
            }
        }
        return list;
    }

    /// <summary>Empties a leaf.</summary>
    public void ClearLeaf(ulong leaf)
    {
        var pmd = PmdTable(leaf, false);
        if (pmd == null) return;
        ReleaseStorage(pmd[leaf & LeafIndexMask]);
        pmd[leaf & LeafIndexMask] = 0;
    }

    /// <summary>The first leaf in [from, end) with a non-empty slot, or end.</summary>
    public ulong NextLeaf(ulong from, ulong end)
    {
        ulong leaf = from;
        while (leaf < end)
        {
            var upper = _top[leaf >> UpperShift];
            if (upper == null) { leaf = ((leaf >> UpperShift) + 1) << UpperShift; continue; }
            var pmd = upper[(leaf >> LeafShift) & LeafIndexMask];
            if (pmd == null) { leaf = ((leaf >> LeafShift) + 1) << LeafShift; continue; }
            ulong tableEnd = Math.Min(end, ((leaf >> LeafShift) + 1) << LeafShift);
            for (; leaf < tableEnd; leaf++)
                if (pmd[leaf & LeafIndexMask] != 0) return leaf;
        }
        return end;
    }

    /// <summary>Clears <paramref name="mask"/> in every entry of every leaf and PMD slot: a vectorised AND-NOT.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void AndNotAll(ulong mask)
    {
        foreach (var upper in _top)
        {
            if (upper == null) continue;
            foreach (var pmd in upper) if (pmd != null) AndNot(pmd, mask);
        }
        for (int i = 0; i < _denseCount; i++) AndNot(_dense[i], mask);
        foreach (var chunks in _arena) foreach (var chunk in chunks) AndNot(chunk, mask);
    }

    /// <summary>x[i] &amp;= ~mask over a span, four words at a time where the CPU allows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AndNot(Span<ulong> words, ulong mask)
    {
        int i = 0;
        ref ulong r = ref MemoryMarshal.GetReference(words);
        if (Vector256.IsHardwareAccelerated)
        {
            var keep = Vector256.Create(~mask);
            for (; i <= words.Length - Vector256<ulong>.Count; i += Vector256<ulong>.Count)
                (Vector256.LoadUnsafe(ref r, (nuint)i) & keep).StoreUnsafe(ref r, (nuint)i);
        }
        for (; i < words.Length; i++) Unsafe.Add(ref r, i) &= ~mask;
    }

    /// <summary>The dense array of a dense slot (for in-place loops).</summary>
    public ulong[] DenseArray(ulong slot) => _dense[(int)(uint)slot]!;

    private (ulong[] Chunk, int Offset, int Count) SparseBlock(ulong slot)
    {
        int cls = (int)(slot & SparseClassMask);
        int count = (int)((slot >> SparseCountShift) & SparseCountMask);
        var (chunk, offset) = BlockLocation(cls, (long)((slot >> SparseBlockShift) & SparseBlockMask));
        return (chunk, offset, count);
    }

    private (ulong[] Chunk, int Offset) BlockLocation(int cls, long block)
    {
        long word = block * (2L << cls);
        return (_arena[cls][(int)(word / ArenaChunkWords)], (int)(word % ArenaChunkWords));
    }

    private long AllocBlock(int cls)
    {
        long head = _freeHead[cls];
        if (head != NoBlock)
        {
            var (chunk, offset) = BlockLocation(cls, head);
            _freeHead[cls] = chunk[offset] == 0 ? NoBlock : (long)chunk[offset] - 1;
            chunk.AsSpan(offset, 2 << cls).Clear();
            return head;
        }
        long block = _arenaBlocks[cls]++;
        if (block * (2L << cls) / ArenaChunkWords >= _arena[cls].Count) _arena[cls].Add(new ulong[ArenaChunkWords]);
        return block;
    }

    private void FreeBlock(int cls, long block)
    {
        var (chunk, offset) = BlockLocation(cls, block);
        chunk.AsSpan(offset, 2 << cls).Clear();
        // Intrusive free list: the first word holds next + 1 (0 = end); block ids stay below 2^32, clear of every PTE flag bit.
        chunk[offset] = _freeHead[cls] == NoBlock ? 0 : (ulong)(_freeHead[cls] + 1);
        _freeHead[cls] = block;
    }

    private int AllocDense()
    {
        if (_denseFree.Count > 0) return _denseFree.Pop();
        if (_denseCount == _dense.Length) Array.Resize(ref _dense, _dense.Length * 2);
        _dense[_denseCount] = new ulong[LeafEntries];
        return _denseCount++;
    }

    private void ReleaseStorage(ulong slot)
    {
        switch (slot & KindMask)
        {
            case KindDense:
                int id = (int)(uint)slot;
                Array.Clear(_dense[id]!);
                _denseFree.Push(id);
                break;
            case KindSparse:
                FreeBlock((int)(slot & SparseClassMask), (long)((slot >> SparseBlockShift) & SparseBlockMask));
                break;
        }
    }
}
