using System.Linq;
using System;
using System.Collections.Generic;
using SoftDirty.Tracking;

namespace SoftDirty.Emulation;

public sealed partial class EmulatedProcess
{
    // ---- access: Read / Write ---------------------------------------------------------------------------

    /// <summary>
    /// Writes new data to every page of [address, address + length): each page takes a write fault where the
    /// kernel would (first write, copy-on-write, write-protected by clear_refs or userfaultfd, shared-mapping
    /// write notification) and so becomes soft-dirty. With <paramref name="value"/> the bytes are set to it
    /// (writing bytes a page already holds changes nothing in its content but still sets soft-dirty);
    /// without, every page gets new content. Throws SegmentationFault, changing nothing, when any byte is
    /// unmapped, not writable or in a guard region.
    /// </summary>
    public void Write(ulong address, ulong length, byte? value = null)
    {
        lock (_mem.Lock)
        {
            if (!CheckAccess(address, length, write: true)) return;
            ulong end = address + length;
            for (ulong a = address; a < end; a = (a & ~PageOffsetMask) + PageBytes)
            {
                ulong frame = TouchPage(a >> PageShift, write: true);
                ulong pageEnd = (a & ~PageOffsetMask) + PageBytes;
                int offset = (int)(a & PageOffsetMask), count = (int)(Math.Min(end, pageEnd) - a);
                _mem.SetContent(frame, value is { } v
                    ? _mem.Content.Apply(_mem.ContentOf(frame), offset, count, v, default, useData: false)
                    : _mem.NewContentVersion());
            }
        }
    }

    /// <summary>Writes <paramref name="data"/> at <paramref name="address"/>, as <see cref="Write(ulong, ulong, byte?)"/>.</summary>
    public void Write(ulong address, ReadOnlySpan<byte> data)
    {
        lock (_mem.Lock)
        {
            if (!CheckAccess(address, (ulong)data.Length, write: true)) return;
            ulong end = address + (ulong)data.Length;
            for (ulong a = address; a < end; a = (a & ~PageOffsetMask) + PageBytes)
            {
                ulong frame = TouchPage(a >> PageShift, write: true);
                ulong pageEnd = (a & ~PageOffsetMask) + PageBytes;
                int offset = (int)(a & PageOffsetMask), count = (int)(Math.Min(end, pageEnd) - a);
                _mem.SetContent(frame, _mem.Content.Apply(_mem.ContentOf(frame), offset, count, 0,
                    data.Slice((int)(a - address), count), useData: true));
            }
        }
    }

    /// <summary>
    /// Reads every page of [address, address + length): read faults map the zero page (anonymous memory) or
    /// the page cache page, never soft-dirty; swapped pages come back. SegmentationFault as for Write.
    /// </summary>
    public void Read(ulong address, ulong length)
    {
        lock (_mem.Lock)
        {
            if (!CheckAccess(address, length, write: false)) return;
            ulong end = address + length;
            for (ulong a = address & ~PageOffsetMask; a < end; a += PageBytes) TouchPage(a >> PageShift, write: false);
        }
    }

    /// <summary>
    /// The 4096 bytes of the page at <paramref name="address"/> as the process would read them, without
    /// faulting it in or changing any state (as a debugger peeking). EmulatorNotMapped outside any VMA.
    /// </summary>
    public void ReadPageContent(ulong address, Span<byte> destination)
    {
        if (destination.Length < PageContent.PageSize)
            throw Invalid($"ReadPageContent: the destination holds {destination.Length} bytes, a page is {PageContent.PageSize}");
        lock (_mem.Lock) RenderPage(_vmas.VmaLookup(address) ?? throw NotMapped("ReadPageContent", address), address, destination);
    }

    /// <summary>The bytes of one page of a VMA from its PTE, swap slot or page cache; no state changes.</summary>
    private void RenderPage(Vma vma, ulong address, Span<byte> destination)
    {
        ulong page = address >> PageShift;
        ulong slot = _pt.GetSlot(page >> PageTable.LeafShift);
        ulong pte = PageTable.KindOf(slot) == PageTable.SlotKind.Huge
            ? PageTable.HugeValue(slot) + (page & PageTable.LeafIndexMask) : _pt.Get(page);
        ulong word;
        if (Pte.IsPresent(pte)) word = _mem.ContentOf(Pte.Frame(pte));
        else if (Pte.IsSwapOrMarker(pte) && !Pte.IsMarker(pte)) word = _mem.SwapContent(Pte.SwapOffset(pte));
        else if (vma.Backing != null && vma.Backing.Pages.TryGetValue(vma.BackingPage(address), out ulong cached)) word = _mem.ContentOf(cached);
        else if (vma.Backing != null && vma.Backing.SwappedPages.TryGetValue(vma.BackingPage(address), out ulong swapped)) word = swapped;
        else word = PageContent.Zero;
        _mem.Content.Render(word, destination);
    }

    /// <summary>
    /// Reads the process's bytes at <paramref name="address"/> as /proc/PID/mem does (FOLL_FORCE: the
    /// protection does not matter), without faulting pages in or changing any state; returns how many were
    /// read, fewer where the range reaches an unmapped page, a guard region or a page past the end of a truncated file.
    /// </summary>
    public int ReadMemory(ulong address, Span<byte> destination)
    {
        Span<byte> page = stackalloc byte[PageContent.PageSize];
        int done = 0;
        lock (_mem.Lock)
        {
            while (done < destination.Length)
            {
                ulong a = address + (ulong)done;
                if (a < address || a >= TaskSize) break;
                var vma = _vmas.VmaLookup(a);
                if (vma == null || FileEndIn(vma) <= a) break;   // past a truncated file's end: EIO, as SIGBUS for the process
                ulong pageNumber = a >> PageShift;
                if (PageTable.KindOf(_pt.GetSlot(pageNumber >> PageTable.LeafShift)) != PageTable.SlotKind.Huge
                    && (_pt.Get(pageNumber) & Pte.Guard) != 0) break;
                RenderPage(vma, a, page);
                int offset = (int)(a & PageOffsetMask);
                int n = Math.Min(destination.Length - done, PageContent.PageSize - offset);
                page.Slice(offset, n).CopyTo(destination[done..]);
                done += n;
            }
        }
        return done;
    }

    /// <summary>
    /// The addresses of [<paramref name="start"/>, <paramref name="end"/>) whose page the backing object of the mapping there (a
    /// file, shared anonymous memory) holds, as whole pages, ascending: what a save of a real process reads from the object where
    /// the process does not map it (Images.UnnamedObjectPages). Empty for private anonymous memory or no mapping.
    /// </summary>
    internal List<AddressRange> ObjectPages(ulong start, ulong end)
    {
        var pages = new List<ulong>();
        lock (_mem.Lock)
        {
            for (int i = _vmas.FindVmaIndex(start); i < _vmas.Count && _vmas[i].Start < end; i++)
            {
                var vma = _vmas[i];
                if (vma.Backing is null) continue;
                ulong from = Math.Max(start, vma.Start), to = Math.Min(end, vma.End);
                foreach (ulong index in vma.Backing.Pages.Keys.Concat(vma.Backing.SwappedPages.Keys))
                {
                    if (index < vma.PageOffset) continue;
                    ulong a = vma.Start + ((index - vma.PageOffset) << PageShift);
                    if (a >= from && a < to) pages.Add(a);
                }
            }
        }
        pages.Sort();
        var ranges = new RangeListBuilder();
        foreach (ulong a in pages) ranges.Add(a, a + PageContent.PageSize);
        return ranges.Build();
    }

    /// <summary>The pagemap entry of one address (a convenience over <see cref="ReadPagemap"/>).</summary>
    public PagemapEntry ReadEntry(ulong address)
    {
        Span<PagemapEntry> one = stackalloc PagemapEntry[1];
        return ReadPagemap(address >> PageShift, one) == 1 ? one[0] : default;
    }

    /// <summary>Checks a whole access before any page is touched; false for an empty range.</summary>
    private bool CheckAccess(ulong address, ulong length, bool write)
    {
        if (length == 0) return false;
        if (address >= TaskSize || length > TaskSize - address)
            throw Segfault(Math.Max(address, TaskSize), "the address lies beyond the user address space");
        ulong end = address + length;
        ulong a = address;
        for (int i = _vmas.FindVmaIndex(address); a < end; i++)
        {
            if (i >= _vmas.Count || _vmas[i].Start > a) throw Segfault(a, "no mapping contains the address");
            var vma = _vmas[i];
            if (write && (vma.Protection & Protection.Write) == 0)
                throw Segfault(a, $"write to a mapping without write permission ({MemoryMapping.FormatPermissions(vma.Protection, vma.Shared)})");
            if (!write && (vma.Protection & Protection.Read) == 0)
                throw Segfault(a, $"read from a mapping without read permission ({MemoryMapping.FormatPermissions(vma.Protection, vma.Shared)})");
            if (FileEndIn(vma) is { } fileEnd && fileEnd < Math.Min(end, vma.End))
                throw Segfault(Math.Max(a, fileEnd), "the page lies past the end of the mapped file (SIGBUS)");
            a = vma.End;
        }
        if (_guardPages > 0)
            for (ulong p = address >> PageShift; p <= (end - 1) >> PageShift; p++)
                if (PageTable.KindOf(_pt.GetSlot(p >> PageTable.LeafShift)) != PageTable.SlotKind.Huge && (_pt.Get(p) & Pte.Guard) != 0)
                    throw Segfault(Math.Max(address, p << PageShift), "the page is a guard region (MADV_GUARD_INSTALL)");
        return true;
    }

    /// <summary>Touches one page (already checked) with the kernel's fault rules; returns its frame.</summary>
    private ulong TouchPage(ulong page, bool write)
    {
        ulong leaf = page >> PageTable.LeafShift;
        ulong slot = _pt.GetSlot(leaf);
        if (PageTable.KindOf(slot) == PageTable.SlotKind.Huge)
        {
            if (TouchHuge(leaf, page, write, out ulong hugeFrame)) return hugeFrame;
            slot = _pt.GetSlot(leaf);
        }
        ulong pte = slot == 0 ? 0 : _pt.Get(page);
        if (Pte.IsPresent(pte))
        {
            if (!write)
            {
                if ((pte & Pte.Accessed) == 0) _pt.Set(page, pte | Pte.Accessed);
                return Pte.Frame(pte);
            }
            if ((pte & Pte.Writable) != 0)
            {
                // No fault: the hardware sets dirty and accessed, never soft-dirty.
                if ((pte & (Pte.Dirty | Pte.Accessed)) != (Pte.Dirty | Pte.Accessed)) _pt.Set(page, pte | Pte.Dirty | Pte.Accessed);
                return Pte.Frame(pte);
            }
            return WriteProtectFault(page, _vmas.VmaLookup(page << PageShift)!, pte);
        }
        var vma = _vmas.VmaLookup(page << PageShift)!;
        if (pte == 0 || Pte.IsMarker(pte))
            return write ? MissingWriteFault(page, vma, pte) : MissingReadFault(page, vma, pte);
        return SwapInFault(page, vma, pte, write);
    }

    /// <summary>
    /// Whether a fault at <paramref name="leaf"/> maps a THP: private anonymous memory whose VMA covers the
    /// aligned 2 MiB range, THP allowed for the VMA by the profile's mode (always; madvise: VM_HUGEPAGE) and not
    /// refused by it (VM_NOHUGEPAGE, whatever the mode), and
    /// no page table there yet (the kernel's create_huge_pmd runs only on pmd_none).
    /// </summary>
    private bool HugeEligible(Vma vma, ulong leaf)
    {
        ulong start = leaf << PageTable.LeafShift << PageShift;
        bool allowed = Profile.TransparentHugePages switch
        {
            TransparentHugePageMode.Always => true,
            TransparentHugePageMode.Madvise => vma.HugePage,
            _ => false,
        };
        return allowed && !vma.NoHugePage && vma.IsAnonymous && !vma.Shared && start >= vma.Start && start + HugePageBytes <= vma.End
               && _pt.GetSlot(leaf) == 0 && !_pt.HasTable(leaf);
    }

    /// <summary>
    /// A fresh anonymous page for a read fault where the profile has no zero page (do_anonymous_page): in a
    /// writable VMA writable and dirty (pte_mkdirty sets soft-dirty too), else neither; uffd-wp (from a
    /// marker) write-protects it.
    /// </summary>
    private ulong FreshReadPage(ulong page, Vma vma, ulong wp)
    {
        vma.PrepareAnonVma();
        ulong frame = _mem.AllocFrame(PageContent.Zero);
        _mem.Map(frame);
        AddRss(1);
        ulong entry = Pte.Present | Pte.Accessed | frame;
        if (vma.Writable) entry |= Pte.Writable | Pte.Dirty | _softDirtyBit;
        if (wp != 0) entry = (entry | Pte.UffdWp) & ~Pte.Writable;
        _pt.Set(page, entry);
        return frame;
    }

    /// <summary>A THP for a fault (write, or read without the huge zero page): dirty, soft-dirty, writable in a writable VMA.</summary>
    private ulong FreshHugePage(ulong page, Vma vma, ulong leaf)
    {
        vma.PrepareAnonVma();
        ulong first = _mem.AllocHugeFrames();
        for (ulong i = 0; i < PageTable.LeafEntries; i++) _mem.Map(first + i);
        AddRss(PageTable.LeafEntries);
        ulong pmd = Pte.Present | Pte.Accessed | Pte.Dirty | _softDirtyBit | first;
        if (vma.Writable) pmd |= Pte.Writable;
        _pt.SetHuge(leaf, pmd);
        return first + (page & PageTable.LeafIndexMask);
    }

    private ulong MissingReadFault(ulong page, Vma vma, ulong pte)
    {
        _readFaults++;
        // A uffd-wp marker left in a VMA no longer registered (after mremap) does not write-protect the new page.
        ulong wp = vma.UffdWriteProtect ? pte & Pte.UffdWp : 0;
        ulong leaf = page >> PageTable.LeafShift;
        if (vma.IsAnonymous)
        {
            if (wp == 0 && HugeEligible(vma, leaf))
            {
                if (!Profile.HugeZeroPage) return FreshHugePage(page, vma, leaf);
                _pt.SetHuge(leaf, Pte.Present | Pte.Accessed | PhysicalMemory.HugeZeroPfn);
                return PhysicalMemory.HugeZeroPfn + (page & PageTable.LeafIndexMask);
            }
            if (!Profile.SharedZeroPage) return FreshReadPage(page, vma, wp);
            _pt.Set(page, Pte.Present | Pte.Accessed | wp | PhysicalMemory.ZeroPfn);
            return PhysicalMemory.ZeroPfn;
        }
        ulong frame = _mem.CachePage(vma.Backing!, vma.BackingPage(page << PageShift));
        _mem.Map(frame);
        AddRss(1);
        ulong entry = Pte.Present | Pte.NotAnonymous | Pte.Accessed | wp | frame;
        // Without write notification (VM_SOFTDIRTY set, or no soft-dirty at all) a shared writable page maps writable.
        if (vma.Shared && vma.Writable && wp == 0 && !SoftDirtyTracking(vma)) entry |= Pte.Writable;
        _pt.Set(page, entry);
        if (wp == 0) FaultAround(page, vma, entry & ~Pte.FrameMask);
        return frame;
    }

    /// <summary>fault_around_bytes (64 KiB): the window a file read fault maps at once.</summary>
    private const ulong FaultAroundPages = 16;

    /// <summary>
    /// do_fault_around: a read fault on a file mapping also maps the other empty PTEs of its 16-page aligned
    /// window (within the VMA and the page table) whose pages are in the page cache, never soft-dirty. For
    /// a file on a disk file system, readahead has brought the window in; shared anonymous memory and a file
    /// on tmpfs (<see cref="EmulatedFileSystem.Tmpfs"/>, both shmem) map only the pages they already have.
    /// </summary>
    private void FaultAround(ulong page, Vma vma, ulong flags)
    {
        ulong from = Math.Max(page & ~(FaultAroundPages - 1), vma.Start >> PageShift);
        ulong to = Math.Min(Math.Min(from + FaultAroundPages, (page | PageTable.LeafIndexMask) + 1), vma.End >> PageShift);
        for (ulong p = from; p < to; p++)
        {
            if (p == page || _pt.Get(p) != 0 || FileEndIn(vma) <= p << PageShift) continue;
            ulong index = vma.BackingPage(p << PageShift);
            bool readahead = vma.Backing!.IsFile && vma.Backing.FileSystem == EmulatedFileSystem.Disk;
            if (!readahead && !vma.Backing.Pages.ContainsKey(index)) continue;
            ulong frame = _mem.CachePage(vma.Backing, index);
            _mem.Map(frame);
            AddRss(1);
            _pt.Set(p, flags | frame);
        }
    }

    private const ulong WrittenBits = Pte.Present | Pte.Writable | Pte.Dirty | Pte.Accessed;

    private ulong MissingWriteFault(ulong page, Vma vma, ulong pte)
    {
        _writeFaults++;
        if ((pte & Pte.UffdWp) != 0) _uffdFaults++;   // WP_ASYNC resolves it: the new page is not write-protected
        ulong leaf = page >> PageTable.LeafShift;
        ulong frame;
        if (!vma.Shared) vma.PrepareAnonVma();
        if (vma.IsAnonymous)
        {
            if (HugeEligible(vma, leaf)) return FreshHugePage(page, vma, leaf);
            frame = _mem.AllocFrame(PageContent.Zero);
            _mem.Map(frame);
            AddRss(1);
            _pt.Set(page, WrittenBits | _softDirtyBit | frame);
            return frame;
        }
        ulong cached = _mem.CachePage(vma.Backing!, vma.BackingPage(page << PageShift));
        if (vma.Shared)
        {
            _mem.Map(cached);
            AddRss(1);
            _pt.Set(page, WrittenBits | Pte.NotAnonymous | _softDirtyBit | cached);
            return cached;
        }
        _cowFaults++;   // first write to a private file page copies it (do_cow_fault)
        frame = _mem.CopyFrame(cached);
        _mem.Map(frame);
        AddRss(1);
        _pt.Set(page, WrittenBits | _softDirtyBit | frame);
        return frame;
    }

    /// <summary>A write to a present PTE that is not writable: copy-on-write, uffd-wp async, or soft-dirty write-protect.</summary>
    private ulong WriteProtectFault(ulong page, Vma vma, ulong pte)
    {
        _writeFaults++;
        // do_wp_page clears uffd-wp only in a VMA still registered for it; in one that left userfaultfd (a
        // move merged it out) the reused page keeps the bit (measured on 6.18), a copied one starts clean.
        bool uffd = (pte & Pte.UffdWp) != 0 && vma.UffdWriteProtect;
        if (uffd) _uffdFaults++;
        ulong frame = Pte.Frame(pte);
        bool anonymousPage = (pte & Pte.NotAnonymous) == 0;
        bool copy = frame < PhysicalMemory.FirstUserPfn
                    || (!vma.Shared && !anonymousPage)
                    || (anonymousPage && (_mem.MapCount(frame) > 1 || _mem.IsKsm(frame) || _mem.InSwapCache(frame)));
        if (copy)
        {
            vma.PrepareAnonVma();
            _cowFaults++;
            ulong fresh = frame < PhysicalMemory.FirstUserPfn ? _mem.AllocFrame(PageContent.Zero) : _mem.CopyFrame(frame);
            _mem.Map(fresh);
            if (frame >= PhysicalMemory.FirstUserPfn) _mem.Unmap(frame, anonymousPage); else AddRss(1);
            _pt.Set(page, WrittenBits | _softDirtyBit | fresh);
            return fresh;
        }
        if (!uffd)
        {
            if ((pte & Pte.CowProtected) != 0) _cowFaults++;   // fork protected it, the other side has gone: reuse
            else _sdFaults++;
        }
        _pt.Set(page, (pte | WrittenBits | _softDirtyBit) & ~((uffd ? Pte.UffdWp : 0) | Pte.CowProtected));
        return frame;
    }

    private ulong SwapInFault(ulong page, Vma vma, ulong pte, bool write)
    {
        _swapIns++;
        ulong frame = SwapInPte(page, pte);
        ulong present = _pt.Get(page);
        // A page another process maps or may still swap in (the swap cache's) is not exclusive: do_swap_page leaves the write
        // to do_wp_page, which copies it (one fault, counted there).
        if (write && (_mem.MapCount(frame) > 1 || _mem.InSwapCache(frame))) return WriteProtectFault(page, vma, present);
        if (write) _writeFaults++; else _readFaults++;
        if (!write) return frame;
        if ((present & Pte.UffdWp) != 0) _uffdFaults++;
        _pt.Set(page, (present | WrittenBits | _softDirtyBit) & ~Pte.UffdWp);
        return frame;
    }

    /// <summary>
    /// Brings a swap entry back: a new frame with the slot's content, or the swap cache's frame of a slot another swap entry
    /// still refers to (<see cref="PhysicalMemory.SwapInFrame"/>); soft-dirty and uffd-wp come from the entry.
    /// </summary>
    private ulong SwapInPte(ulong page, ulong pte)
    {
        ulong offset = Pte.SwapOffset(pte);
        ulong frame = _mem.SwapInFrame(offset, out _);
        _mem.SwapRelease(offset);
        _mem.Map(frame);
        AddRss(1);
        _pt.Set(page, Pte.Present | Pte.Accessed | (pte & (Pte.SoftDirty | Pte.UffdWp)) | frame);
        return frame;
    }

    /// <summary>Handles an access to a THP; false when it split the PMD and the PTE path must continue.</summary>
    private bool TouchHuge(ulong leaf, ulong page, bool write, out ulong frame)
    {
        ulong pmd = PageTable.HugeValue(_pt.GetSlot(leaf));
        ulong first = Pte.Frame(pmd);
        frame = first + (page & PageTable.LeafIndexMask);
        if (!write)
        {
            if ((pmd & Pte.Accessed) == 0) _pt.SetHuge(leaf, pmd | Pte.Accessed);
            return true;
        }
        var vma = _vmas.VmaLookup(page << PageShift)!;
        if ((pmd & Pte.UffdWp) != 0 && vma.UffdWriteProtect)
        {
            // wp_huge_pmd: a uffd-wp PMD of a WP_ASYNC context is split and the fault resolved at PTE level,
            // so only the written page leaves write-protection (measured on 6.12 and 7.3 in round 21).
            SplitHugeLeaf(leaf);
            return false;
        }
        if (first == PhysicalMemory.HugeZeroPfn && Profile.HugeZeroWriteAllocatesThp)
        {
            _writeFaults++;
            _cowFaults++;   // do_huge_zero_wp_pmd: a fresh THP replaces the huge zero page
            frame = FreshHugePage(page, vma, leaf);
            return true;
        }
        if (first == PhysicalMemory.HugeZeroPfn || _mem.MapCount(first) > 1)
        {
            SplitHugeLeaf(leaf);   // huge zero page, or shared after fork: split, then copy one page
            return false;
        }
        if ((pmd & Pte.Writable) != 0)
        {
            _pt.SetHuge(leaf, pmd | Pte.Dirty | Pte.Accessed);
            return true;
        }
        _writeFaults++;
        if ((pmd & Pte.CowProtected) != 0) _cowFaults++;
        else _sdFaults++;
        _pt.SetHuge(leaf, (pmd | WrittenBits | _softDirtyBit) & ~(Pte.UffdWp | Pte.CowProtected));
        return true;
    }

    // ---- fork ---------------------------------------------------------------------------------------------

    /// <summary>
    /// fork: a child on the same machine with copies of the VMAs (VM_SOFTDIRTY and VM_SEALED included; userfaultfd
    /// registration not inherited; MADV_DONTFORK VMAs left out, MADV_WIPEONFORK ones copied empty) and of the PTEs of VMAs with anonymous pages (an anon_vma), soft-dirty
    /// bits unchanged. Private pages are write-protected in both for copy-on-write; other VMAs (shared
    /// mappings, memory only read) are not copied: the child faults them in again, as with the kernel's
    /// vma_needs_copy().
    /// </summary>
    public EmulatedProcess Fork(string? name = null)
    {
        lock (_mem.Lock)
        {
            var child = new EmulatedProcess(name ?? Name, Profile, Privileged, _mem);
            foreach (var vma in _vmas)
            {
                if ((vma.Flags & VmaFlags.DontCopy) != 0) continue;   // MADV_DONTFORK: not in the child at all
                var copy = vma.Clone();
                copy.Flags &= ~VmaFlags.UffdWriteProtect;
                if ((vma.Flags & VmaFlags.WipeOnFork) != 0)
                {
                    // MADV_WIPEONFORK: the child's VMA starts empty (no anon_vma, no page table); the parent's pages stay its own.
                    copy.AnonVma = 0;
                    copy.AnonVmaForked = false;
                    child._vmas.Insert(copy);
                    continue;
                }
                copy.ForkAnonVma();
                child._vmas.Insert(copy);
                if (vma.AnonVma == 0) continue;   // vma_needs_copy: without anon_vma the child faults pages in itself
                MutatePtes(vma.Start, vma.End, visitNone: false,
                    (page, pte) => ForkPte(child, page, pte),
                    (leaf, pmd) => ForkHuge(child, leaf, pmd));
                // copy_pte_range: the child gets a PTE table wherever the parent has one, empty or not.
                foreach (var leaf in _pt.TablesIn(vma.Start >> PageShift >> PageTable.LeafShift, ((vma.End - 1) >> PageShift >> PageTable.LeafShift) + 1))
                    child._pt.MakeTable(leaf);
            }
            return child;
        }
    }

    private ulong ForkPte(EmulatedProcess child, ulong page, ulong pte)
    {
        if (Pte.IsPresent(pte))
        {
            ulong frame = Pte.Frame(pte);
            ulong parentPte = pte;
            if (frame >= PhysicalMemory.FirstUserPfn)
            {
                _mem.Map(frame);
                child.AddRss(1);
                if ((pte & Pte.NotAnonymous) == 0) parentPte = (pte & ~Pte.Writable) | Pte.CowProtected;
            }
            child._pt.Set(page, parentPte & ~(Pte.Accessed | Pte.UffdWp));
            return parentPte;
        }
        if ((pte & Pte.Guard) != 0) { child._pt.Set(page, pte); child._guardPages++; return pte; }
        if (Pte.IsMarker(pte)) return pte;   // uffd-wp markers stay with the registered parent
        _mem.SwapReference(Pte.SwapOffset(pte));
        child._pt.Set(page, pte & ~Pte.UffdWp);
        return pte;
    }

    private ulong ForkHuge(EmulatedProcess child, ulong leaf, ulong pmd)
    {
        ulong first = Pte.Frame(pmd);
        ulong parentPmd = pmd;
        if (first >= PhysicalMemory.FirstUserPfn)
        {
            for (ulong i = 0; i < PageTable.LeafEntries; i++) _mem.Map(first + i);
            child.AddRss(PageTable.LeafEntries);
            parentPmd = (pmd & ~Pte.Writable) | Pte.CowProtected;
        }
        child._pt.SetHuge(leaf, parentPmd & ~(Pte.Accessed | Pte.UffdWp));
        return parentPmd;
    }
}
