using System;

namespace SoftDirty.Emulation;

// The page table walks the system calls share: rewrite, zap, split a huge leaf.
public sealed partial class EmulatedProcess
{
    // ---- page table walks ---------------------------------------------------------------------------

    /// <summary>
    /// Rewrites the PTEs of [start, end): <paramref name="transform"/> gets (page number, PTE) and returns the
    /// new PTE; none PTEs only when <paramref name="visitNone"/>. A huge leaf wholly inside goes to
    /// <paramref name="huge"/> (leaf, PMD value → new value, 0 to clear) when given; otherwise it is split first.
    /// </summary>
    private void MutatePtes(ulong start, ulong end, bool visitNone, Func<ulong, ulong, ulong> transform,
        Func<ulong, ulong, ulong>? huge = null)
    {
        ulong startPage = start >> PageShift, endPage = end >> PageShift;
        if (endPage <= startPage) return;
        ulong lastLeaf = (endPage - 1) >> PageTable.LeafShift;
        Span<ulong> buffer = stackalloc ulong[PageTable.LeafEntries];
        for (ulong leaf = startPage >> PageTable.LeafShift; leaf <= lastLeaf; leaf++)
        {
            if (!visitNone)
            {
                leaf = _pt.NextLeaf(leaf, lastLeaf + 1);
                if (leaf > lastLeaf) break;
            }
            ulong first = leaf << PageTable.LeafShift;
            int lo = (int)(Math.Max(startPage, first) - first);
            int hi = (int)(Math.Min(endPage, first + PageTable.LeafEntries) - first);
            ulong slot = _pt.GetSlot(leaf);
            if (PageTable.KindOf(slot) == PageTable.SlotKind.Huge)
            {
                if (huge != null && lo == 0 && hi == PageTable.LeafEntries)
                {
                    ulong v = huge(leaf, PageTable.HugeValue(slot));
                    if (v == 0) _pt.ClearLeaf(leaf); else _pt.SetHuge(leaf, v);
                    continue;
                }
                SplitHugeLeaf(leaf);
                slot = _pt.GetSlot(leaf);
            }
            if (PageTable.KindOf(slot) == PageTable.SlotKind.Dense)
            {
                var arr = _pt.DenseArray(slot);
                for (int i = lo; i < hi; i++)
                    if (arr[i] != 0 || visitNone) arr[i] = transform(first + (ulong)i, arr[i]);
                continue;
            }
            _pt.ReadLeaf(slot, buffer);
            bool changed = false;
            for (int i = lo; i < hi; i++)
            {
                if (buffer[i] == 0 && !visitNone) continue;
                ulong n = transform(first + (ulong)i, buffer[i]);
                if (n != buffer[i]) { buffer[i] = n; changed = true; }
            }
            if (changed) _pt.WriteLeaf(leaf, buffer);
        }
    }

    /// <summary>Drops the PTEs of [start, end): frames unmapped (anonymous ones freed), swap slots released.</summary>
    // keepUffdWp: a uffd-wp PTE (bit or marker) becomes a uffd-wp marker (zap of a registered shmem or file VMA).
    private void ZapRange(ulong start, ulong end, bool keepGuards, bool keepUffdWp = false)
    {
        MutatePtes(start, end, visitNone: false, (_, pte) =>
        {
            ulong zapped = ZapPte(pte, keepGuards);
            return keepUffdWp && zapped == 0 && (pte & Pte.UffdWp) != 0 ? Pte.Swap | Pte.UffdWp : zapped;
        }, (_, pmd) =>
        {
            ulong first = Pte.Frame(pmd);
            if (first >= PhysicalMemory.FirstUserPfn)
            {
                for (ulong i = 0; i < PageTable.LeafEntries; i++) _mem.Unmap(first + i, (pmd & Pte.NotAnonymous) == 0);
                AddRss(-PageTable.LeafEntries);
            }
            return 0;
        });
    }

    private ulong ZapPte(ulong pte, bool keepGuards)
    {
        if (Pte.IsPresent(pte))
        {
            ulong frame = Pte.Frame(pte);
            if (frame >= PhysicalMemory.FirstUserPfn) { _mem.Unmap(frame, (pte & Pte.NotAnonymous) == 0); AddRss(-1); }
            return 0;
        }
        if ((pte & Pte.Guard) != 0)
        {
            if (keepGuards) return pte;
            _guardPages--;
            return 0;
        }
        if (!Pte.IsMarker(pte)) _mem.SwapRelease(Pte.SwapOffset(pte));
        return 0;
    }

    private void AddRss(long pages)
    {
        _rssPages += pages;
        if (_rssPages > _peakRssPages) _peakRssPages = _rssPages;
    }

    /// <summary>Splits a huge leaf into 512 PTEs; each inherits the PMD's soft-dirty (and a dirty PMD makes them soft-dirty, as on x86).</summary>
    private void SplitHugeLeaf(ulong leaf)
    {
        ulong slot = _pt.GetSlot(leaf);
        if (PageTable.KindOf(slot) != PageTable.SlotKind.Huge) return;
        ulong pmd = PageTable.HugeValue(slot);
        ulong first = Pte.Frame(pmd);
        Span<ulong> ptes = stackalloc ulong[PageTable.LeafEntries];
        if (first == PhysicalMemory.HugeZeroPfn)
        {
            ptes.Fill(Pte.Present | Pte.Accessed | (pmd & (Pte.SoftDirty | Pte.UffdWp)) | PhysicalMemory.ZeroPfn);
        }
        else
        {
            // pte_mkdirty of a dirty PMD's PTEs sets soft-dirty too; 6.1 leaves them clean (KernelProfile.SplitCarriesDirty).
            bool carry = Profile.SplitCarriesDirty;
            bool dirty = (pmd & Pte.SoftDirty) != 0 || (carry && (pmd & Pte.Dirty) != 0);
            ulong flags = (pmd & ~Pte.FrameMask & ~Pte.SoftDirty & (carry ? ~0UL : ~Pte.Dirty)) | (dirty ? _softDirtyBit : 0);
            for (int i = 0; i < ptes.Length; i++) ptes[i] = flags | (first + (ulong)i);
        }
        _pt.ClearLeaf(leaf);
        _pt.WriteLeaf(leaf, ptes);
    }
}
