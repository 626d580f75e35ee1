using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>Finding the pages that hold data, and reading their bytes in large chunks.</summary>
internal static class PageWalk
{
    /// <summary>Bytes per /proc/PID/mem read: 256 KiB (hashed while still in the L2 cache).</summary>
    public const int ChunkBytes = 256 * 1024;

    /// <summary>
    /// The spans worth reading: every mapping of the selection but the kernel's own, [vvar] and [vsyscall] (no pages to
    /// read) and [uprobes] (<see cref="UprobesName"/>).
    /// </summary>
    public static List<PageSpan> DataSpans(IReadOnlyList<MemoryMapping> mappings, Func<MemoryMapping, bool>? selector = null) =>
        PageMapReader.SpansOf(mappings, m => m.Kind != MappingKind.Vvar && m.Kind != MappingKind.Vsyscall && !IsUprobes(m) && (selector is null || selector(m)));

    /// <summary>
    /// What maps names the page the kernel maps into a process that hits a uprobe (kernel/events/uprobes.c, its
    /// execute-out-of-line slots): VM_IO, so /proc/PID/mem cannot read it though pagemap shows it present, and the kernel
    /// writes it through its own mapping. It holds copies of probed instructions, not the process's data, and a fork never
    /// inherits it (VM_DONTCOPY): read, it made every image of a traced process incomplete (round 22).
    /// </summary>
    public const string UprobesName = "[uprobes]";

    /// <summary>Whether <paramref name="m"/> is the kernel's uprobes page (<see cref="UprobesName"/>: a bracketed name without a file).</summary>
    internal static bool IsUprobes(MemoryMapping m) => m.Kind == MappingKind.Other && m.Path == UprobesName;

    /// <summary>
    /// A category of the pagemap walk's own (<see cref="PresentRegions"/> without PAGEMAP_SCAN), never passed to the
    /// kernel: a present private anonymous page that is not exclusive to the process. That is the zero page (or the
    /// huge zero page), which the walk cannot tell by its PFN without CAP_SYS_ADMIN, or a page shared copy-on-write with
    /// a fork. A page dropped (MADV_DONTNEED) and read again maps the zero page with neither soft-dirty nor the write
    /// tracking's written bit set: its content changed, to zeros, without a write, so an increment compares it.
    /// </summary>
    public const PageCategory NotExclusive = (PageCategory)(1UL << 63);

    /// <summary>
    /// The present or swapped pages of <paramref name="spans"/> as regions whose categories are a subset of
    /// Present | Swapped | PfnZero | File (a page of a file or of shared memory: pagemap's file-or-shared-anon bit)
    /// and, from the pagemap walk, <see cref="NotExclusive"/>:
    /// PAGEMAP_SCAN where the kernel has it, else pagemap read in chunks.
    /// With <paramref name="sharedAnonymous"/> (a real process only), the pagemap is read in chunks and the
    /// present anonymous pages that are not exclusive to the process (copy-on-write shared with a fork parent
    /// or child, or the zero page) are added to it as ranges, for <see cref="ReadChunks"/>; so are the swapped pages
    /// with the userfaultfd write-protect bit (<see cref="NoWaitRead"/>).
    /// <paramref name="withFlags"/>: the process's mappings as the caller read them with their VmFlags (smaps) just before,
    /// for the userfaultfd registrations (<see cref="UserfaultfdWaitRanges"/>); null: smaps is read here, where needed.
    /// <paramref name="toRead"/>: the regions' pages may be read, by the caller or by what it hands them to (a tracker's dirty
    /// pages, which a migration round reads as they are), so the pages that may be uffd-wp markers are counted against the
    /// process's <see cref="MarkerReadBudget"/> where such a read allocates (<see cref="MarkerReadBudget.Applies"/>); false only
    /// where no page found is read (mappings told apart by holding pages).
    /// </summary>
    public static IEnumerable<PageRegion> PresentRegions(IPageSource source, IReadOnlyList<PageSpan> spans, List<AddressRange>? sharedAnonymous = null,
        IReadOnlyList<MemoryMapping>? withFlags = null, bool toRead = true, CancellationToken cancel = default)
    {
        if (Root(source) is not ProcPageSource proc) return AllPresentRegions(source, spans, null, null, cancel);
        // The ranges the process serves with a userfaultfd of its own (smaps read once, for the walk and for the markers;
        // or the caller's read: a write-protect save's look has just read it, and a read walks every page table).
        var waiting = new Lazy<List<AddressRange>>(() => UserfaultfdWaitRanges(withFlags ?? proc.ReadMappings(true)), LazyThreadSafetyMode.None);
        var regions = AllPresentRegions(source, spans, sharedAnonymous, waiting, cancel);
        return WithinFiles(WithoutMarkers(source, regions, waiting, toRead && MarkerReadBudget.Applies(source.Features) ? new MarkerCost(source, spans, proc.ProcessId) : null), spans, new MappedFileEnd(proc.ProcessId), (ulong)source.PageSize);
    }

    /// <summary>
    /// The swap type pagemap shows for a pte marker (SWP_PTE_MARKER: the last of the 2^<see cref="PagemapEntry.SwapTypeBits"/>
    /// types, include/linux/swap.h), visible with the frame (CAP_SYS_ADMIN); a real swap entry or a migration entry has another.
    /// </summary>
    private const int PteMarkerSwapType = (1 << PagemapEntry.SwapTypeBits) - 1;

    /// <summary>
    /// Whether <paramref name="e"/> is, for certain, a uffd-wp marker: a page write tracking saw dropped (pagemap: swapped,
    /// uffd-wp, of the marker's swap type). It holds no data; false where the frame is hidden (a real swapped page looks the same).
    /// </summary>
    private static bool IsWriteProtectMarker(PagemapEntry e) => e.Swapped && e.UffdWriteProtected && e.SwapType == PteMarkerSwapType;

    /// <summary>
    /// The regions without the uffd-wp markers, where the caller can tell them (<see cref="IsWriteProtectMarker"/>). None holds
    /// data. In a mapping of a file or of shared memory (<see cref="ContentCheckedTracker.ChangeableByOthers"/>) the kernel leaves
    /// one where it drops a page under write tracking (reclaim, MADV_DONTNEED, a hole punched), and the page is then what a page
    /// of a file mapping not present is: the file's, in no image. A read of one faults the page in from its file system, which
    /// may never answer (a FUSE server holding the read: Ctrl+C does not end that wait; round 20). In a private anonymous
    /// mapping a reset puts one on every page never populated in a page table it has (WP_UNPOPULATED), and none stays where
    /// reclaim or MADV_DONTNEED drops a page: it reads as zeros, as a page not present does. A read of one is a read fault in
    /// the process, which maps a page for it (on a kernel that maps no shared zero page, a new page charged to the process's
    /// memory cgroup: at its limit the kernel killed the process for a save, round 28). Where the frame is hidden they are
    /// read as before, and so are those of a range the process serves with a userfaultfd of its own in MISSING or MINOR
    /// mode (<paramref name="waiting"/>, <see cref="UserfaultfdWaitRanges"/>): there the page is its monitor's, and the read,
    /// which fails at once, counts it unreadable (round 6).
    /// Those read are bounded (<see cref="MarkerCost"/>): each is counted against the process's <see cref="MarkerReadBudget"/> before it is read.
    /// </summary>
    private static IEnumerable<PageRegion> WithoutMarkers(IPageSource source, IEnumerable<PageRegion> regions, Lazy<List<AddressRange>> waiting, MarkerCost? cost)
    {
        PagemapEntry[]? entries = null;
        int at = 0;
        Func<PagemapEntry, bool> drop = e =>
        {
            if (IsWriteProtectMarker(e)) return true;
            if (cost is not null && MaybeMarker(e)) cost.Take(waiting.Value);
            return false;
        };
        foreach (var r in regions)
        {
            if ((r.Categories & PageCategory.Swapped) == 0 || (r.Categories & PageCategory.Present) != 0) { yield return r; continue; }
            var served = waiting.Value;
            while (at < served.Count && served[at].End <= r.Start) at++;
            // Regions lie within one mapping each, and each served range is a whole mapping.
            if (at < served.Count && served[at].Start < r.End) { yield return r; continue; }
            foreach (var part in Without(source, r, entries ??= new PagemapEntry[PageMapReader.DefaultChunkEntries], drop)) yield return part;
        }
    }

    /// <summary>
    /// Whether <paramref name="e"/> may be a uffd-wp marker that cannot be told from a swapped page: swapped, uffd-wp, its
    /// frame hidden (no CAP_SYS_ADMIN). Its read is a read fault in the process, which allocates a page where it is a marker.
    /// </summary>
    private static bool MaybeMarker(PagemapEntry e) => e.Swapped && e.UffdWriteProtected && e.SwapType is null;

    /// <summary>
    /// The memory <see cref="WithoutMarkers"/> makes a process allocate by reading the pages that may be markers
    /// (<see cref="MaybeMarker"/>), each counted against a <see cref="MarkerReadBudget"/> before it is read. At the first such
    /// page, all of them in the spans (outside the ranges the process serves) are counted at once (PAGEMAP_SCAN: swapped and
    /// not written, the uffd-wp bit), so that too many refuse the read before any of them is read.
    /// </summary>
    private sealed class MarkerCost(IPageSource source, IReadOnlyList<PageSpan> spans, int pid)
    {
        private MarkerReadBudget? _budget;

        /// <summary>Counts one page; the first time, checks all of them ahead.</summary>
        public void Take(List<AddressRange> served)
        {
            if (_budget is null)
            {
                _budget = MarkerReadBudget.For(pid);
                _budget.EnsureRoom(Ahead(served));
            }
            _budget.Take((ulong)source.PageSize);
        }

        /// <summary>The bytes of the swapped, write-protected pages of the spans outside <paramref name="served"/>; 0 without PAGEMAP_SCAN.</summary>
        private ulong Ahead(List<AddressRange> served)
        {
            if (!source.Features.PagemapScan) return 0;
            var template = new PagemapScanRequest
            {
                CategoryMask = PageCategory.Swapped | PageCategory.Written,
                CategoryInverted = PageCategory.Written,
                ReturnMask = PageCategory.Swapped,
            };
            ulong bytes = 0;
            int at = 0;
            foreach (var r in new PageMapReader(source).ScanRegions(spans, template))
            {
                ulong size = r.End - r.Start;
                while (at < served.Count && served[at].End <= r.Start) at++;
                for (int i = at; i < served.Count && served[i].Start < r.End; i++)
                    size -= Math.Min(r.End, served[i].End) - Math.Max(r.Start, served[i].Start);
                bytes += size;
            }
            return bytes;
        }
    }

    /// <summary>
    /// The regions without the swapped pages past the end of the file their mapping maps (the uffd-wp markers a
    /// truncation leaves: <see cref="MappedFileEnd"/>). Regions and spans are both ascending.
    /// </summary>
    private static IEnumerable<PageRegion> WithinFiles(IEnumerable<PageRegion> regions, IReadOnlyList<PageSpan> spans, MappedFileEnd ends, ulong pageSize)
    {
        int at = 0;
        ulong? end = null;
        int endOf = -1;
        foreach (var r in regions)
        {
            if ((r.Categories & PageCategory.Swapped) == 0 || (r.Categories & PageCategory.Present) != 0) { yield return r; continue; }
            while (at < spans.Count && spans[at].End <= r.Start) at++;
            if (at == spans.Count || spans[at].Start > r.Start || r.End > spans[at].End || spans[at].Mapping is not { } mapping) { yield return r; continue; }
            if (endOf != at) { end = ends.EndAddress(mapping, pageSize); endOf = at; }
            if (end is not { } eof || r.End <= eof) { yield return r; continue; }
            if (r.Start < eof) yield return new PageRegion(r.Start, eof, r.Categories);
        }
    }

    private static IEnumerable<PageRegion> AllPresentRegions(IPageSource source, IReadOnlyList<PageSpan> spans, List<AddressRange>? sharedAnonymous, Lazy<List<AddressRange>>? waiting,
        CancellationToken cancel)
    {
        if (sharedAnonymous is not null && Root(source) is not ProcPageSource) sharedAnonymous = null;
        if (source.Features.PagemapScan && sharedAnonymous is null)
        {
            var template = new PagemapScanRequest
            {
                CategoryAnyOf = PageCategory.Present | PageCategory.Swapped,
                ReturnMask = PageCategory.Present | PageCategory.Swapped | PageCategory.PfnZero | PageCategory.File,
            };
            PagemapEntry[]? entries = null;
            foreach (var r in new PageMapReader(source).ScanRegions(spans, template, cancel))
            {
                if ((r.Categories & PageCategory.Swapped) == 0) { yield return r; continue; }
                foreach (var part in WithoutGuards(source, r, entries ??= new PagemapEntry[PageMapReader.DefaultChunkEntries])) yield return part;
            }
            yield break;
        }
        var buffer = new PagemapEntry[PageMapReader.DefaultChunkEntries];
        ulong pageSize = (ulong)source.PageSize;
        var walk = new ChunkWalk
        {
            PageSize = pageSize,
            SharedAnonymous = sharedAnonymous,
            Waiting = sharedAnonymous is null ? null : waiting?.Value,
        };
        var regions = new List<PageRegion>();
        foreach (var span in spans)
        {
            ulong page = span.Start / pageSize, last = span.End / pageSize;
            walk.RunCategory = PageCategory.None;
            while (page < last)
            {
                cancel.ThrowIfCancellationRequested();
                int want = (int)Math.Min((ulong)buffer.Length, last - page);
                int got = source.ReadPagemap(page, buffer.AsSpan(0, want));
                walk.Classify(buffer.AsSpan(0, got), page * pageSize, regions);
                foreach (var r in regions) yield return r;
                regions.Clear();
                if (got < want) break;
                page += (ulong)got;
            }
            if (walk.RunCategory != PageCategory.None) yield return new PageRegion(walk.RunStart, walk.RunEnd, walk.RunCategory);
        }
    }

    /// <summary>
    /// The state of <see cref="PresentRegions"/>' walk over pagemap chunks: the run of pages being gathered, the ranges
    /// to read through /proc/PID/mem, and a cursor in the userfaultfd-registered ranges. Its loop is a method of
    /// its own, compiled optimised at once (an iterator's body never is): it runs over every page of a save.
    /// </summary>
    private sealed class ChunkWalk
    {
        public ulong PageSize;
        public List<AddressRange>? SharedAnonymous;
        public List<AddressRange>? Waiting;
        private int _waitingAt;
        public ulong RunStart, RunEnd;
        public PageCategory RunCategory;

        /// <summary>Adds to <paramref name="regions"/> the runs of <paramref name="entries"/> (starting at <paramref name="address"/>) that end in this chunk.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Classify(ReadOnlySpan<PagemapEntry> entries, ulong address, List<PageRegion> regions)
        {
            ulong pageSize = PageSize;
            for (int i = 0; i < entries.Length; i++, address += pageSize)
            {
                var e = entries[i];
                PageCategory c = e.Present ? PageCategory.Present : e.Swapped && !e.Guard ? PageCategory.Swapped : PageCategory.None;
                if (c != PageCategory.None && e.FileOrSharedAnon) c |= PageCategory.File;
                else if (e.Present && !e.Exclusive) c |= NotExclusive;
                bool waits = false;
                if (Waiting is { } waiting)
                {
                    while (_waitingAt < waiting.Count && waiting[_waitingAt].End <= address) _waitingAt++;
                    waits = _waitingAt < waiting.Count && waiting[_waitingAt].Start <= address;
                }
                if (SharedAnonymous is { } shared && (e.Present && !e.FileOrSharedAnon && !e.Exclusive || NoWaitRead(e) || waits && c != PageCategory.None))
                {
                    int n = shared.Count;
                    if (n > 0 && shared[n - 1].End == address) shared[n - 1] = new AddressRange(shared[n - 1].Start, address + pageSize);
                    else shared.Add(new AddressRange(address, address + pageSize));
                }
                if (c != PageCategory.None && c == RunCategory && address == RunEnd) { RunEnd += pageSize; continue; }
                if (RunCategory != PageCategory.None) regions.Add(new PageRegion(RunStart, RunEnd, RunCategory));
                RunCategory = c; RunStart = address; RunEnd = address + pageSize;
            }
        }
    }

    /// <summary>
    /// Whether the page must be read through /proc/PID/mem, which never waits for a userfaultfd monitor: a swapped
    /// entry with the userfaultfd write-protect bit, which is (without swap always) the marker of a write-protected
    /// page that was never populated (UFFD_FEATURE_WP_UNPOPULATED). A read of one faults as a missing page; in a
    /// range the process registered in MISSING mode, process_vm_readv's fault then waits (killable only: Ctrl+C
    /// does not end it) until the process's monitor serves the page, which may be never; /proc/PID/mem's read fails
    /// at once instead (the page counts as unreadable: its data is the monitor's, not in the process).
    /// </summary>
    private static bool NoWaitRead(PagemapEntry e) => e.Swapped && e.UffdWriteProtected;

    /// <summary>smaps VmFlags of a mapping registered with a userfaultfd in MISSING or MINOR mode.</summary>
    private const string UffdMissingFlag = "um", UffdMinorFlag = "ui";

    /// <summary>
    /// The mappings of a real process registered with a userfaultfd in MISSING or MINOR mode (smaps VmFlags um,
    /// ui), ascending. There a page the process drops between the pagemap walk and the read faults, and
    /// process_vm_readv's fault would wait for the monitor (which may be another process, or none that answers):
    /// their present pages are read through /proc/PID/mem, which fails at once instead. smaps costs a walk of every
    /// page table (10-15 ms a populated GiB, against 120-150 ms to read that GiB; a write-protect save hands over its
    /// look's read, <see cref="DirtyPageSet.MappingsWithFlags"/>, so smaps is read once a save), and it
    /// is read whether or not the process holds a userfaultfd: one the process no longer names (sent over a socket of
    /// its own and never received, handed to a child or to a monitor and closed) keeps its registrations, and a
    /// page dropped there between the walk and the read held process_vm_readv, and the command, until the process
    /// exited; Ctrl+C did not end it (round 31).
    /// </summary>
    private static List<AddressRange> UserfaultfdWaitRanges(IReadOnlyList<MemoryMapping> withFlags)
    {
        var ranges = new List<AddressRange>();
        foreach (var m in withFlags)
            if (m.VmFlags.Contains(UffdMissingFlag) || m.VmFlags.Contains(UffdMinorFlag)) ranges.Add(new AddressRange(m.Start, m.End));
        return ranges;
    }

    /// <summary>
    /// A swapped region without its guard markers (MADV_GUARD_INSTALL, Linux 6.15+, which pagemap shows as SWAP | GUARD,
    /// bit 58): they hold no data and every access faults, so they are no pages to save (read, they would count as
    /// unreadable and make every image of the process incomplete).
    /// </summary>
    private static IEnumerable<PageRegion> WithoutGuards(IPageSource source, PageRegion region, PagemapEntry[] buffer) => Without(source, region, buffer, e => e.Guard);

    /// <summary>The runs of <paramref name="region"/> whose pagemap entries <paramref name="drop"/> does not take.</summary>
    private static IEnumerable<PageRegion> Without(IPageSource source, PageRegion region, PagemapEntry[] buffer, Func<PagemapEntry, bool> drop)
    {
        ulong pageSize = (ulong)source.PageSize;
        ulong page = region.Start / pageSize, last = region.End / pageSize;
        ulong runStart = 0, at = region.Start;
        bool open = false;
        while (page < last)
        {
            int want = (int)Math.Min((ulong)buffer.Length, last - page);
            int got = source.ReadPagemap(page, buffer.AsSpan(0, want));
            for (int i = 0; i < got; i++)
            {
                at = (page + (ulong)i) * pageSize;
                bool dropped = drop(buffer[i]);
                if (!dropped && !open) { runStart = at; open = true; }
                else if (dropped && open) { yield return new PageRegion(runStart, at, region.Categories); open = false; }
            }
            at = (page + (ulong)got) * pageSize;
            if (got < want) break;
            page += (ulong)got;
        }
        if (open) yield return new PageRegion(runStart, at, region.Categories);
    }

    /// <summary>
    /// For <see cref="ReadChunks"/>: whether the page at an address that could not be read lies in memory that is gone since
    /// <paramref name="spans"/> were listed (its mapping unmapped or replaced: <see cref="IPageSource.MappingUnchanged"/>). Its
    /// content is not unreadable data of the process: it no longer exists, as memory unmapped before its pagemap was scanned,
    /// which <see cref="PresentRegions"/> leaves out (a thread stack unmapped by the C library once its thread exited, between
    /// the listing and the read: round 18). So is a page of a file mapping that lies, when it fails to read, past the end of
    /// its file (<see cref="MappedFileEnd.EndAddressNow"/>): the file was truncated since the page was found, which takes the
    /// page from every mapping of the file, private copies included, and the process itself would get SIGBUS there (round 32:
    /// such pages counted as unreadable, with reasons that were not theirs, and the image was incomplete). A page whose
    /// mapping is still there and fails to read within its file, or whose file cannot be found, stays unreadable.
    /// <paramref name="pastEnd"/> is told of each page gone past the end of its file.
    /// </summary>
    public static Func<ulong, bool> GoneSince(IPageSource source, IReadOnlyList<PageSpan> spans, Action<ulong>? pastEnd = null)
    {
        ulong ps = (ulong)source.PageSize;
        var ends = Root(source) is ProcPageSource proc ? new MappedFileEnd(proc.ProcessId) : null;
        return address =>
        {
            int lo = 0, hi = spans.Count - 1;
            while (lo <= hi)
            {
                int mid = (lo + hi) >>> 1;
                if (spans[mid].End <= address) lo = mid + 1;
                else if (spans[mid].Start > address) hi = mid - 1;
                else
                {
                    if (spans[mid].Mapping is not { } m) return false;
                    if (!source.MappingUnchanged(m, address, address + ps)) return true;
                    if (ends?.EndAddressNow(m, ps) is not { } end || address < end) return false;
                    pastEnd?.Invoke(address);
                    return true;
                }
            }
            return false;
        };
    }

    /// <summary>
    /// How often a page that failed to read is looked at again (its mapping, then a read) before it counts as unreadable: an
    /// anonymous mapping can be unmapped and made again at the same place between two looks (<see cref="GoneSince"/>).
    /// </summary>
    private const int GoneLooks = 3;

    /// <summary>Called with a run of readable pages: its address and its bytes (a whole number of pages).</summary>
    public delegate void ChunkHandler(ulong address, ReadOnlySpan<byte> data);

    /// <summary>
    /// Reads the bytes of <paramref name="ranges"/> in chunks of up to <paramref name="chunkBytes"/> into one
    /// reused buffer, and hands each readable run to the handler while it is still in the CPU's cache. A real
    /// process is read with process_vm_readv, up to <see cref="Native.IovMax"/> ranges a call (scattered pages
    /// cost one call per chunk, not one per page); what it cannot read (a mapping without read permission)
    /// and every other source go through <see cref="IPageSource.ReadMemory"/> (/proc/PID/mem). (Reading on a
    /// second thread was measured slower on this project's 2-vCPU machines: the bytes cross caches, and the
    /// second core is rarely idle.) Pages that cannot be read are skipped (the handler never sees them);
    /// returns their count.
    /// process_vm_readv pins what it reads, and a read pin of an anonymous page that is copy-on-write shared
    /// (with a fork parent or child) makes the kernel copy it for the target (an "unshare" fault: the target's
    /// memory grows, its page stops being shared), which /proc/PID/mem's reads never do. So process_vm_readv
    /// is used only when the caller knows which present anonymous pages are shared
    /// (<paramref name="sharedAnonymous"/>, sorted, from <see cref="PresentRegions"/>): chunks that touch
    /// one of them, and every chunk when the list is not given, are read through /proc/PID/mem.
    /// A page that cannot be read is asked of <c>gone</c> (<see cref="GoneSince"/>; null: none is): one whose memory was gone by
    /// then is not counted as unreadable.
    /// </summary>
    public static ulong ReadChunks(IPageSource source, IEnumerable<AddressRange> ranges, ChunkHandler handler, int chunkBytes = ChunkBytes, IReadOnlyList<AddressRange>? sharedAnonymous = null,
        Func<ulong, bool>? gone = null, Images.UnnamedObjectPages? objects = null, CancellationToken cancel = default)
    {
        int pageSize = source.PageSize;
        chunkBytes = Math.Max(pageSize, chunkBytes / pageSize * pageSize);
        // Pooled: a save or a collection every few seconds would otherwise leave a large array for the collector each time.
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(chunkBytes);
        try { return ReadChunksInto(source, ranges, handler, chunkBytes, buffer, sharedAnonymous, gone, objects, cancel); }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(buffer); }
    }

    /// <remarks>
    /// The ranges <paramref name="objects"/> owns (pages of an object with no lasting name that the process does not map) are
    /// read from the object, not from the process (<see cref="Images.UnnamedObjectPages"/>), in their place in the order.
    /// </remarks>
    private static ulong ReadChunksInto(IPageSource source, IEnumerable<AddressRange> ranges, ChunkHandler handler, int chunkBytes, byte[] buffer, IReadOnlyList<AddressRange>? sharedAnonymous,
        Func<ulong, bool>? gone, Images.UnnamedObjectPages? objects, CancellationToken cancel)
    {
        var vector = sharedAnonymous is null ? null : Root(source) as ProcPageSource;
        ulong unreadable = 0;
        if (vector is null)
        {
            foreach (var chunk in Split(ranges, (ulong)chunkBytes))
            {
                cancel.ThrowIfCancellationRequested();
                unreadable += objects is not null && objects.Owns(chunk.Start) ? objects.Read(chunk, buffer, handler) : ReadOne(source, chunk, buffer, handler, gone);
            }
            return unreadable;
        }
        var batch = new AddressRange[Native.IovMax];
        int count = 0;
        ulong filled = 0;
        int shared = 0;
        foreach (var piece in Split(ranges, (ulong)chunkBytes))
        {
            if (objects is not null && objects.Owns(piece.Start))
            {
                cancel.ThrowIfCancellationRequested();
                // The batch so far first (it shares the buffer, and the handler sees addresses in ascending order).
                if (count > 0) unreadable += ReadBatch(vector, source, batch.AsSpan(0, count), buffer, handler, gone);
                count = 0;
                filled = 0;
                unreadable += objects.Read(piece, buffer, handler);
                continue;
            }
            // Ranges and shared pages both ascend: skip the shared ranges that end before this piece.
            while (shared < sharedAnonymous!.Count && sharedAnonymous[shared].End <= piece.Start) shared++;
            if (shared < sharedAnonymous.Count && sharedAnonymous[shared].Start < piece.End)
            {
                cancel.ThrowIfCancellationRequested();
                // The batch so far first: the handler sees addresses in ascending order.
                if (count > 0) unreadable += ReadBatch(vector, source, batch.AsSpan(0, count), buffer, handler, gone);
                count = 0;
                filled = 0;
                unreadable += ReadOne(source, piece, buffer, handler, gone);
                continue;
            }
            if (count == batch.Length || filled + piece.Size > (ulong)chunkBytes)
            {
                cancel.ThrowIfCancellationRequested();
                unreadable += ReadBatch(vector, source, batch.AsSpan(0, count), buffer, handler, gone);
                count = 0;
                filled = 0;
            }
            batch[count++] = piece;
            filled += piece.Size;
        }
        if (count > 0) unreadable += ReadBatch(vector, source, batch.AsSpan(0, count), buffer, handler, gone);
        // process_vm_readv finds the process by pid: had it exec'd meanwhile, some bytes came from the new program.
        vector.EnsureSameMemory("reading memory");
        return unreadable;
    }

    /// <summary>Whether <paramref name="source"/> is a real process (wrappers unwrapped), whose memory other processes may share.</summary>
    public static bool IsRealProcess(IPageSource source) => Root(source) is ProcPageSource;

    /// <summary>The source that does the reading (wrappers unwrapped).</summary>
    internal static IPageSource Root(IPageSource source)
    {
        for (int i = 0; i < 16 && source is IPageSourceWrapper w; i++) source = w.Inner;
        return source;
    }

    /// <summary>
    /// One process_vm_readv for the batch; runs adjacent in memory go to the handler as one. Where the call
    /// stops short, the rest of that range is read through ReadMemory and the call goes on after it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static ulong ReadBatch(ProcPageSource vector, IPageSource source, Span<AddressRange> batch, byte[] buffer, ChunkHandler handler, Func<ulong, bool>? gone)
    {
        ulong unreadable = 0;
        int first = 0;
        while (first < batch.Length)
        {
            int got = vector.ReadMemoryVector(batch[first..], buffer);
            if (got < 0)
            {
                for (int i = first; i < batch.Length; i++) unreadable += ReadOne(source, batch[i], buffer, handler, gone);
                return unreadable;
            }
            got -= got % source.PageSize;
            int pos = 0, runPos = 0;
            ulong runStart = 0, runEnd = 0;
            int next = batch.Length;
            for (int i = first; i < batch.Length; i++)
            {
                var r = batch[i];
                int size = (int)r.Size;
                int have = Math.Clamp(got - pos, 0, size);
                if (have > 0 && r.Start == runEnd) runEnd += (ulong)have;
                else if (have > 0)
                {
                    if (runEnd > runStart) handler(runStart, buffer.AsSpan(runPos, (int)(runEnd - runStart)));
                    runStart = r.Start; runEnd = r.Start + (ulong)have; runPos = pos;
                }
                if (have < size)
                {
                    if (runEnd > runStart) handler(runStart, buffer.AsSpan(runPos, (int)(runEnd - runStart)));
                    runEnd = runStart;
                    // The rest of this range through /proc/PID/mem (it skips what cannot be read at all).
                    unreadable += ReadOne(source, new AddressRange(r.Start + (ulong)have, r.End), buffer, handler, gone);
                    next = i + 1;
                    break;
                }
                pos += size;
            }
            if (runEnd > runStart) handler(runStart, buffer.AsSpan(runPos, (int)(runEnd - runStart)));
            first = next;
        }
        return unreadable;
    }

    /// <summary>Reads one range (at most the buffer's size) through ReadMemory, skipping unreadable pages (counted unless <paramref name="gone"/>).</summary>
    private static ulong ReadOne(IPageSource source, AddressRange chunk, byte[] buffer, ChunkHandler handler, Func<ulong, bool>? gone)
    {
        int pageSize = source.PageSize;
        int length = (int)chunk.Size, pos = 0;
        ulong unreadable = 0;
        while (pos < length)
        {
            int got = source.ReadMemory(chunk.Start + (ulong)pos, buffer.AsSpan(pos, length - pos));
            got -= got % pageSize;
            if (got > 0) handler(chunk.Start + (ulong)pos, buffer.AsSpan(pos, got));
            pos += got;
            if (pos < length)
            {
                // An unreadable page: skipped, and counted unless its memory was gone (unmapped or replaced since it was found).
                ulong at = chunk.Start + (ulong)pos;
                bool counted = true;
                for (int look = 0; gone is not null && look < GoneLooks; look++)
                {
                    if (gone(at)) { counted = false; break; }
                    // Its mapping looks as listed: read again. An anonymous mapping unmapped and made again at the same place
                    // between the read and the look cannot be told from the one listed (a new thread's stack where an old one
                    // was), and reads now: what it holds now is the page (as for a page read a moment later).
                    if (source.ReadMemory(at, buffer.AsSpan(pos, pageSize)) == pageSize)
                    {
                        handler(at, buffer.AsSpan(pos, pageSize));
                        counted = false;
                        break;
                    }
                }
                if (counted) unreadable++;
                pos += pageSize;
            }
        }
        return unreadable;
    }

    private static IEnumerable<AddressRange> Split(IEnumerable<AddressRange> ranges, ulong chunk)
    {
        foreach (var r in ranges)
            for (ulong a = r.Start; a < r.End; a += chunk)
                yield return new AddressRange(a, Math.Min(r.End, a + chunk));
    }
}
