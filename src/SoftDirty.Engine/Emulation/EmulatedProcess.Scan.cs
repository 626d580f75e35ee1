using System;
using System.Threading;

namespace SoftDirty.Emulation;

public sealed partial class EmulatedProcess
{
    int IPageSource.ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) => ScanPagemap(ref request, regions);

    private long _writeProtects;

    /// <summary>
    /// How many times pages of this process were write-protected for userfaultfd (PAGEMAP_SCAN WriteProtectMatching,
    /// UFFDIO_WRITEPROTECT, a registration); read under <see cref="MemoryLock"/>. Its uffd-wp bits are one set, whoever
    /// registered them: the write tracking an image chain keeps on the process (<see cref="Images.ImageTracking"/>)
    /// trusts its answer only where nothing else (a watch, a migration, Search-PageMap -WriteProtect,
    /// Register-EmulatedWriteProtect) re-protected pages since its own last look.
    /// </summary>
    internal long WriteProtects => Interlocked.Read(ref _writeProtects);

    /// <summary>
    /// The PAGEMAP_SCAN ioctl (fs/proc/task_mmu.c do_pagemap_scan). Argument checks as the kernel: unknown
    /// flags, category bits outside 0x1FF or an unaligned start are EINVAL, an end before the start or past
    /// the task size is EFAULT (both InvalidArgument, with the errno); end is rounded up to a page;
    /// MaxPages 0 means unlimited. Per page: the categories of its PTE (PRESENT, SWAPPED, WRITTEN unless
    /// uffd-wp, FILE, PFNZERO, HUGE for a THP, SOFT_DIRTY, GUARD) ORed with the VMA's (WPALLOWED when
    /// registered for async write-protect, SOFT_DIRTY for VM_SOFTDIRTY); matching pages are reported with
    /// categories &amp; ReturnMask, contiguous equal ones merged into one region. The walk stops when
    /// MaxPages pages are reported or <paramref name="regions"/> is full, and WalkEnd says where. With
    /// WriteProtectMatching the reported pages are write-protected (uffd-wp) and VMAs not registered are
    /// skipped; with CheckWriteProtectAsync such a VMA is EPERM when the walk reaches it (the VMAs before it are
    /// write-protected already, as the kernel's walk leaves them). Every page without uffd-wp (bit or marker) is
    /// WRITTEN, never-touched ones included (measured on 6.18).
    /// </summary>
    internal int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions)
    {
        if (!Profile.HasPagemapScan)
            throw new EngineException(EngineError.PagemapScanNotSupported,
                $"The emulated kernel {Profile.Release} has no PAGEMAP_SCAN ioctl (ENOTTY); it came in Linux 6.7.", ProcessId, Errno.ENOTTY);
        if ((request.Flags & ~PagemapScanRequest.ValidFlags) != 0) throw Invalid($"PAGEMAP_SCAN: unknown flags 0x{(ulong)request.Flags:x}");
        var allMasks = request.CategoryInverted | request.CategoryMask | request.CategoryAnyOf | request.ReturnMask;
        // PAGE_IS_GUARD (bit 8) came with guard regions (6.15): before, it is an unknown bit (EINVAL on Debian 6.12.117, kernel matrix, selftest-simple's "scan").
        var known = Profile.HasGuardRegions ? PagemapScanRequest.ValidCategories : PagemapScanRequest.CategoriesBeforeGuard;
        if ((allMasks & ~known) != 0) throw Invalid($"PAGEMAP_SCAN: unknown category bits 0x{(ulong)allMasks:x}");
        if ((request.Start & PageOffsetMask) != 0) throw Invalid($"PAGEMAP_SCAN: start 0x{request.Start:x} is not page-aligned");
        if (request.End < request.Start || request.End > TaskSize)
            throw new EngineException(EngineError.InvalidArgument,
                $"PAGEMAP_SCAN: 0x{request.Start:x}-0x{request.End:x} is not an accessible user range (EFAULT).", ProcessId, Errno.EFAULT);
        var scan = new ScanState(request, regions);
        bool wp = (request.Flags & PagemapScanFlags.WriteProtectMatching) != 0;
        bool check = (request.Flags & PagemapScanFlags.CheckWriteProtectAsync) != 0;
        lock (_mem.Lock)
        {
            if (wp) Interlocked.Increment(ref _writeProtects);
            ulong start = request.Start, end = scan.End;
            foreach (var vma in _vmas.Range(start, end))
            {
                if (scan.Stopped) break;
                // The walk meets the VMA only now: the VMAs before it are already scanned (and write-protected).
                if (check && !vma.UffdWriteProtect)
                    throw new EngineException(EngineError.PermissionDenied,
                        $"PAGEMAP_SCAN refused (EPERM): 0x{vma.Start:x}-0x{vma.End:x} is not registered for userfaultfd async write-protect, which CheckWriteProtectAsync requires.",
                        ProcessId, Errno.EPERM);
                if (wp && !vma.UffdWriteProtect) continue;
                var vmaCategories = (vma.UffdWriteProtect ? PageCategory.WriteProtectAllowed : 0) | (vma.SoftDirty ? PageCategory.SoftDirty : 0);
                // WrittenOnlyInWriteProtectVmas: no page of a VMA without uffd-wp is WRITTEN.
                var keep = Profile.WrittenOnlyInWriteProtectVmas && !vma.UffdWriteProtect ? ~PageCategory.Written : ~PageCategory.None;
                ScanVma(ref scan, Math.Max(start, vma.Start), Math.Min(end, vma.End), vmaCategories, wp, keep);
                // ScanVma may split a THP: indices are unchanged because VMAs are not touched.
            }
        }
        request.WalkEnd = scan.Stopped ? scan.WalkEnd : scan.End;
        return scan.Count;
    }

    private void ScanVma(ref ScanState scan, ulong start, ulong end, PageCategory vmaCategories, bool wp, PageCategory keep)
    {
        Span<ulong> ptes = stackalloc ulong[PageTable.LeafEntries];
        for (ulong page = start >> PageShift, endPage = end >> PageShift; page < endPage && !scan.Stopped;)
        {
            ulong leaf = page >> PageTable.LeafShift;
            ulong first = leaf << PageTable.LeafShift;
            int lo = (int)(page - first);
            int hi = (int)(Math.Min(endPage, first + PageTable.LeafEntries) - first);
            ulong slot = _pt.GetSlot(leaf);
            var kind = PageTable.KindOf(slot);
            if (kind == PageTable.SlotKind.None || kind == PageTable.SlotKind.Huge)
            {
                ulong pmd = PageTable.HugeValue(slot);
                // No entries: with an (empty) page table each none PTE is WRITTEN (not uffd-wp); without one the
                // kernel's pagemap_scan_pte_hole reports the VMA's categories only (unless the profile says otherwise).
                var c = (kind == PageTable.SlotKind.Huge ? HugeCategories(pmd) | vmaCategories
                    : _pt.HasTable(leaf) || Profile.ScanWrittenWithoutPageTable ? vmaCategories | PageCategory.Written : vmaCategories) & keep;
                ulong taken = 0;
                if (scan.Request.Matches(c))
                {
                    taken = scan.Output(c, (first + (ulong)lo) << PageShift, (ulong)(hi - lo));
                    if (wp && taken > 0)
                    {
                        if (kind == PageTable.SlotKind.Huge && lo == 0 && taken == PageTable.LeafEntries)
                            _pt.SetHuge(leaf, (pmd | Pte.UffdWp) & ~Pte.Writable);
                        else
                            MutatePtes((first + (ulong)lo) << PageShift, (first + (ulong)lo + taken) << PageShift, visitNone: true, (_, pte) => UffdProtectPte(pte));
                    }
                }
                page = first + (ulong)hi;
                continue;
            }
            _pt.ReadLeaf(slot, ptes);
            bool changed = false;
            for (int i = lo; i < hi && !scan.Stopped; i++)
            {
                var c = (PteCategories(ptes[i]) | vmaCategories) & keep;
                if (!scan.Request.Matches(c)) continue;
                if (scan.Output(c, (first + (ulong)i) << PageShift, 1) == 0) break;
                if (wp) { ptes[i] = UffdProtectPte(ptes[i]); changed = true; }
            }
            if (changed) _pt.WriteLeaf(leaf, ptes);
            page = first + (ulong)hi;
        }
    }

    private static PageCategory PteCategories(ulong pte)
    {
        if (pte == 0) return PageCategory.Written;   // a none PTE is not uffd-wp: WRITTEN (measured on 6.18)
        var c = (pte & Pte.UffdWp) == 0 ? PageCategory.Written : PageCategory.None;
        if ((pte & Pte.SoftDirty) != 0) c |= PageCategory.SoftDirty;
        if (Pte.IsPresent(pte))
        {
            c |= PageCategory.Present;
            if ((pte & Pte.NotAnonymous) != 0) c |= PageCategory.File;
            if (Pte.Frame(pte) == PhysicalMemory.ZeroPfn) c |= PageCategory.PfnZero;
            return c;
        }
        c |= PageCategory.Swapped;
        if ((pte & Pte.Guard) != 0) c |= PageCategory.Guard;
        return c;
    }

    private static PageCategory HugeCategories(ulong pmd)
    {
        var c = PageCategory.Present | PageCategory.Huge;
        if ((pmd & Pte.UffdWp) == 0) c |= PageCategory.Written;
        if ((pmd & Pte.NotAnonymous) != 0) c |= PageCategory.File;
        if (Pte.Frame(pmd) == PhysicalMemory.HugeZeroPfn) c |= PageCategory.PfnZero;
        if ((pmd & Pte.SoftDirty) != 0) c |= PageCategory.SoftDirty;
        return c;
    }

    /// <summary>The output side of a scan: regions, merging, the max_pages and vec_len cuts, walk_end.</summary>
    private ref struct ScanState
    {
        public readonly PagemapScanRequest Request;
        private readonly Span<PageRegion> _regions;
        private readonly ulong _maxPages;
        private ulong _found;
        public int Count;
        public bool Stopped;
        public ulong WalkEnd;
        public readonly ulong End;

        public ScanState(PagemapScanRequest request, Span<PageRegion> regions)
        {
            Request = request;
            _regions = regions;
            _maxPages = request.MaxPages == 0 ? ulong.MaxValue : request.MaxPages;
            End = PageAlign(request.End);
            if (End < request.End) End = TaskSize;
        }

        /// <summary>Reports <paramref name="pages"/> matching pages at <paramref name="address"/>; returns how many were taken.</summary>
        public ulong Output(PageCategory categories, ulong address, ulong pages)
        {
            if (_regions.IsEmpty) return pages;   // no vector: nothing reported, nothing cut (a write-protect-only walk)
            categories &= Request.ReturnMask;
            bool cut = false;
            if (pages > _maxPages - _found) { pages = _maxPages - _found; cut = true; }
            ulong end = address + (pages << PageShift);
            if (pages > 0 && !Push(categories, address, end)) { pages = 0; end = address; cut = true; }
            _found += pages;
            if (cut) { Stopped = true; WalkEnd = end; }
            return pages;
        }

        private bool Push(PageCategory categories, ulong start, ulong end)
        {
            if (Count > 0)
            {
                ref var last = ref _regions[Count - 1];
                if (last.End == start && last.Categories == categories) { last.End = end; return true; }
                if (Count == _regions.Length) return false;
            }
            _regions[Count++] = new PageRegion(start, end, categories);
            return true;
        }
    }
}
