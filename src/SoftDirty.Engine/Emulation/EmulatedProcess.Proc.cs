using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace SoftDirty.Emulation;

public sealed partial class EmulatedProcess
{
    /// <summary>The clear_refs write buffer (PROC_NUMBUF - 1): longer writes are cut to this many bytes.</summary>
    private const int ClearRefsMaxBytes = 12;
    private const ulong ExclusiveBit = (ulong)PagemapFlags.Exclusive;

    /// <summary>What the emulated kernel supports, as Get-SoftDirtySupport reports it (Emulated set, the profile's rules included).</summary>
    public KernelFeatures Features => new()
    {
        KernelRelease = Profile.Release,
        SoftDirty = Profile.SoftDirtyEnabled,
        SoftDirtyReason = Profile.SoftDirtyEnabled ? null
            : $"The emulated kernel {Profile.Release} is built without CONFIG_MEM_SOFT_DIRTY: clear_refs \"4\" succeeds but bit 55 is never set.",
        PagemapScan = Profile.HasPagemapScan,
        PagemapScanReason = Profile.HasPagemapScan ? null : $"The emulated kernel {Profile.Release} has no PAGEMAP_SCAN ioctl (it came in 6.7).",
        PagemapScanCategories = Profile.HasGuardRegions ? PagemapScanRequest.ValidCategories : PagemapScanRequest.CategoriesBeforeGuard,
        UffdWriteProtectAsync = Profile.HasUffdWriteProtectAsync,
        UffdWriteProtectAsyncReason = Profile.HasUffdWriteProtectAsync ? null : $"The emulated kernel {Profile.Release} has no UFFD_FEATURE_WP_ASYNC (it came in 6.7).",
        PfnVisible = Privileged,
        PfnVisibleReason = Privileged ? null : "The emulated process was created unprivileged: PFNs and swap entries read as zero, as without CAP_SYS_ADMIN.",
        Emulated = true,
        Rules = Profile.Rules,
    };

    // ---- pagemap --------------------------------------------------------------------------------------------

    /// <summary>
    /// Reads pagemap entries as the kernel does (section 1 of the reference): 0 outside VMAs; in a VMA, the
    /// PTE's PRESENT/SWAP, soft-dirty, uffd-wp, guard, FILE, EXCLUSIVE (mapped once) and frame (PFN or swap
    /// type | offset &lt;&lt; 5, zeroed unless <see cref="Privileged"/>), a THP giving 512 entries with
    /// consecutive PFNs, and VM_SOFTDIRTY ORed into every entry, holes included. Stops at the task size.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination)
    {
        const ulong taskPages = TaskSize >> PageShift;
        if (firstPage >= taskPages || destination.IsEmpty) return 0;
        int count = (int)Math.Min((ulong)destination.Length, taskPages - firstPage);
        var output = MemoryMarshal.Cast<PagemapEntry, ulong>(destination[..count]);
        ulong endPage = firstPage + (ulong)count;
        lock (_mem.Lock)
        {
            ulong keep = Pte.PagemapFlagBits | (Privileged ? Pte.FrameMask : 0);
            ulong page = firstPage;
            for (int i = _vmas.FindVmaIndex(firstPage << PageShift); page < endPage; i++)
            {
                ulong vmaStart = i < _vmas.Count ? Math.Min(_vmas[i].Start >> PageShift, endPage) : endPage;
                if (vmaStart > page)
                {
                    output.Slice((int)(page - firstPage), (int)(vmaStart - page)).Clear();
                    page = vmaStart;
                    if (page >= endPage) break;
                }
                var vma = _vmas[i];
                ulong vmaEnd = Math.Min(vma.End >> PageShift, endPage);
                FillVma(vma, page, vmaEnd, output.Slice((int)(page - firstPage), (int)(vmaEnd - page)), keep);
                page = vmaEnd;
            }
        }
        return count;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void FillVma(Vma vma, ulong startPage, ulong endPage, Span<ulong> output, ulong keep)
    {
        ulong softDirty = vma.SoftDirty ? Pte.SoftDirty : 0;
        Span<ulong> tagged = stackalloc ulong[PageTable.MaxSparseEntries];
        for (ulong page = startPage; page < endPage;)
        {
            ulong leaf = page >> PageTable.LeafShift;
            ulong first = leaf << PageTable.LeafShift;
            int lo = (int)(page - first);
            int hi = (int)(Math.Min(endPage, first + PageTable.LeafEntries) - first);
            var dst = output.Slice((int)(page - startPage), hi - lo);
            ulong slot = _pt.GetSlot(leaf);
            switch (PageTable.KindOf(slot))
            {
                case PageTable.SlotKind.None:
                    dst.Fill(softDirty);
                    break;
                case PageTable.SlotKind.Dense:
                    ConvertDense(_pt.DenseArray(slot).AsSpan(lo, hi - lo), dst, keep, softDirty);
                    break;
                case PageTable.SlotKind.Huge:
                {
                    ulong pmd = PageTable.HugeValue(slot);
                    ulong frame = Pte.Frame(pmd);
                    // The huge zero page is no anonymous folio: pagemap's PMD path reports FILE for it (measured on
                    // 6.18; not on 7.2: KernelProfile.PagemapHugeZeroIsFile; the PTE-mapped zero page has no struct page
                    // to ask, so it never is FILE). PAGEMAP_SCAN asks vm_normal_page_pmd, which has none for it: no FILE
                    // there (HugeCategories).
                    bool file = frame == PhysicalMemory.HugeZeroPfn && Profile.PagemapHugeZeroIsFile;
                    ulong flags = (pmd & ~Pte.FrameMask) | (file ? Pte.NotAnonymous : 0);
                    if (Profile.PmdExclusivePerPage)
                    {
                        for (int i = lo; i < hi; i++)
                            dst[i - lo] = ToEntry(flags | (frame + (ulong)i), keep, softDirty);
                        break;
                    }
                    // One answer for the whole PMD: the head page's mapcount (KernelProfile.PmdExclusivePerPage).
                    bool exclusive = Pte.IsPresent(pmd) && frame >= PhysicalMemory.FirstUserPfn && _mem.MapCount(frame) == 1;
                    for (int i = lo; i < hi; i++)
                        dst[i - lo] = ((flags | (frame + (ulong)i)) & keep) | softDirty | (exclusive ? ExclusiveBit : 0);
                    break;
                }
                default:
                {
                    dst.Fill(softDirty);
                    int n = _pt.SparseEntries(slot, tagged);
                    for (int k = 0; k < n; k++)
                    {
                        int ix = (int)((tagged[k] & Pte.IndexMask) >> Pte.IndexShift);
                        if (ix >= lo && ix < hi) dst[ix - lo] = ToEntry(tagged[k] & ~Pte.IndexMask, keep, softDirty);
                    }
                    break;
                }
            }
            page = first + (ulong)hi;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong ToEntry(ulong pte, ulong keep, ulong softDirty)
    {
        ulong e = (pte & keep) | softDirty;
        if (Pte.IsPresent(pte) && _mem.MapCount(Pte.Frame(pte)) == 1) e |= ExclusiveBit;
        return e;
    }

    /// <summary>
    /// A dense leaf to pagemap entries. While no frame of the machine is mapped twice, "exclusive" is just
    /// "present and not a zero page", so the whole conversion is a few vector ANDs and ORs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ConvertDense(ReadOnlySpan<ulong> ptes, Span<ulong> output, ulong keep, ulong softDirty)
    {
        int i = 0;
        if (_mem.SharedFrames == 0)
        {
            ref ulong src = ref MemoryMarshal.GetReference(ptes);
            ref ulong dst = ref MemoryMarshal.GetReference(output);
            if (Vector256.IsHardwareAccelerated)
            {
                var keepV = Vector256.Create(keep);
                var sdV = Vector256.Create(softDirty);
                var presentV = Vector256.Create(Pte.Present);
                var frameV = Vector256.Create(Pte.FrameMask);
                var exclusiveV = Vector256.Create(ExclusiveBit);
                for (; i <= ptes.Length - Vector256<ulong>.Count; i += Vector256<ulong>.Count)
                {
                    var v = Vector256.LoadUnsafe(ref src, (nuint)i);
                    var present = Vector256.Equals(v & presentV, presentV);
                    var kernelFrame = Vector256.Equals(Vector256.ShiftRightLogical(v & frameV, PhysicalMemory.FirstUserPfnShift), Vector256<ulong>.Zero);
                    ((v & keepV) | sdV | Vector256.AndNot(exclusiveV & present, kernelFrame)).StoreUnsafe(ref dst, (nuint)i);
                }
            }
            for (; i < ptes.Length; i++)
            {
                ulong v = Unsafe.Add(ref src, i);
                ulong exclusive = Pte.IsPresent(v) && Pte.Frame(v) >= PhysicalMemory.FirstUserPfn ? ExclusiveBit : 0;
                Unsafe.Add(ref dst, i) = (v & keep) | softDirty | exclusive;
            }
            return;
        }
        for (; i < ptes.Length; i++) output[i] = ToEntry(ptes[i], keep, softDirty);
    }

    // ---- clear_refs -----------------------------------------------------------------------------------------

    /// <summary>
    /// clear_refs, parsed as fs/proc/task_mmu.c does: at most 12 bytes, up to the first NUL, whitespace
    /// stripped, kstrtoint base 10 (sign allowed; EINVAL when not a number, ERANGE on overflow), then
    /// 1..5 (else EINVAL). 1-3 clear accessed bits (all / anonymous / file VMAs); 4 clears soft-dirty: every
    /// VMA loses VM_SOFTDIRTY and every PTE and PMD loses soft-dirty and write permission in one vectorised
    /// pass (a silent no-op without CONFIG_MEM_SOFT_DIRTY); 5 resets peak RSS. Returns the bytes accepted.
    /// </summary>
    public int WriteClearRefs(ReadOnlySpan<byte> text)
    {
        int accepted = Math.Min(text.Length, ClearRefsMaxBytes);
        var type = (ClearRefsType)ParseClearRefs(text[..accepted]);
        lock (_mem.Lock)
        {
            switch (type)
            {
                case ClearRefsType.All:
                    _pt.AndNotAll(Pte.Accessed);
                    break;
                case ClearRefsType.Anonymous:
                case ClearRefsType.Mapped:
                    foreach (var vma in _vmas)
                        if (vma.IsAnonymous == (type == ClearRefsType.Anonymous))
                            MutatePtes(vma.Start, vma.End, visitNone: false, (_, pte) => pte & ~Pte.Accessed, (_, pmd) => pmd & ~Pte.Accessed);
                    break;
                case ClearRefsType.SoftDirty:
                    if (!Profile.SoftDirtyEnabled) break;
                    foreach (var vma in _vmas) vma.Flags &= ~VmaFlags.SoftDirty;
                    _pt.AndNotAll(Pte.ClearSoftDirtyMask);
                    break;
                case ClearRefsType.PeakRss:
                    _peakRssPages = _rssPages;
                    break;
            }
        }
        return accepted;
    }

    private int ParseClearRefs(ReadOnlySpan<byte> text)
    {
        int nul = text.IndexOf((byte)0);
        if (nul >= 0) text = text[..nul];
        while (text.Length > 0 && IsSpace(text[0])) text = text[1..];
        while (text.Length > 0 && IsSpace(text[^1])) text = text[..^1];
        string shown = System.Text.Encoding.ASCII.GetString(text);
        bool negative = false;
        if (text.Length > 0 && (text[0] == '+' || text[0] == '-')) { negative = text[0] == '-'; text = text[1..]; }
        if (text.IsEmpty) throw ClearRefsError(shown, Errno.EINVAL, "not a decimal number");
        long value = 0;
        foreach (byte b in text)
        {
            if (b < '0' || b > '9') throw ClearRefsError(shown, Errno.EINVAL, "not a decimal number");
            value = value * 10 + (b - '0');
            if (value > (long)int.MaxValue + 1) throw ClearRefsError(shown, Errno.ERANGE, "out of range for an int");
        }
        if (negative) value = -value;
        if (value > int.MaxValue) throw ClearRefsError(shown, Errno.ERANGE, "out of range for an int");
        if (value < (int)ClearRefsType.All || value > (int)ClearRefsType.PeakRss)
            throw ClearRefsError(shown, Errno.EINVAL, "valid types are 1 to 5");
        return (int)value;
    }

    private static bool IsSpace(byte b) => b == ' ' || (b >= '\t' && b <= '\r');

    private EngineException ClearRefsError(string text, int errno, string why) =>
        new(EngineError.InvalidArgument,
            $"clear_refs of emulated process {ProcessId} rejected '{text}' ({Errno.Name(errno)}): {why}.", ProcessId, errno);

    // ---- maps / smaps -----------------------------------------------------------------------------------------

    /// <summary>The VMAs as maps (or, with counters, smaps: Rss, Pss, Shared/Private Clean/Dirty, Referenced, Anonymous, AnonHugePages, Swap, VmFlags) shows them.</summary>
    public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters)
    {
        lock (_mem.Lock)
        {
            var list = new List<MemoryMapping>(_vmas.Count);
            foreach (var vma in _vmas) list.Add(ToMapping(vma, withCounters));
            return list;
        }
    }

    /// <inheritdoc/>
    public bool MappingUnchanged(MemoryMapping mapping, ulong start, ulong end)
    {
        lock (_mem.Lock)
        {
            for (ulong at = start; at < end;)
            {
                if (_vmas.VmaLookup(at) is not { } vma || !ToMapping(vma, withCounters: false).SameMemory(mapping)) return false;
                at = vma.End;
            }
            return true;
        }
    }

    private MemoryMapping ToMapping(Vma vma, bool withCounters)
    {
        string path = vma.Backing?.Name ?? string.Empty;
        var m = new MemoryMapping
        {
            ProcessId = ProcessId,
            Start = vma.Start,
            End = vma.End,
            Protection = vma.Protection,
            Shared = vma.Shared,
            Offset = vma.Backing == null ? 0 : vma.PageOffset << PageShift,
            Device = vma.Backing == null ? "00:00" : vma.Backing.IsFile ? EmulatedFileDevice : SharedMemoryDevice,
            Inode = vma.Backing?.Inode ?? 0,
            Path = path,
            Deleted = vma.Backing is { IsFile: false },
            Kind = MemoryMapping.Classify(path, vma.Backing?.Inode ?? 0, vma.Shared),
        };
        if (withCounters) FillCounters(vma, m);
        return m;
    }

    /// <summary>The device column of emulated files and of shared memory (the shmem mount).</summary>
    public const string EmulatedFileDevice = "fd:00", SharedMemoryDevice = "00:01";

    private void FillCounters(Vma vma, MemoryMapping m)
    {
        ulong rss = 0, pss = 0, sharedClean = 0, sharedDirty = 0, privateClean = 0, privateDirty = 0, referenced = 0, anonymous = 0, anonHuge = 0, swap = 0;
        void Count(ulong pte, ulong frame, ulong bytes)
        {
            if (Pte.IsPresent(pte))
            {
                if (frame < PhysicalMemory.FirstUserPfn) return;
                int mapCount = _mem.MapCount(frame);
                bool dirty = (pte & Pte.Dirty) != 0;
                rss += bytes;
                pss += bytes / (ulong)Math.Max(1, mapCount);
                if (mapCount > 1) { if (dirty) sharedDirty += bytes; else sharedClean += bytes; }
                else if (dirty) privateDirty += bytes; else privateClean += bytes;
                if ((pte & Pte.Accessed) != 0) referenced += bytes;
                if ((pte & Pte.NotAnonymous) == 0) anonymous += bytes;
            }
            else if (!Pte.IsMarker(pte)) swap += bytes;
        }
        MutatePtes(vma.Start, vma.End, visitNone: false, (_, pte) => { Count(pte, Pte.Frame(pte), PageBytes); return pte; }, (_, pmd) =>
        {
            Count(pmd, Pte.Frame(pmd), HugePageBytes);
            if (Pte.Frame(pmd) >= PhysicalMemory.FirstUserPfn && (pmd & Pte.NotAnonymous) == 0) anonHuge += HugePageBytes;
            return pmd;
        });
        m.Rss = rss; m.Pss = pss; m.SharedClean = sharedClean; m.SharedDirty = sharedDirty;
        m.PrivateClean = privateClean; m.PrivateDirty = privateDirty; m.Referenced = referenced;
        m.Anonymous = anonymous; m.AnonHugePages = anonHuge; m.Swap = swap; m.Locked = 0;
        m.VmFlags = VmFlagMnemonics(vma);
        m.SoftDirty = vma.SoftDirty;
    }

    /// <summary>The smaps VmFlags mnemonics, in the kernel's bit order.</summary>
    private static string[] VmFlagMnemonics(Vma vma)
    {
        var f = new List<string>(12);
        if ((vma.Protection & Protection.Read) != 0) f.Add("rd");
        if ((vma.Protection & Protection.Write) != 0) f.Add("wr");
        if ((vma.Protection & Protection.Execute) != 0) f.Add("ex");
        if (vma.Shared) f.Add("sh");
        f.Add("mr"); f.Add("mw"); f.Add("me");
        if (vma.Shared) f.Add("ms");
        if ((vma.Flags & VmaFlags.Account) != 0) f.Add("ac");
        if (vma.SoftDirty) f.Add("sd");
        if (vma.HugePage) f.Add("hg");
        if (vma.NoHugePage) f.Add("nh");
        if (vma.UffdWriteProtect) f.Add("uw");
        return f.ToArray();
    }
}
