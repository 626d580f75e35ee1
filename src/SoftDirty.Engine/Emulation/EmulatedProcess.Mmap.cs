using System;
using System.Collections.Generic;
using System.Linq;

namespace SoftDirty.Emulation;

// mm/mmap.c, mm/mremap.c, mm/mprotect.c: the system calls that change the VMA list.
public sealed partial class EmulatedProcess
{
    // ---- mmap / munmap / mremap / mprotect ------------------------------------------------------------

    /// <summary>
    /// mmap: a new VMA with VM_SOFTDIRTY, merged with compatible neighbours. Without
    /// <see cref="MmapFlags.Fixed"/> the hint is used when free, else the highest free gap below
    /// <see cref="MmapBase"/> (2 MiB-aligned for huge-page mappings and multiples of 2 MiB). A
    /// <paramref name="path"/> maps that file (a page cache shared by the machine; pages read as zero until
    /// written); <see cref="MmapFlags.Shared"/> without a path is shared anonymous memory.
    /// <see cref="MmapFlags.HugePage"/> sets VM_HUGEPAGE (MADV_HUGEPAGE) so aligned 2 MiB of private
    /// anonymous memory fault in as one THP. <paramref name="offset"/> is the file offset of a file mapping
    /// (page-aligned, else EINVAL). Returns the new range as maps would describe it.
    /// </summary>
    /// <param name="address">The address (with <see cref="MmapFlags.Fixed"/>) or a hint; null lets the kernel choose.</param>
    /// <param name="length">The length in bytes, rounded up to pages.</param>
    /// <param name="prot">The protection (PROT_READ, PROT_WRITE, PROT_EXEC).</param>
    /// <param name="flags">Shared, fixed, huge page.</param>
    /// <param name="path">A file to map; null for anonymous memory.</param>
    /// <param name="offset">The file offset of a file mapping.</param>
    public MemoryMapping Mmap(ulong? address, ulong length, Protection prot, MmapFlags flags = MmapFlags.None, string? path = null,
        ulong offset = 0)
    {
        if ((flags & ~(MmapFlags.Shared | MmapFlags.Fixed | MmapFlags.HugePage)) != 0) throw Invalid($"mmap: unknown flags {flags}");
        bool shared = (flags & MmapFlags.Shared) != 0, fixedAddress = (flags & MmapFlags.Fixed) != 0, hugePage = (flags & MmapFlags.HugePage) != 0;
        if ((offset & PageOffsetMask) != 0) throw Invalid($"mmap: offset 0x{offset:x} is not page-aligned");
        if ((prot & ~(Protection.Read | Protection.Write | Protection.Execute)) != 0) throw Invalid($"mmap: unknown protection bits {prot}");
        if (length == 0) throw Invalid("mmap: length is zero");
        ulong len = PageAlign(length);
        if (len == 0 || len > TaskSize)
            throw new EngineException(EngineError.EmulatorNotMapped, $"mmap: length 0x{length:x} exceeds the address space (ENOMEM).", length, Errno.ENOMEM);
        if (path != null && path.Length == 0) throw Invalid("mmap: empty path");
        // mm/mmap.c file_mmap_ok(): a file mapping must end at or below MAX_LFS_FILESIZE (LLONG_MAX), else EOVERFLOW.
        const ulong MaxLfsFileSize = long.MaxValue;
        if (path != null && (len > MaxLfsFileSize || offset / (ulong)PageSize > (MaxLfsFileSize - len) / (ulong)PageSize))
            throw new EngineException(EngineError.InvalidArgument,
                $"mmap: file offset 0x{offset:x} + length 0x{len:x} ends past the largest file offset (EOVERFLOW).", offset, Errno.EOVERFLOW);
        lock (_mem.Lock)
        {
            ulong start;
            if (fixedAddress)
            {
                if (address is not { } a) throw Invalid("mmap: MAP_FIXED without an address");
                // mm/mmap.c __get_unmapped_area(): MAP_FIXED past the task size is ENOMEM, checked before the alignment (EINVAL).
                if (a > TaskSize - len)
                    throw new EngineException(EngineError.EmulatorNotMapped, $"mmap: 0x{a:x} + 0x{len:x} lies beyond the user address space (0x{TaskSize:x}) (ENOMEM).", a, Errno.ENOMEM);
                if ((a & PageOffsetMask) != 0) throw Invalid($"mmap: address 0x{a:x} is not page-aligned");
                if (a < MinMmapAddress)
                    throw new EngineException(EngineError.PermissionDenied, $"mmap: 0x{a:x} is below mmap_min_addr 0x{MinMmapAddress:x} (EPERM).", a, Errno.EPERM);
                start = a;
                RefuseSealed("mmap", start, start + len);
                RemoveRange(start, start + len);
            }
            else
            {
                ulong hint = address ?? 0;
                start = hint != 0 && (hint & PageOffsetMask) == 0 && hint >= MinMmapAddress && hint <= TaskSize - len && _vmas.FindVmaIntersection(hint, hint + len) == null
                    ? hint : FindFreeTopDown(len, hugePage || (len & (HugePageBytes - 1)) == 0 ? HugePageBytes : PageBytes);
            }
            var vma = new Vma
            {
                Start = start, End = start + len, Protection = prot, Shared = shared,
                Backing = path != null ? _mem.File(path) : shared ? new BackingObject(SharedAnonymousPath, isFile: false) : null,
                Flags = (hugePage ? VmaFlags.HugePage : 0) | (!shared && (prot & Protection.Write) != 0 ? VmaFlags.Account : 0),
                PageOffset = path != null ? offset >> PageShift : shared ? 0 : start >> PageShift,
            };
            int at = _vmas.Insert(vma);
            // 6.1's mmap_region tries next, then prev with next's anon_vma: a prev that has none (an empty
            // anon_vma chain) then does not merge (found against Debian's 6.1 kernel).
            bool skipPrev = Profile.LegacyMmapAnonVmaMerge && at > 0 && at + 1 < _vmas.Count
                && vma.CanMergeWith(_vmas[at + 1]) && _vmas[at + 1].AnonVma != 0 && _vmas[at - 1].AnonVma == 0;
            int i = _vmas.Merge(at, skipPrev);
            if (Profile.SoftDirtyEnabled) _vmas[i].Flags |= VmaFlags.SoftDirty;
            var m = ToMapping(_vmas[i], withCounters: false);
            m.Start = start;
            m.End = start + len;
            m.Offset = path != null ? offset : 0;
            return m;
        }
    }

    /// <summary>What maps shows for shared anonymous memory: "/dev/zero (deleted)".</summary>
    public const string SharedAnonymousPath = "/dev/zero";

    private ulong FindFreeTopDown(ulong len, ulong align) =>
        _vmas.UnmappedAreaTopDown(len, align, MinMmapAddress, MmapBase)
        ?? throw new EngineException(EngineError.EmulatorNotMapped, $"mmap: no free range of 0x{len:x} bytes (ENOMEM).", len, Errno.ENOMEM);

    /// <summary>munmap: removes every mapping in the range (unmapped parts are fine); EINVAL for a bad range.</summary>
    public void Munmap(ulong address, ulong length)
    {
        ulong end = CheckRange("munmap", address, length);
        lock (_mem.Lock)
        {
            RefuseSealed("munmap", address, end);
            RemoveRange(address, end);
        }
    }

    private void RemoveRange(ulong start, ulong end)
    {
        SplitAt(start);
        SplitAt(end);
        ZapRange(start, end, keepGuards: false);
        _vmas.RemoveRange(start, end);
        FreeUnusedTables(start, end);
    }

    /// <summary>
    /// free_pgtables after an unmap of [start, end): the PTE table of a 2 MiB range the unmap touched goes
    /// when no VMA is left in that range (floor and ceiling are the neighbouring VMAs).
    /// </summary>
    private void FreeUnusedTables(ulong start, ulong end)
    {
        if (end <= start) return;
        ulong firstLeaf = start >> PageShift >> PageTable.LeafShift, lastLeaf = (end - 1) >> PageShift >> PageTable.LeafShift;
        foreach (var leaf in _pt.TablesIn(firstLeaf, lastLeaf + 1))
        {
            ulong from = leaf << PageTable.LeafShift << PageShift;
            if (_vmas.FindVmaIntersection(from, from + HugePageBytes) == null) _pt.FreeTable(leaf);
        }
    }

    /// <summary>
    /// mremap with MREMAP_MAYMOVE | MREMAP_FIXED: moves [address, +oldLength) to [newAddress, +newLength),
    /// unmapping whatever was there. The old range must start in a VMA and (unless the profile has
    /// <see cref="KernelProfile.MremapMovesMultipleVmas"/> and the size is unchanged) lie in that one VMA,
    /// else EmulatorNotMapped (EFAULT); overlapping ranges are EINVAL. A multi-VMA move unmaps only the
    /// destination pages each VMA lands on, as the kernel does. Every moved PTE (present, swap or marker) becomes soft-dirty; the new
    /// VMA keeps the old one's flags and merges with its neighbours, except userfaultfd registration (no
    /// EVENT_REMAP): the whole source VMA leaves it and the moved PTEs lose uffd-wp (markers dropped); a move
    /// of several VMAs stops with EFAULT at a registered one.
    /// </summary>
    public MemoryMapping Mremap(ulong address, ulong oldLength, ulong newAddress, ulong newLength)
    {
        // Before 6.17 the old VMA is looked up before the new range is checked: an old address in no VMA
        // is EFAULT even where the new range is invalid.
        if (Profile.LegacyMremapOrder && (address & PageOffsetMask) == 0 && PageAlign(newLength) != 0)
            lock (_mem.Lock)
                if (_vmas.VmaLookup(address) == null) throw NotMapped("mremap", address, Errno.EFAULT);
        ulong newEnd = CheckRange("mremap", newAddress, newLength);
        if ((address & PageOffsetMask) != 0) throw Invalid($"mremap: address 0x{address:x} is not page-aligned");
        ulong oldLen = PageAlign(oldLength);
        ulong newLen = newEnd - newAddress;
        if (oldLen == 0) throw Invalid("mremap: old length is zero (only valid for shared mappings without MREMAP_FIXED)");
        if (address + oldLen < address || address + oldLen > TaskSize) throw Invalid("mremap: old range beyond the address space");
        if (newAddress < address + oldLen && address < newEnd) throw Invalid("mremap: old and new ranges overlap");
        lock (_mem.Lock)
        {
            var src = _vmas.VmaLookup(address);
            bool multiple = Profile.MremapMovesMultipleVmas && oldLen == newLen;
            if (src == null || (!multiple && address + oldLen > src.End))
            {
                // 6.1: an old address in no VMA fails at once; a range running past its VMA fails in
                // vma_to_resize, after mremap_to has unmapped the destination.
                if (Profile.LegacyMremapOrder && src != null)
                {
                    RemoveRange(newAddress, newEnd);
                    if (oldLen > newLen) RemoveRange(address + newLen, address + oldLen);
                }
                throw NotMapped("mremap", src == null ? address : src.End, Errno.EFAULT);
            }
            bool severalVmas = multiple && address + oldLen > src.End;
            if (!severalVmas)
            {
                RefuseSealed("mremap", address, address + oldLen);
                RefuseSealed("mremap", newAddress, newEnd);
            }
            if (oldLen > newLen) { RemoveRange(address + newLen, address + oldLen); oldLen = newLen; }
            if (!multiple) RemoveRange(newAddress, newEnd);
            bool dropUffdWp = !severalVmas && src.UffdWriteProtect;
            // A moved registered VMA merges only with the registered neighbours it takes out of userfaultfd
            // (copy_vma merges it while still registered: an unregistered neighbour differs in flags; Debian
            // 7.2.13, kernel matrix workload w209); on 7.3 with none.
            bool mergePrev = true, mergeNext = true;
            if (dropUffdWp)
            {
                if (multiple) RemoveRange(newAddress, newEnd);   // a one-VMA move: the destination goes first
                (mergePrev, mergeNext) = Profile.UffdMoveKeepsNeighboursRegistered ? (false, false)
                    : LeaveUffdOnMove(_vmas.VmaLookup(address)!, address, newAddress, newEnd);
            }
            ulong oldEnd = address + oldLen;
            // A move of several VMAs stops with EFAULT at the first one registered with userfaultfd, or EPERM at the
            // first sealed one (registration checked first) or the first whose landing place is sealed; the ones before
            // it are moved already, the refused one is not split (measured on 6.18). A single registered VMA moves; a
            // single sealed one, or one landing on a seal, was refused above.
            Vma? refused = null;
            if (severalVmas)
                refused = _vmas.Range(address, oldEnd).FirstOrDefault(v => v.UffdWriteProtect || v.Sealed);
            if (refused != null)
            {
                if (refused.Start <= address) throw RefusesMove(refused, address);
                oldEnd = refused.Start;
            }
            SplitAt(address);
            SplitAt(oldEnd);
            var segments = _vmas.Range(address, oldEnd).ToList();
            // The kernel moves one VMA after the other (unmap where it lands, copy_vma, move the PTEs, unmap
            // the source), so a moved VMA may merge with a destination neighbour that a later segment's
            // landing then cuts again (measured on 6.18: it keeps the neighbour's anon_vma, so fork copies its
            // page table). One that could merge with a source VMA still waiting to move goes in after every
            // source VMA is out.
            var deferred = new List<Vma>();
            EngineException? sealedLanding = null;
            for (int k = 0; k < segments.Count; k++)
            {
                var segment = segments[k];
                ulong to = newAddress + (segment.Start - address);
                if (severalVmas && _vmas.Range(to, to + (segment.End - segment.Start)).FirstOrDefault(v => v.Sealed) is { } seal)
                {
                    sealedLanding = SealedAt("mremap", Math.Max(to, seal.Start));
                    break;
                }
                // A multi-VMA move unmaps only where each VMA lands: destination pages facing source gaps stay.
                if (multiple) RemoveRange(to, to + (segment.End - segment.Start));
                MovePtes(segment.Start, segment.End - segment.Start, to, dropUffdWp);
                _vmas.Remove(segment);
                var moved = segment.Clone();
                // copy_vma: anonymous memory never faulted in takes the new address as its page offset.
                if (segment.IsAnonymous && segment.AnonVma == 0) moved.PageOffset = to >> PageShift;
                if (dropUffdWp) moved.Flags &= ~VmaFlags.UffdWriteProtect;
                moved.Start = to;
                moved.End = to + (segment.End - segment.Start) + (segment.End == oldEnd ? newLen - oldLen : 0);
                bool touchesSource = segments.Skip(k + 1).Any(w =>
                    (w.End == moved.Start && w.CanMergeWith(moved)) || (moved.End == w.Start && moved.CanMergeWith(w)));
                if (touchesSource) { deferred.Add(moved); continue; }
                _vmas.Merge(_vmas.Insert(moved), skipPrev: !mergePrev, skipNext: !mergeNext);
            }
            foreach (var moved in deferred)
            {
                _vmas.Merge(_vmas.Insert(moved));
            }
            // The old range is unmapped last (move_vma), the new VMAs in place.
            FreeUnusedTables(address, oldEnd);
            if (sealedLanding != null) throw sealedLanding;
            if (refused != null) throw RefusesMove(refused, refused.Start);
            return ToMapping(_vmas.VmaLookup(newAddress)!, withCounters: false);
        }
    }

    private EngineException RefusesMove(Vma refused, ulong address) => refused.UffdWriteProtect ? UffdRefusesMove(refused) : SealedAt("mremap", address);

    private EngineException UffdRefusesMove(Vma refused) =>
        new(EngineError.EmulatorNotMapped,
            $"mremap: 0x{refused.Start:x}-0x{refused.End:x} is registered with userfaultfd, which a move of several VMAs refuses (EFAULT).",
            ProcessId, Errno.EFAULT);

    /// <summary>
    /// Userfaultfd registration on a move of (part of) the registered VMA <paramref name="src"/> without
    /// UFFD_FEATURE_EVENT_REMAP (measured on 6.18): copy_vma first merges the new VMA, registration still on,
    /// with registered neighbours at the destination, the source VMA itself included while it is still
    /// mapped there; then mremap_userfaultfd_prep takes the merged VMA out of userfaultfd. So the moved
    /// VMA and whatever it merged with (the rest of the source included) lose registration; other VMAs keep it.
    /// </summary>
    private (bool Prev, bool Next) LeaveUffdOnMove(Vma src, ulong address, ulong newAddress, ulong newEnd)
    {
        bool leftPrev = false, leftNext = false;
        var probe = src.Clone();
        probe.PageOffset = src.IsAnonymous && src.AnonVma == 0 ? newAddress >> PageShift : src.BackingPage(address);
        probe.Start = newAddress;
        probe.End = newEnd;
        var next = _vmas.FindVma(newEnd - 1);
        var prev = _vmas.FindVma(newAddress - 1);
        if (prev != null && prev.End == newAddress && prev.CanMergeWith(probe))
        {
            prev.Flags &= ~VmaFlags.UffdWriteProtect;
            leftPrev = true;
        }
        if (next != null && next.Start == newEnd && probe.CanMergeWith(next))
        {
            next.Flags &= ~VmaFlags.UffdWriteProtect;
            leftNext = true;
        }
        return (leftPrev, leftNext);
    }

    // dropUffdWp: the source VMA is registered for uffd-wp without EVENT_REMAP: the moved PTEs lose uffd-wp
    // and uffd-wp markers are dropped (move_ptes).
    private void MovePtes(ulong from, ulong length, ulong to, bool dropUffdWp)
    {
        ulong pages = length >> PageShift;
        ulong fromPage = from >> PageShift, toPage = to >> PageShift;
        // move_page_tables: per extent (up to the next 2 MiB boundary of either side) the destination gets a
        // PTE table when the source has one there, even an empty one.
        var destTables = new List<ulong>();
        for (ulong p = fromPage; p < fromPage + pages;)
        {
            ulong q = p - fromPage + toPage;
            ulong extent = Math.Min(PageTable.LeafEntries - (p & PageTable.LeafIndexMask), PageTable.LeafEntries - (q & PageTable.LeafIndexMask));
            extent = Math.Min(extent, fromPage + pages - p);
            if (_pt.HasTable(p >> PageTable.LeafShift)) destTables.Add(q >> PageTable.LeafShift);
            p += extent;
        }
        bool leafAligned = ((fromPage ^ toPage) & PageTable.LeafIndexMask) == 0;
        Span<ulong> buffer = stackalloc ulong[PageTable.LeafEntries];
        var moved = new List<(ulong Page, ulong Pte)>();
        ulong end = fromPage + pages;
        for (ulong leaf = _pt.NextLeaf(fromPage >> PageTable.LeafShift, ((end - 1) >> PageTable.LeafShift) + 1);
             leaf <= (end - 1) >> PageTable.LeafShift;
             leaf = _pt.NextLeaf(leaf + 1, ((end - 1) >> PageTable.LeafShift) + 1))
        {
            ulong first = leaf << PageTable.LeafShift;
            ulong slot = _pt.GetSlot(leaf);
            if (PageTable.KindOf(slot) == PageTable.SlotKind.Huge)
            {
                if (leafAligned && first >= fromPage && first + PageTable.LeafEntries <= end)
                {
                    ulong destLeaf = (first - fromPage + toPage) >> PageTable.LeafShift;
                    _pt.SetHuge(destLeaf, PageTable.HugeValue(slot) | _softDirtyBit);
                    _pt.ClearLeaf(leaf);
                    continue;
                }
                SplitHugeLeaf(leaf);
                slot = _pt.GetSlot(leaf);
            }
            _pt.ReadLeaf(slot, buffer);
            ulong lo = Math.Max(first, fromPage), hi = Math.Min(first + PageTable.LeafEntries, end);
            for (ulong p = lo; p < hi; p++)
            {
                ulong pte = buffer[(int)(p - first)];
                if (pte == 0) continue;
                buffer[(int)(p - first)] = 0;
                if (dropUffdWp)
                {
                    if (Pte.IsMarker(pte) && (pte & Pte.Guard) == 0) continue;
                    pte &= ~Pte.UffdWp;
                }
                moved.Add((p - fromPage + toPage, pte | _softDirtyBit));
            }
            _pt.WriteLeaf(leaf, buffer);
        }
        // Set after the walk: a destination may share a leaf with the source.
        foreach (var (page, pte) in moved) _pt.Set(page, pte);
        foreach (var leaf in destTables) _pt.MakeTable(leaf);
    }

    /// <summary>
    /// mprotect: splits VMAs at the range ends, sets the protection and merges. Soft-dirty is preserved.
    /// Removing write permission write-protects the PTEs; adding it makes a PTE writable only where the
    /// kernel's can_change_pte_writable() allows: never a uffd-wp PTE, never a clean PTE while soft-dirty
    /// tracking is on for the VMA (so the next write still faults and sets the bit), an anonymous page only
    /// when exclusive, a shared page only when dirty. A zero length does nothing. As the kernel, a range
    /// starting in a hole is EmulatorNotMapped (ENOMEM) with nothing changed, and one with a hole further on
    /// is changed up to the hole, then EmulatorNotMapped.
    /// </summary>
    public void Mprotect(ulong address, ulong length, Protection prot)
    {
        if ((address & PageOffsetMask) != 0) throw Invalid($"mprotect: address 0x{address:x} is not page-aligned");
        if ((prot & ~(Protection.Read | Protection.Write | Protection.Execute)) != 0) throw Invalid($"mprotect: unknown protection bits {prot}");
        if (length == 0) return;
        ulong len = PageAlign(length);
        if (len == 0 || address + len < address || address + len > TaskSize) throw NotMapped("mprotect", TaskSize);
        ulong end = address + len;
        lock (_mem.Lock)
        {
            ulong? hole = _vmas.FirstHole(address, end);
            if (hole == address) throw NotMapped("mprotect", address);
            end = hole ?? end;
            // mprotect_fixup, one VMA at a time from the left. A VMA whose flags do not change is left alone
            // (not split, not merged). Otherwise the part in range is split off, changed, then merged with its
            // neighbours as they are at that moment (the next one not changed yet). The merged VMA takes the
            // changed VMA's new flags, whichever side survived: without sticky merging its VM_SOFTDIRTY is the
            // changed VMA's, so of a run of changed VMAs that merge, the last one's wins (found by the
            // differential run against Debian's 6.1 kernel; the order and the untouched unchanged VMAs by
            // Debian 6.12.117 in the kernel matrix, random scenarios d32 and d197 of seed 20261126).
            for (ulong pos = address; pos < end;)
            {
                var vma = _vmas.FindVmaIntersection(pos, end);
                if (vma == null) break;
                if (vma.Sealed) throw SealedAt("mprotect", Math.Max(pos, vma.Start));
                var flags = vma.Flags;
                if (!vma.Shared && (prot & Protection.Write) != 0) flags |= VmaFlags.Account;
                else if (Profile.UnaccountsUnfaultedOnMprotect && vma.IsAnonymous && vma.AnonVma == 0)
                    flags &= ~VmaFlags.Account;   // no commit to keep (6.7+)
                if (vma.Protection == prot && flags == vma.Flags) { pos = vma.End; continue; }
                ulong pieceStart = Math.Max(pos, vma.Start), pieceLimit = Math.Min(end, vma.End);
                SplitAt(pieceStart);
                SplitAt(pieceLimit);
                int i = _vmas.FindVmaIndex(pos);
                vma = _vmas[i];
                vma.Protection = prot;
                vma.Flags = flags;
                ApplyProtection(vma);
                var sd = vma.Flags & VmaFlags.SoftDirty;
                ulong pieceEnd = vma.End;
                i = _vmas.Merge(i);
                if (!Profile.StickySoftDirtyOnMerge) _vmas[i].Flags = (_vmas[i].Flags & ~VmaFlags.SoftDirty) | sd;
                pos = Math.Max(pieceEnd, _vmas[i].End);
            }
            if (hole is { } h) throw NotMapped("mprotect", h);
        }
    }

    private bool SoftDirtyTracking(Vma vma) => Profile.SoftDirtyEnabled && !vma.SoftDirty;

    private void ApplyProtection(Vma vma)
    {
        bool writable = vma.Writable;
        bool tracking = SoftDirtyTracking(vma);
        MutatePtes(vma.Start, vma.End, visitNone: false, (_, pte) =>
        {
            if (!Pte.IsPresent(pte)) return pte;
            if (!writable) return pte & ~Pte.Writable;
            return CanMakeWritable(vma, pte, tracking) ? pte | Pte.Writable : pte;
        });
    }

    private bool CanMakeWritable(Vma vma, ulong pte, bool tracking)
    {
        if ((pte & (Pte.UffdWp | Pte.CowProtected)) != 0) return false;
        if (tracking && (pte & Pte.SoftDirty) == 0) return false;
        ulong frame = Pte.Frame(pte);
        if (vma.Shared) return (pte & Pte.Dirty) != 0;
        // A page of a swap slot another entry still refers to is not exclusive (PageAnonExclusive clear): never made writable.
        return (pte & Pte.NotAnonymous) == 0 && frame >= PhysicalMemory.FirstUserPfn && _mem.MapCount(frame) == 1 && !_mem.InSwapCache(frame);
    }
}
