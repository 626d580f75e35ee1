using System;
using System.Collections.Generic;

namespace SoftDirty.Emulation;

public sealed partial class EmulatedProcess
{
    // ---- KSM, the folio split and migration: the kernel's own page moves (round 24, measured on Debian 6.1, 6.12, 7.2,
    // 7.3). Internal: the scenarios use them (SoftDirty.TestKit); a merge drops soft-dirty bits that no save of an emulated
    // process compares by content (KsmMergeable reads a real process's /proc), so no cmdlet or public method reaches them. ----

    /// <summary>
    /// madvise MADV_MERGEABLE (<paramref name="mergeable"/>) or MADV_UNMERGEABLE of a mapped range; shared mappings are left
    /// as they are (KSM merges private pages only). MADV_UNMERGEABLE breaks every KSM page of the range first (break_ksm):
    /// 6.1 takes a write fault, so the private copy is written and soft-dirty (<see cref="KernelProfile.KsmUnmergeWrites"/>);
    /// later kernels unshare, and the copy keeps the entry's soft-dirty and uffd-wp bits as they were, read-only.
    /// </summary>
    internal void MadviseMergeable(ulong address, ulong length, bool mergeable)
    {
        lock (_mem.Lock)
        {
            string op = mergeable ? "MadviseMergeable" : "MadviseUnmergeable";
            ulong end = CheckMappedRange(op, address, length);
            if (end == 0) return;
            _vmas.Split(address);
            _vmas.Split(end);
            foreach (var vma in _vmas.Range(address, end))
            {
                if (vma.Shared) continue;
                if (mergeable) { vma.Flags |= VmaFlags.Mergeable; continue; }
                for (ulong page = vma.Start >> PageShift; page < vma.End >> PageShift; page++)
                {
                    if (PageTable.KindOf(_pt.GetSlot(page >> PageTable.LeafShift)) == PageTable.SlotKind.Huge) continue;
                    ulong pte = _pt.Get(page);
                    if (!Pte.IsPresent(pte) || !_mem.IsKsm(Pte.Frame(pte))) continue;
                    ulong fresh = _mem.CopyFrame(Pte.Frame(pte));
                    _mem.Map(fresh);
                    _mem.Unmap(Pte.Frame(pte), anonymous: true);
                    _pt.Set(page, Profile.KsmUnmergeWrites
                        ? WrittenBits | _softDirtyBit | fresh
                        : Pte.Present | Pte.Accessed | (pte & (Pte.SoftDirty | Pte.UffdWp)) | fresh);
                }
                vma.Flags &= ~VmaFlags.Mergeable;
            }
        }
    }

    /// <summary>
    /// ksmd's full scans of this process until nothing more merges: the small private anonymous pages of mergeable
    /// mappings, in address order. A page whose bytes a KSM page holds is mapped to it; else one whose bytes an earlier page
    /// of this scan holds (the unstable tree) becomes a KSM page where it is, write-protected (its soft-dirty and uffd-wp
    /// bits kept), and the earlier page is mapped to it. A page mapped to a KSM page gets a new entry (mm/ksm.c
    /// replace_page: mk_pte), without soft-dirty or uffd-wp: a write since the last clear no longer shows. THPs are not
    /// scanned (the kernel splits one to merge its pages: not modelled), nor is ksmd's max_page_sharing (256) or another
    /// process's memory.
    /// </summary>
    internal void KsmScan()
    {
        lock (_mem.Lock)
        {
            var unstable = new List<ulong>();
            Span<byte> a = stackalloc byte[PageContent.PageSize], b = stackalloc byte[PageContent.PageSize];
            foreach (var vma in _vmas)
            {
                if ((vma.Flags & VmaFlags.Mergeable) == 0 || vma.Shared) continue;
                for (ulong page = vma.Start >> PageShift; page < vma.End >> PageShift; page++)
                {
                    if (PageTable.KindOf(_pt.GetSlot(page >> PageTable.LeafShift)) == PageTable.SlotKind.Huge) continue;
                    ulong pte = _pt.Get(page);
                    ulong frame = Pte.Frame(pte);
                    if (!Pte.IsPresent(pte) || (pte & Pte.NotAnonymous) != 0 || frame < PhysicalMemory.FirstUserPfn || _mem.IsKsm(frame)) continue;
                    ulong? stable = null;
                    foreach (ulong k in _mem.KsmFrames)
                        if (SameBytes(frame, k, a, b)) { stable = k; break; }
                    if (stable is { } kpage) { MapToKsmPage(page, kpage); continue; }
                    int match = -1;
                    for (int u = 0; u < unstable.Count && match < 0; u++)
                        if (SameBytes(frame, Pte.Frame(_pt.Get(unstable[u])), a, b)) match = u;
                    if (match < 0) { unstable.Add(page); continue; }
                    _pt.Set(page, pte & ~(Pte.Writable | Pte.Dirty));   // write_protect_page: merged in place
                    _mem.MarkKsm(frame);
                    MapToKsmPage(unstable[match], frame);
                    unstable.RemoveAt(match);
                }
            }
        }
    }

    /// <summary>replace_page: the page's entry maps <paramref name="kpage"/> anew, read-only, with no soft-dirty or uffd-wp bit.</summary>
    private void MapToKsmPage(ulong page, ulong kpage)
    {
        ulong old = Pte.Frame(_pt.Get(page));
        _mem.Map(kpage);
        _mem.Unmap(old, anonymous: true);
        _pt.Set(page, Pte.Present | Pte.Accessed | kpage);
    }

    private bool SameBytes(ulong x, ulong y, Span<byte> a, Span<byte> b)
    {
        ulong cx = _mem.ContentOf(x), cy = _mem.ContentOf(y);
        if (cx == cy) return true;
        _mem.Content.Render(cx, a);
        _mem.Content.Render(cy, b);
        return a.SequenceEqual(b);
    }

    /// <summary>
    /// The folio split of the THPs in a range (what the kernel does under memory pressure, for KSM, or through debugfs
    /// split_huge_pages): each PMD becomes 512 PTEs (<see cref="SplitHugePage"/>'s rules), and from 6.12 a page that holds
    /// only zeros is mapped to the shared zero page instead, keeping its soft-dirty and uffd-wp bits
    /// (<see cref="KernelProfile.SplitMapsZeroSubpages"/>; measured: the zero page reads present, not exclusive).
    /// </summary>
    internal void SplitHugePages(ulong address, ulong length)
    {
        lock (_mem.Lock)
        {
            ulong end = CheckAdviceRange("SplitHugePages", address, length);
            if (end == 0) return;
            for (ulong leaf = address >> PageShift >> PageTable.LeafShift; leaf <= (end - 1) >> PageShift >> PageTable.LeafShift; leaf++)
            {
                ulong slot = _pt.GetSlot(leaf);
                if (PageTable.KindOf(slot) != PageTable.SlotKind.Huge || Pte.Frame(PageTable.HugeValue(slot)) == PhysicalMemory.HugeZeroPfn) continue;
                SplitHugeLeaf(leaf);
                if (!Profile.SplitMapsZeroSubpages) continue;
                for (ulong page = leaf << PageTable.LeafShift; page < (leaf + 1) << PageTable.LeafShift; page++)
                {
                    ulong pte = _pt.Get(page);
                    if (!Pte.IsPresent(pte) || _mem.ContentOf(Pte.Frame(pte)) != PageContent.Zero) continue;
                    _mem.Unmap(Pte.Frame(pte), anonymous: true);
                    AddRss(-1);
                    _pt.Set(page, Pte.Present | Pte.Accessed | (pte & (Pte.SoftDirty | Pte.UffdWp)) | PhysicalMemory.ZeroPfn);
                }
            }
        }
    }

    /// <summary>
    /// Page migration (move_pages, NUMA balancing, compaction) of the present private anonymous pages of a range: each moves
    /// to a new frame through a migration entry that keeps its soft-dirty and uffd-wp bits (mm/migrate.c remove_migration_pte);
    /// on 6.1 a page whose entry was dirty comes back soft-dirty too (<see cref="KernelProfile.MigrationCarriesDirty"/>): after
    /// clear_refs 4 a page written before the clear reads soft-dirty again, an over-count. Pages mapped more than once stay
    /// (MPOL_MF_MOVE). A THP is not modelled (7.3 answered EBUSY for one); nor is the NUMA node.
    /// </summary>
    internal void MigratePages(ulong address, ulong length)
    {
        lock (_mem.Lock)
        {
            ulong end = CheckMappedRange("MigratePages", address, length);
            if (end == 0) return;
            MutatePtes(address, end, visitNone: false, (_, pte) =>
            {
                ulong frame = Pte.Frame(pte);
                if (!Pte.IsPresent(pte) || (pte & Pte.NotAnonymous) != 0 || frame < PhysicalMemory.FirstUserPfn || _mem.MapCount(frame) != 1 || _mem.IsKsm(frame)) return pte;
                ulong fresh = _mem.CopyFrame(frame);
                _mem.Map(fresh);
                _mem.Unmap(frame, anonymous: true);
                return (pte & ~Pte.FrameMask) | (Profile.MigrationCarriesDirty && (pte & Pte.Dirty) != 0 ? _softDirtyBit : 0) | fresh;
            });
        }
    }
}
