using System;

namespace SoftDirty.Emulation;

public sealed partial class EmulatedProcess
{
    /// <summary>Validates a madvise-like range: aligned start (EINVAL), mapped throughout (ENOMEM); returns the end, or 0 for a zero length.</summary>
    private ulong CheckMappedRange(string op, ulong address, ulong length)
    {
        ulong end = CheckAdviceRange(op, address, length);
        if (end != 0 && _vmas.FirstHole(address, end) is { } hole) throw NotMapped(op, hole);
        return end;
    }

    /// <summary>Validates a madvise-like range: aligned start and in the address space (EINVAL); returns the end, or 0 for a zero length.</summary>
    private ulong CheckAdviceRange(string op, ulong address, ulong length)
    {
        if ((address & PageOffsetMask) != 0) throw Invalid($"{op}: address 0x{address:x} is not page-aligned");
        if (length == 0) return 0;
        ulong len = PageAlign(length);
        if (len == 0 || address + len < address || address + len > TaskSize) throw Invalid($"{op}: range beyond the address space");
        return address + len;
    }

    /// <summary>
    /// Reclaims the pages of the range (MADV_PAGEOUT-like). A private anonymous page goes to a swap slot and
    /// its PTE becomes a swap entry that keeps soft-dirty and uffd-wp; a shared or file page just loses its
    /// PTE (it stays in the page cache), so its soft-dirty is lost, and in a shmem or file VMA registered for
    /// uffd-wp a write-protected one becomes a uffd-wp marker (try_to_unmap_one's pte_install_uffd_wp_if_needed,
    /// as MADV_DONTNEED's zap keeps it). A lazily freed page (MADV_FREE) not written since is discarded: its PTE
    /// becomes none (no uffd-wp marker in an anonymous VMA), and it reads as zeros; one written since is kept and
    /// swap-backed again (this pass leaves it present). A page that more than one mapping maps (a fork's
    /// copy-on-write page, a file page mapped twice) is left alone (madvise_cold_or_pageout_pte_range:
    /// folio_mapcount != nr_pages). THPs are split first (a lazily freed one is then
    /// discarded page by page, or kept PTE-mapped when written since); zero pages stay.
    /// </summary>
    public void SwapOut(ulong address, ulong length)
    {
        lock (_mem.Lock)
        {
            ulong end = CheckMappedRange("SwapOut", address, length);
            if (end == 0) return;
            var split = new System.Collections.Generic.List<ulong>();
            foreach (var vma in _vmas.Range(address, end))
            {
                bool keepUffdWp = vma.UffdWriteProtect && !vma.IsAnonymous;
                ulong from = Math.Max(address, vma.Start), to = Math.Min(end, vma.End);
                split.Clear();
                MutatePtes(from, to, visitNone: false, (page, pte) => SwapOutPte(pte, keepUffdWp, vma, page), (leaf, pmd) =>
                {
                    ulong first = Pte.Frame(pmd);
                    if (first >= PhysicalMemory.FirstUserPfn && _mem.MapCount(first) <= 1) split.Add(leaf);
                    return pmd;
                });
                // Reclaim splits the PMD (TTU_SPLIT_HUGE_PMD) and takes the pages one by one: a swap-backed THP goes to
                // swap split; a lazily freed one is discarded page by page (its PTE table stays) or, written since
                // (every PTE dirty), kept PTE-mapped.
                foreach (ulong leaf in split)
                {
                    SplitHugeLeaf(leaf);
                    ulong start = leaf << PageTable.LeafShift << PageShift;
                    MutatePtes(start, start + HugePageBytes, visitNone: false, (page, pte) => SwapOutPte(pte, keepUffdWp, vma, page));
                }
            }
        }
    }

    private ulong SwapOutPte(ulong pte, bool keepUffdWp, Vma vma, ulong page)
    {
        if (!Pte.IsPresent(pte)) return pte;
        ulong frame = Pte.Frame(pte);
        if (frame < PhysicalMemory.FirstUserPfn || _mem.MapCount(frame) > 1) return pte;
        bool anonymousPage = (pte & Pte.NotAnonymous) == 0;
        if (anonymousPage && _mem.IsLazyFree(frame))
        {
            if ((pte & Pte.Dirty) != 0) { _mem.ClearLazyFree(frame); return pte; }
            _mem.Unmap(frame, anonymous: true);
            AddRss(-1);
            return 0;
        }
        AddRss(-1);
        if (!anonymousPage)
        {
            _mem.Unmap(frame, anonymous: false);
            if (vma.Backing is { IsFile: false } shmem) _mem.SwapOutCachePage(shmem, vma.BackingPage(page << PageShift));
            return keepUffdWp && (pte & Pte.UffdWp) != 0 ? Pte.Swap | Pte.UffdWp : 0;
        }
        // A page of the swap cache goes back to its slot (the entry refers to it once more), as try_to_unmap does.
        if (_mem.TryGetSwapCacheSlot(frame, out ulong offset)) _mem.SwapReference(offset);
        else offset = _mem.SwapOut(_mem.Content.Duplicate(_mem.ContentOf(frame)));
        _mem.Unmap(frame, anonymous: true);
        return Pte.MakeSwap(offset) | (pte & (Pte.SoftDirty | Pte.UffdWp));
    }

    /// <summary>
    /// MADV_FREE: the private anonymous pages of the range are freed lazily. A present page that only this mapping
    /// maps becomes clean and old and its frame lazily freed (reclaim, <see cref="SwapOut"/>, may then discard it; a
    /// write before that makes it dirty and keeps it); soft-dirty, uffd-wp and write permission stay. A swap entry is
    /// dropped at once, its slot freed (the page reads as zeros); markers, zero pages and pages shared with a fork stay.
    /// A THP the range covers whole is freed whole, one only partly covered is split first. A VMA that is not private
    /// anonymous (shared, a file) is EINVAL, the VMAs before it already done; holes are reported afterwards
    /// (EmulatorNotMapped), as the kernel does.
    /// </summary>
    public void MadviseFree(ulong address, ulong length)
    {
        lock (_mem.Lock)
        {
            ulong end = CheckAdviceRange("MadviseFree", address, length);
            if (end == 0) return;
            foreach (var vma in _vmas.Range(address, end))
            {
                RefuseSealedDiscard("MadviseFree", vma);
                if (!vma.IsAnonymous) throw Invalid($"MadviseFree: 0x{Math.Max(address, vma.Start):x} is not private anonymous memory");
                MutatePtes(Math.Max(address, vma.Start), Math.Min(end, vma.End), visitNone: false, (_, pte) => FreePte(pte), (_, pmd) =>
                {
                    ulong first = Pte.Frame(pmd);
                    if (first < PhysicalMemory.FirstUserPfn || _mem.MapCount(first) > 1) return pmd;
                    for (ulong i = 0; i < PageTable.LeafEntries; i++) _mem.MarkLazyFree(first + i);
                    return pmd & ~(Pte.Dirty | Pte.Accessed);
                });
            }
            if (_vmas.FirstHole(address, end) is { } hole) throw NotMapped("MadviseFree", hole);
        }
    }

    private ulong FreePte(ulong pte)
    {
        if (!Pte.IsPresent(pte))
        {
            if (!Pte.IsSwapOrMarker(pte) || Pte.IsMarker(pte)) return pte;
            _mem.SwapRelease(Pte.SwapOffset(pte));
            return 0;
        }
        ulong frame = Pte.Frame(pte);
        // A page of a swap slot another entry still refers to stays (madvise_free_pte_range: folio_free_swap fails).
        if (frame < PhysicalMemory.FirstUserPfn || _mem.MapCount(frame) > 1 || _mem.InSwapCache(frame)) return pte;
        _mem.MarkLazyFree(frame);
        return pte & ~(Pte.Dirty | Pte.Accessed);
    }

    /// <summary>Brings the swapped pages of the range back (MADV_WILLNEED plus a read); soft-dirty comes back from the swap entry.</summary>
    public void SwapIn(ulong address, ulong length)
    {
        lock (_mem.Lock)
        {
            ulong end = CheckMappedRange("SwapIn", address, length);
            if (end == 0) return;
            var swapped = new System.Collections.Generic.List<ulong>();
            MutatePtes(address, end, visitNone: false, (page, pte) =>
            {
                if (Pte.IsSwapOrMarker(pte) && !Pte.IsMarker(pte)) swapped.Add(page);
                return pte;
            }, (_, pmd) => pmd);
            foreach (ulong page in swapped) { _swapIns++; SwapInPte(page, _pt.Get(page)); }
        }
    }

    /// <summary>
    /// MADV_DONTNEED: drops the PTEs (guard markers stay; in a shmem or file VMA registered for uffd-wp a
    /// write-protected PTE becomes a uffd-wp marker, as zap_install_uffd_wp_if_needed does); the pages read as soft-dirty only through
    /// VM_SOFTDIRTY. As the kernel, holes in the range are skipped and reported afterwards (EmulatorNotMapped).
    /// </summary>
    public void MadviseDontNeed(ulong address, ulong length)
    {
        lock (_mem.Lock)
        {
            ulong end = CheckAdviceRange("MadviseDontNeed", address, length);
            if (end == 0) return;
            // A registered shmem or file VMA keeps its uffd-wp state as markers; a private anonymous one loses it.
            foreach (var vma in _vmas.Range(address, end))
            {
                RefuseSealedDiscard("MadviseDontNeed", vma);
                ZapRange(Math.Max(address, vma.Start), Math.Min(end, vma.End), keepGuards: true,
                    keepUffdWp: vma.UffdWriteProtect && !vma.IsAnonymous);
            }
            if (_vmas.FirstHole(address, end) is { } hole) throw NotMapped("MadviseDontNeed", hole);
        }
    }

    /// <summary>
    /// MADV_HUGEPAGE (<paramref name="huge"/>) or MADV_NOHUGEPAGE (hugepage_madvise): the part of each VMA in the
    /// range is split off and gets VM_HUGEPAGE and loses VM_NOHUGEPAGE, or the other way round, then merges with
    /// its neighbours where their flags now agree. Any mapping may be marked (shared, file); only private
    /// anonymous memory maps THPs. Pages already mapped stay as they are (a THP stays whole, MADV_NOHUGEPAGE
    /// splits nothing), except a THP that a VMA boundary now cuts, which is split as split_vma does. Holes are
    /// reported afterwards (EmulatorNotMapped), the VMAs around them done, as madvise does.
    /// </summary>
    public void MadviseHugePage(ulong address, ulong length, bool huge)
    {
        UpdateVmaFlags(huge ? "MadviseHugePage" : "MadviseNoHugePage", address, length, vma => huge
            ? (vma.Flags & ~VmaFlags.NoHugePage) | VmaFlags.HugePage
            : (vma.Flags & ~VmaFlags.HugePage) | VmaFlags.NoHugePage);
    }

    /// <summary>Splits the THP containing <paramref name="address"/> (a no-op when there is none): each PTE inherits the PMD's soft-dirty.</summary>
    public void SplitHugePage(ulong address)
    {
        lock (_mem.Lock)
        {
            if (_vmas.VmaLookup(address) == null) throw NotMapped("SplitHugePage", address);
            SplitHugeLeaf(address >> PageShift >> PageTable.LeafShift);
        }
    }

    /// <summary>
    /// MADV_COLLAPSE / khugepaged: replaces the 512 PTEs of the 2 MiB-aligned range at
    /// <paramref name="address"/> with one THP holding the same content (swapped pages are brought in). The
    /// new PMD is soft-dirty. EINVAL when the range is not 2 MiB-aligned, not wholly inside one private
    /// anonymous VMA, in a VMA marked MADV_NOHUGEPAGE (hugepage_vma_check refuses VM_NOHUGEPAGE whatever the
    /// THP mode, which MADV_COLLAPSE otherwise ignores), or has uffd-wp PTEs (khugepaged refuses those).
    /// </summary>
    public void CollapseHugePage(ulong address)
    {
        if ((address & (HugePageBytes - 1)) != 0) throw Invalid($"CollapseHugePage: 0x{address:x} is not 2 MiB-aligned");
        lock (_mem.Lock)
        {
            var vma = _vmas.VmaLookup(address) ?? throw NotMapped("CollapseHugePage", address);
            if (!vma.IsAnonymous || vma.Shared || address + HugePageBytes > vma.End)
                throw Invalid("CollapseHugePage: the 2 MiB range is not wholly inside one private anonymous mapping");
            if (vma.NoHugePage) throw Invalid("CollapseHugePage: the mapping is marked MADV_NOHUGEPAGE");
            ulong leaf = address >> PageShift >> PageTable.LeafShift;
            ulong slot = _pt.GetSlot(leaf);
            if (PageTable.KindOf(slot) == PageTable.SlotKind.Huge && Pte.Frame(PageTable.HugeValue(slot)) != PhysicalMemory.HugeZeroPfn) return;
            SplitHugeLeaf(leaf);
            Span<ulong> ptes = stackalloc ulong[PageTable.LeafEntries];
            _pt.ReadLeaf(_pt.GetSlot(leaf), ptes);
            foreach (ulong pte in ptes)
                if ((pte & (Pte.UffdWp | Pte.Guard)) != 0) throw Invalid("CollapseHugePage: the range has uffd-wp or guard entries");
            ulong firstPage = leaf << PageTable.LeafShift;
            for (int i = 0; i < ptes.Length; i++)
                if (Pte.IsSwapOrMarker(ptes[i])) { _swapIns++; ptes[i] = 0; SwapInPte(firstPage + (ulong)i, _pt.Get(firstPage + (ulong)i)); }
            _pt.ReadLeaf(_pt.GetSlot(leaf), ptes);
            ulong first = _mem.AllocHugeFrames();
            for (int i = 0; i < ptes.Length; i++)
            {
                ulong frame = first + (ulong)i;
                _mem.Map(frame);
                ulong old = Pte.Frame(ptes[i]);
                if (Pte.IsPresent(ptes[i]) && old >= PhysicalMemory.FirstUserPfn)
                {
                    _mem.SetContent(frame, _mem.Content.Duplicate(_mem.ContentOf(old)));
                    _mem.Unmap(old, anonymous: true);
                    AddRss(-1);
                }
            }
            AddRss(PageTable.LeafEntries);
            ulong writable = vma.Writable ? Pte.Writable : 0;
            _pt.SetHuge(leaf, Pte.Present | Pte.Dirty | Pte.Accessed | writable | _softDirtyBit | first);
        }
    }

    /// <summary>
    /// userfaultfd with UFFD_FEATURE_WP_ASYNC | WP_UNPOPULATED, UFFDIO_REGISTER (MODE_WP) on the range, then
    /// UFFDIO_WRITEPROTECT of all of it: present pages become uffd-wp (and read-only), swap entries carry
    /// uffd-wp, empty pages get uffd-wp markers (8 bytes of page table per page, as in the kernel). The first
    /// write to a page then clears uffd-wp (PAGEMAP_SCAN reports it WRITTEN). With WP_ASYNC any memory may be
    /// registered, file mappings and PROT_NONE ones included (vma_can_userfault); EINVAL on a kernel without WP_ASYNC.
    /// </summary>
    public void RegisterUffdWriteProtectAsync(ulong address, ulong length)
    {
        if (!Profile.HasUffdWriteProtectAsync)
            throw Invalid($"userfaultfd UFFD_FEATURE_WP_ASYNC is not available on kernel {Profile.Release} (it came in 6.7)");
        lock (_mem.Lock)
        {
            ulong end = CheckAdviceRange("RegisterUffdWriteProtectAsync", address, length);
            if (end == 0) throw Invalid("RegisterUffdWriteProtectAsync: length is zero");
            // Holes are allowed (and stay holes); a range without any VMA is EINVAL.
            if (_vmas.FindVmaIntersection(address, end) == null)
                throw Invalid($"RegisterUffdWriteProtectAsync: 0x{address:x}-0x{end:x} holds no mapping");
            // userfaultfd_register, one VMA at a time from the left: one already registered is left alone (not
            // split, not merged); otherwise its part in range is split off, registered and merged with its
            // neighbours as they are then, keeping the survivor's VM_SOFTDIRTY (VmaList.Merge). Seen on Debian
            // 6.12.117 in the kernel matrix (random scenario d72 of seed 20261126: a new VMA registered between
            // two registered ones takes the previous one's clean VM_SOFTDIRTY).
            for (ulong pos = address; pos < end;)
            {
                var vma = _vmas.FindVmaIntersection(pos, end);
                if (vma == null) break;
                if (vma.UffdWriteProtect) { pos = vma.End; continue; }
                ulong pieceStart = Math.Max(pos, vma.Start), pieceLimit = Math.Min(end, vma.End);
                SplitAt(pieceStart);
                SplitAt(pieceLimit);
                int i = _vmas.FindVmaIndex(pieceStart);
                _vmas[i].Flags |= VmaFlags.UffdWriteProtect;
                i = _vmas.Merge(i);
                pos = Math.Max(pieceLimit, _vmas[i].End);
            }
            WriteProtectUffd(address, end);
        }
    }

    /// <summary>
    /// UFFDIO_WRITEPROTECT (mode WP) of a registered range: write-protects it again (resets WRITTEN); holes are
    /// skipped. A range without a VMA, or with one not registered, is ENOENT (mwriteprotect_range).
    /// </summary>
    public void UffdWriteProtect(ulong address, ulong length)
    {
        lock (_mem.Lock)
        {
            ulong end = CheckAdviceRange("UffdWriteProtect", address, length);
            if (end == 0) return;
            if (_vmas.FindVmaIntersection(address, end) == null)
                throw new EngineException(EngineError.InvalidArgument, $"UffdWriteProtect: 0x{address:x}-0x{end:x} holds no mapping (ENOENT).", ProcessId, Errno.ENOENT);
            foreach (var vma in _vmas.Range(address, end))
                if (!vma.UffdWriteProtect)
                    throw new EngineException(EngineError.InvalidArgument, $"UffdWriteProtect: 0x{Math.Max(address, vma.Start):x} is not registered (ENOENT).", ProcessId, Errno.ENOENT);
            WriteProtectUffd(address, end);
        }
    }

    // The VMAs' parts of [start, end): holes get no markers.
    private void WriteProtectUffd(ulong start, ulong end)
    {
        System.Threading.Interlocked.Increment(ref _writeProtects);
        foreach (var vma in _vmas.Range(start, end))
            MutatePtes(Math.Max(start, vma.Start), Math.Min(end, vma.End), visitNone: true, (_, pte) => UffdProtectPte(pte),
                (_, pmd) => (pmd | Pte.UffdWp) & ~Pte.Writable);
    }

    private static ulong UffdProtectPte(ulong pte)
    {
        if (pte == 0) return Pte.Swap | Pte.UffdWp;   // PTE marker (WP_UNPOPULATED)
        if ((pte & Pte.Guard) != 0) return pte;
        return Pte.IsPresent(pte) ? (pte | Pte.UffdWp) & ~Pte.Writable : pte | Pte.UffdWp;
    }

    /// <summary>
    /// MADV_GUARD_INSTALL (6.15+): the pages are dropped and replaced by guard markers; any access is a
    /// SegmentationFault; pagemap shows SWAP | GUARD (bit 58). EINVAL on a profile without guard regions.
    /// </summary>
    public void GuardInstall(ulong address, ulong length)
    {
        if (!Profile.HasGuardRegions) throw Invalid($"MADV_GUARD_INSTALL is not available on kernel {Profile.Release}");
        lock (_mem.Lock)
        {
            ulong end = CheckMappedRange("GuardInstall", address, length);
            if (end == 0) return;
            // One VMA after the other: a sealed read-only private anonymous one stops the walk (EPERM), those before it done.
            foreach (var vma in _vmas.Range(address, end))
            {
                RefuseSealedDiscard("GuardInstall", vma);
                ulong from = Math.Max(address, vma.Start), to = Math.Min(end, vma.End);
                ZapRange(from, to, keepGuards: true);
                MutatePtes(from, to, visitNone: true, (_, pte) =>
                {
                    if (pte != 0) return pte;
                    _guardPages++;
                    return Pte.Swap | Pte.Guard;
                });
            }
        }
    }

    /// <summary>MADV_GUARD_REMOVE: removes the guard markers of the range.</summary>
    public void GuardRemove(ulong address, ulong length)
    {
        if (!Profile.HasGuardRegions) throw Invalid($"MADV_GUARD_REMOVE is not available on kernel {Profile.Release}");
        lock (_mem.Lock)
        {
            ulong end = CheckMappedRange("GuardRemove", address, length);
            if (end == 0) return;
            MutatePtes(address, end, visitNone: false, (_, pte) =>
            {
                if ((pte & Pte.Guard) == 0) return pte;
                _guardPages--;
                return 0;
            });
        }
    }
}
