using System;
using System.Collections.Generic;

namespace SoftDirty.Emulation;

/// <summary>
/// The emulated machine's memory, shared by a process and the children it forks: page frames (PFNs from a
/// counter, freed frames reused), each with a 64-bit content word and a map count; the shared zero page and
/// huge zero page at fixed PFNs; the page cache of files and shared anonymous memory; and swap area 0.
/// Per frame it costs 9 bytes (content word and a one-byte map count; counts of 255 and more spill into a
/// dictionary). Page bytes are generated from the content word (<see cref="PageContent"/>).
/// </summary>
internal sealed class PhysicalMemory
{
    /// <summary>The shared zero page (mapped by anonymous read faults).</summary>
    public const ulong ZeroPfn = 1;
    /// <summary>The first PFN of the huge zero page (512 frames).</summary>
    public const ulong HugeZeroPfn = 512;
    /// <summary>The first PFN handed out; frames below are the kernel's own (zero pages). A frame is "normal" iff PFN &gt;= this.</summary>
    public const ulong FirstUserPfn = 1024;
    public const int FirstUserPfnShift = 10;
    /// <summary>Swap type of the emulated swap area.</summary>
    public const int SwapType = 0;
    private const int ChunkShift = 16;
    private const int ChunkSize = 1 << ChunkShift;
    private const int ChunkMask = ChunkSize - 1;
    private const byte MapCountOverflow = byte.MaxValue;
    private const ulong NoFrame = 0;

    /// <summary>The processes made on this memory (fork adds one): past one, another process can change a shared page.</summary>
    public int Processes;
    /// <summary>The processes of the machine (a fork's parent and children), for what reaches every mapping of a file (truncation).</summary>
    public List<WeakReference<EmulatedProcess>> Members { get; } = new();

    private readonly List<ulong[]> _content = new();
    private readonly List<byte[]> _mapCount = new();
    private readonly Dictionary<ulong, int> _mapCountOverflow = new();
    private ulong _nextPfn = FirstUserPfn;
    private ulong _freeHead = NoFrame;
    private ulong _contentVersion;
    private readonly Dictionary<ulong, SwapSlot> _swap = new();
    private readonly HashSet<ulong> _lazyFree = new();
    private readonly Dictionary<ulong, ulong> _swapCache = new();      // swap offset -> the frame swapped in from it
    private readonly Dictionary<ulong, ulong> _swapCacheOf = new();    // that frame -> its swap offset
    private ulong _nextSwapOffset = 1;

    /// <summary>The lock every process of this machine takes around a mutation.</summary>
    public object Lock { get; } = new();
    /// <summary>Frames mapped more than once; while 0, every mapped normal frame is exclusive.</summary>
    public long SharedFrames { get; private set; }
    public long AllocatedFrames { get; private set; }
    public PageContent Content { get; } = new();
    /// <summary>Files by path (page caches shared by every mapping of the path on this machine).</summary>
    public Dictionary<string, BackingObject> Files { get; } = new(StringComparer.Ordinal);

    private struct SwapSlot { public ulong Content; public int References; }

    public ulong AllocFrame(ulong content)
    {
        ulong pfn;
        if (_freeHead != NoFrame)
        {
            pfn = _freeHead;
            _freeHead = ContentRef(pfn);
        }
        else pfn = NewFrames(1);
        ContentRef(pfn) = content;
        AllocatedFrames++;
        return pfn;
    }

    /// <summary>512 contiguous, 512-aligned frames for a transparent huge page.</summary>
    public ulong AllocHugeFrames()
    {
        while ((_nextPfn & PageTable.LeafIndexMask) != 0) FreeFrame(NewFrames(1), countAllocation: false);
        ulong first = NewFrames(PageTable.LeafEntries);
        AllocatedFrames += PageTable.LeafEntries;
        return first;
    }

    private ulong NewFrames(int count)
    {
        ulong first = _nextPfn;
        _nextPfn += (ulong)count;
        while ((long)((_nextPfn - 1) >> ChunkShift) >= _content.Count)
        {
            _content.Add(new ulong[ChunkSize]);
            _mapCount.Add(new byte[ChunkSize]);
        }
        return first;
    }

    public ref ulong ContentRef(ulong pfn) => ref _content[(int)(pfn >> ChunkShift)][pfn & ChunkMask];

    public ulong ContentOf(ulong pfn) => pfn < FirstUserPfn ? PageContent.Zero : ContentRef(pfn);

    public void SetContent(ulong pfn, ulong content)
    {
        ref ulong word = ref ContentRef(pfn);
        if (word != content) { Content.Release(word); word = content; }
    }

    /// <summary>A content word never used before: the page was written with new data.</summary>
    public ulong NewContentVersion() => PageContent.Generated(++_contentVersion);

    /// <summary>Frames KSM merged pages into (never reused by a write: always copied); a frame leaves when it is freed.</summary>
    private readonly HashSet<ulong> _ksm = new();
    public bool IsKsm(ulong pfn) => _ksm.Contains(pfn);
    public void MarkKsm(ulong pfn) => _ksm.Add(pfn);
    public IReadOnlyCollection<ulong> KsmFrames => _ksm;

    public int MapCount(ulong pfn)
    {
        if (pfn < FirstUserPfn) return 0;
        byte b = _mapCount[(int)(pfn >> ChunkShift)][pfn & ChunkMask];
        return b == MapCountOverflow ? _mapCountOverflow[pfn] : b;
    }

    private void SetMapCount(ulong pfn, int count)
    {
        ref byte b = ref _mapCount[(int)(pfn >> ChunkShift)][pfn & ChunkMask];
        if (count >= MapCountOverflow) { b = MapCountOverflow; _mapCountOverflow[pfn] = count; }
        else { b = (byte)count; _mapCountOverflow.Remove(pfn); }
    }

    /// <summary>One more PTE maps the frame (the zero pages are not counted).</summary>
    public void Map(ulong pfn)
    {
        if (pfn < FirstUserPfn) return;
        int n = MapCount(pfn) + 1;
        SetMapCount(pfn, n);
        if (n == 2) SharedFrames++;
    }

    /// <summary>One PTE less maps the frame; an anonymous frame no longer mapped is freed.</summary>
    public void Unmap(ulong pfn, bool anonymous)
    {
        if (pfn < FirstUserPfn) return;
        int n = MapCount(pfn) - 1;
        SetMapCount(pfn, n);
        if (n == 1) SharedFrames--;
        if (n == 0) _ksm.Remove(pfn);
        if (n == 0 && anonymous) FreeFrame(pfn, countAllocation: true);
    }

    /// <summary>
    /// MADV_FREE's mark on an anonymous frame (the kernel clears the folio's swapbacked flag): reclaim may discard it
    /// while no PTE mapping it is dirty, rather than swap it.
    /// </summary>
    public void MarkLazyFree(ulong pfn) { if (pfn >= FirstUserPfn) _lazyFree.Add(pfn); }
    public bool IsLazyFree(ulong pfn) => _lazyFree.Contains(pfn);
    /// <summary>The frame is swap-backed again (reclaim found it written since MADV_FREE).</summary>
    public void ClearLazyFree(ulong pfn) => _lazyFree.Remove(pfn);

    private void FreeFrame(ulong pfn, bool countAllocation)
    {
        _lazyFree.Remove(pfn);
        DropSwapCache(pfn);
        ref ulong word = ref ContentRef(pfn);
        Content.Release(word);
        word = _freeHead;
        _freeHead = pfn;
        if (countAllocation) AllocatedFrames--;
    }

    /// <summary>Copies a frame's content into a new frame (copy-on-write, swap-in, collapse).</summary>
    public ulong CopyFrame(ulong pfn) => AllocFrame(Content.Duplicate(ContentOf(pfn)));

    /// <summary>Moves a content word into a new swap slot; returns the offset.</summary>
    public ulong SwapOut(ulong content)
    {
        ulong offset = _nextSwapOffset++;
        _swap[offset] = new SwapSlot { Content = content, References = 1 };
        return offset;
    }

    public ulong SwapContent(ulong offset) => _swap[offset].Content;

    public void SwapReference(ulong offset)
    {
        var slot = _swap[offset];
        slot.References++;
        _swap[offset] = slot;
    }

    /// <summary>Drops one reference to a swap slot, freeing it at zero (and its swap-cache frame with it: a plain frame then).</summary>
    public void SwapRelease(ulong offset)
    {
        var slot = _swap[offset];
        if (--slot.References == 0)
        {
            Content.Release(slot.Content);
            _swap.Remove(offset);
            if (_swapCache.Remove(offset, out ulong pfn)) _swapCacheOf.Remove(pfn);
        }
        else _swap[offset] = slot;
    }

    /// <summary>
    /// The frame a swap-in of <paramref name="offset"/> maps (before it drops its reference): while another swap entry still
    /// refers to the slot (a fork's other half), the page swapped in stays in the swap cache and every swap-in of the slot maps
    /// that one frame (do_swap_page: not exclusive, so pagemap's exclusive bit goes once both map it); otherwise a frame of
    /// its own. <paramref name="cached"/> says the frame is the swap cache's.
    /// </summary>
    public ulong SwapInFrame(ulong offset, out bool cached)
    {
        cached = false;
        if (_swapCache.TryGetValue(offset, out ulong pfn)) { cached = true; return pfn; }
        pfn = AllocFrame(Content.Duplicate(SwapContent(offset)));
        if (_swap[offset].References > 1)
        {
            _swapCache[offset] = pfn;
            _swapCacheOf[pfn] = offset;
            cached = true;
        }
        return pfn;
    }

    /// <summary>
    /// Whether the frame is the swap cache's page of a slot another swap entry still refers to: a write to it copies
    /// (wp_can_reuse_anon_folio: folio_free_swap fails while the slot is used, so the reference count says shared).
    /// </summary>
    public bool InSwapCache(ulong pfn) => _swapCacheOf.ContainsKey(pfn);

    /// <summary>The slot whose swap cache holds the frame (its bytes are the slot's: a write to it always copies).</summary>
    public bool TryGetSwapCacheSlot(ulong pfn, out ulong offset) => _swapCacheOf.TryGetValue(pfn, out offset);

    /// <summary>The frame leaves the swap cache (freed).</summary>
    public void DropSwapCache(ulong pfn)
    {
        if (_swapCacheOf.Remove(pfn, out ulong offset)) _swapCache.Remove(offset);
    }

    /// <summary>
    /// Reclaim of a page of shared anonymous memory (shmem) that no PTE maps any more: with swap, shmem_writeout moves it from
    /// the page cache to a swap slot, so a fault-around no longer maps it; a fault or a read brings it back (<see cref="CachePage"/>).
    /// </summary>
    public void SwapOutCachePage(BackingObject backing, ulong pageIndex)
    {
        if (backing.IsFile || !backing.Pages.TryGetValue(pageIndex, out ulong pfn) || MapCount(pfn) != 0) return;
        backing.SwappedPages[pageIndex] = Content.Duplicate(ContentOf(pfn));
        backing.Pages.Remove(pageIndex);
        FreeFrame(pfn, countAllocation: true);
    }

    public int SwapSlotsUsed => _swap.Count;

    /// <summary>The page-cache frame of a backing object's page, created (zero-filled) on first use.</summary>
    public ulong CachePage(BackingObject backing, ulong pageIndex)
    {
        if (!backing.Pages.TryGetValue(pageIndex, out ulong pfn))
        {
            if (backing.SwappedPages.Remove(pageIndex, out ulong swapped)) pfn = AllocFrame(swapped);
            else pfn = AllocFrame(PageContent.Zero);
            backing.Pages[pageIndex] = pfn;
        }
        return pfn;
    }

    public BackingObject File(string path)
    {
        if (!Files.TryGetValue(path, out var b)) Files[path] = b = new BackingObject(path, isFile: true);
        return b;
    }
}
