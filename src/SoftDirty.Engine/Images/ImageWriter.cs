using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// Writes a memory image of a page source: every present or swapped page with data (the zero page and
/// all-zero pages are left out: they read as zero), or, against a parent chain, only the pages whose bytes
/// differ from the chain's. Atomic: data files under temporary names, fsync, rename, manifest.json last.
/// </summary>
internal static class ImageWriter
{
    private const ulong WritebackBytes = 32UL << 20;
    /// <summary>Pages to store are gathered into one buffer of this size and written with one call (scattered pages of an increment cost one write a megabyte, not one a page).</summary>
    private const int WriteBufferBytes = 1 << 20;
    /// <summary>
    /// Memory is read in chunks of up to this size: half the write buffer, so a run of stored pages that fills a
    /// chunk is written straight from the read buffer (no copy into the write buffer), and smaller runs are gathered.
    /// </summary>
    private const int ReadChunkBytes = WriteBufferBytes / 2;

    /// <summary>Saves a full image of <paramref name="source"/> (no <paramref name="parentPath"/>) or an increment over the chain at <paramref name="parentPath"/>.</summary>
    /// <param name="source">The process (real or emulated) to save.</param>
    /// <param name="path">The image directory to create; it must not exist.</param>
    /// <param name="parentPath">The parent image of an increment; null for a full image.</param>
    /// <param name="method">How the changed pages were found (recorded in the manifest).</param>
    /// <param name="candidates">When given, only these pages can have changed since the parent (a tracker's answer); null: compare every present page.</param>
    /// <param name="selector">The mappings to save; null: all.</param>
    /// <param name="frozen">Whether the process is stopped during the save (recorded in the manifest).</param>
    /// <param name="armed">The method whose tracking this save re-armed, so the next increment may use it; null: none.</param>
    /// <param name="progress">Called with the pages done and the pages in all.</param>
    /// <param name="cancel">Stops the save; the partial folder is removed.</param>
    /// <param name="armedEpoch">The tracking epoch the re-arm started (<see cref="TrackingEpoch"/>).</param>
    /// <param name="writeTrackingReset">WriteProtect of another process: the reset of its write tracking this image was taken at.</param>
    /// <param name="trackedAgainst">
    /// The parent's manifest as the caller read it to find <paramref name="candidates"/>: the chain read here must end in
    /// that very image (its id and checksum), else ImageParentMismatch. A parent replaced meanwhile (a "latest" folder or
    /// link moved back to an older image) would otherwise get an increment that trusts candidates found since the newer
    /// image and links to the older one, missing every write between the two.
    /// </param>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1068", Justification = "The optional arguments after the token keep their order for the cmdlet's positional call (Save-MemoryImage); the token is named wherever it is passed.")]
    public static ImageSaveResult Save(IPageSource source, string path, string? parentPath, TrackingMethod method, DirtyPageSet? candidates,
        Func<MemoryMapping, bool>? selector = null, bool frozen = false, TrackingMethod? armed = null, Action<ulong, ulong>? progress = null, CancellationToken cancel = default,
        string? armedEpoch = null, Guid? writeTrackingReset = null, ImageManifest? trackedAgainst = null)
    {
        var clock = Stopwatch.StartNew();
        // How long each part took, for -Verbose: where an increment's fixed cost goes.
        var phases = new List<SavePhase>();
        var lap = Stopwatch.StartNew();
        void Phase(string name) { phases.Add(new SavePhase(name, lap.Elapsed)); lap.Restart(); }
        path = System.IO.Path.GetFullPath(path);
        int ps = source.PageSize;
        ImageChain? chain = null;
        var parentPages = ChainPages.Empty;
        if (parentPath is not null)
        {
            chain = ImageReader.Chain(parentPath);
            try { CheckParent(chain[^1], source, parentPath, trackedAgainst); }
            catch
            {
                chain.Dispose(); // (the chain is closed on every way out: a refused parent included)
                throw;
            }
            parentPages = ChainPages.Of(chain);
            Phase("parent chain");
        }
        using var openedChain = chain;
        using var output = PrivateOutput.Begin(path, "The image directory");
        path = output.Destination;

        var mappings = source.ReadMappings(false);
        var spans = PageWalk.DataSpans(mappings, selector);
        // Pages pagemap cannot show (VM_PFNMAP: device memory, a perf_event ring): unreadable, never silently absent.
        ulong devicePages = DeviceMappings.Pages(source, mappings, selector);
        // Pages of memory that ends with the process (a memfd, shared anonymous or System V memory, a deleted file) that it does
        // not map now: read from the object, or counted unreadable where it cannot be opened.
        using var objects = UnnamedObjectPages.For(source, spans);
        // What to compare besides the tracker's candidates: what no tracker can vouch for (ImageTracking.Untracked); every
        // page while the kernel writes the process's memory no one knows where (PinnedBuffers.WritesUnlocated).
        var pinned = PageWalk.IsRealProcess(source) ? PinnedBuffers.Read(source.ProcessId, ps) : null;
        bool unlockedNow = pinned is not null && PinnedBuffers.WritesUnlocated(source.ProcessId, ps, mappings, pinned);
        // And every mapping where KSM touched the process: a merged page loses its soft-dirty bit (KsmMergeable), recorded
        // with the buffers so that the next increment compares it too, whether or not KSM still shows then.
        if (pinned is not null) pinned = KsmMergeable.With(source, pinned);
        // And what the kernel could write at the parent's save (read after its reset, recorded in its manifest): a buffer it
        // wrote since, then unregistered (its io_uring closed) before now, shows in no page-table bit and in nothing /proc
        // says now (round 19).
        bool unlocated = unlockedNow;
        var kernelWritten = pinned is null || chain is null ? pinned : KernelWrites.Since(chain[^1].Manifest, pinned, ref unlocated);
        var watched = candidates is null || chain is null || unlocated ? null : Union(candidates.Ranges, ImageTracking.Untracked(mappings, selector, chain[^1].Manifest.Mappings,
            kernelWritten));
        // Pages are hashed under the chain's key (a new random one for a full image): the process, which cannot read
        // the image, cannot write a page that keeps its parent's hash (or the zero page's) and so goes unsaved.
        var key = chain is null ? PageHashKey.NewRandom() : chain[^1].PageKey;
        var zeroHash = key.ZeroPage(ps);
        bool increment = parentPages.Count > 0;
        ulong scanned = 0, inherited = 0, dataOffset = 0, flushedTo = 0, unreadable = 0;
        // An increment's present ranges, to find the parent's pages that are gone; a full image keeps nothing per page.
        var presentRanges = increment ? new List<AddressRange>() : null;
        // And the ranges it reads (pages present but not read keep the parent's content: inherited).
        var readRanges = increment ? new List<AddressRange>() : null;
        // Progress by address: the pages of the selected mappings walked so far, of all of them.
        ulong total = 0;
        foreach (var s in spans) total += (s.End - s.Start) / (ulong)ps;
        int progressSpan = 0;
        ulong pagesBefore = 0;
        ulong Walked(ulong address)
        {
            while (progressSpan < spans.Count && spans[progressSpan].End <= address)
            {
                pagesBefore += (spans[progressSpan].End - spans[progressSpan].Start) / (ulong)ps;
                progressSpan++;
            }
            return progressSpan < spans.Count && address > spans[progressSpan].Start
                ? pagesBefore + (address - spans[progressSpan].Start) / (ulong)ps : pagesBefore;
        }

        try
        {
            using var indexFile = output.Create(ImageFormat.IndexFile);
            // A full image's records arrive in address order and stream to the file; an increment's zero records do not.
            var index = new ImageIndexWriter(indexFile, ps, ordered: !increment);
            using (var pages = output.Create(ImageFormat.PagesFile))
            {
                // What to read, found as it is read: present pages, narrowed to the tracker's candidates when there
                // are any. (Lazily: the regions of a large sparse process are never all held at once.)
                var shared = new List<AddressRange>();
                // Where the cut of regions to the watched ranges goes on (regions ascend: the search goes on where it stopped).
                int watchedAt = 0, spanAt = 0;
                // Whether r is swapped, not present, in a mapping of a file or memfd (a marker: see below).
                MemoryMapping? DroppedFromFile(PageRegion r)
                {
                    if ((r.Categories & (PageCategory.Swapped | PageCategory.Present)) != PageCategory.Swapped) return null;
                    while (spanAt < spans.Count && spans[spanAt].End <= r.Start) spanAt++;
                    return spanAt < spans.Count && spans[spanAt].Start <= r.Start && spans[spanAt].Mapping is { } m && ContentCheckedTracker.ChangeableByOthers(m) ? m : null;
                }
                // Where the files of a real process end (the walk has left out the markers past an end it found). Only a real
                // process's file can end before its mapping: the emulator models no truncation.
                var fileEnds = PageWalk.Root(source) is ProcPageSource proc ? new MappedFileEnd(proc.ProcessId) : null;
                // The marker regions read (DroppedFromFile) whose file's end is unknown, ascending: a page of one whose read
                // fails may lie past the end of its file. Any other failed read is what it is, unreadable (round 30: a file
                // system's EIO there was taken for the end of the file, and an increment said zeros where its parent had data).
                var markers = new List<AddressRange>();
                int markerAt = 0;
                ulong markerNext = 0, markersFailed = 0;
                // The marker pages below `until` that no read delivered: a uffd-wp marker of a page the file no longer has (a
                // truncation that the caller could not see: /proc/PID/map_files needs CAP_CHECKPOINT_RESTORE, and the process
                // may hold no descriptor of a memfd). The process would get SIGBUS there; like a page not present in a file
                // mapping, it is the file's and in no image: not unreadable, and a page the chain has is now zero.
                void MarkersFailedBelow(ulong until)
                {
                    for (; markerAt < markers.Count; markerAt++)
                    {
                        var m = markers[markerAt];
                        for (ulong a = Math.Max(m.Start, markerNext); a < Math.Min(m.End, until); a += (ulong)ps)
                        {
                            markersFailed++;
                            if (increment && parentPages.Contains(a)) index.Add(new PageRecord(a, PageRecordKind.Zero, 0, zeroHash));
                        }
                        if (m.End > until) break;
                    }
                }
                // The pages of an object with no lasting name (a memfd, shared anonymous or System V memory, a deleted file)
                // that the process does not map: read from the object, in their place among the process's regions.
                IEnumerable<AddressRange> ObjectGaps(ulong until)
                {
                    foreach (var g in objects!.GapsBelow(until))
                    {
                        presentRanges?.Add(g);
                        readRanges?.Add(g);
                        yield return g;
                    }
                }
                IEnumerable<AddressRange> ToRead()
                {
                    foreach (var r in PageWalk.PresentRegions(source, spans, shared, candidates?.MappingsWithFlags, cancel: cancel))
                    {
                        if (objects is not null)
                        {
                            foreach (var g in ObjectGaps(r.Start)) yield return g;
                            objects.Covered(r.End);
                        }
                        presentRanges?.Add(new AddressRange(r.Start, r.End));
                        if ((r.Categories & PageCategory.PfnZero) != 0)
                        {
                            // Zero-page regions hold zeros: a record only where the parent chain has data there.
                            if (increment)
                                for (ulong a = r.Start; a < r.End; a += (ulong)ps)
                                    if (parentPages.Contains(a)) index.Add(new PageRecord(a, PageRecordKind.Zero, 0, zeroHash));
                            continue;
                        }
                        // A page of a file or of shared memory changes by write(2) or through another process's mapping,
                        // and appears by a read fault, none of which this process's soft-dirty or write-protect bits see;
                        // so does a page dropped and read again as the zero page, which the pagemap walk (no PfnZero there)
                        // sees only as not exclusive (PageWalk.NotExclusive): both are compared by content.
                        // A page of a private file or memfd mapping dropped under write tracking (a hole punched in the
                        // file by another process, MADV_DONTNEED of the process's own copy) keeps a uffd-wp marker, which
                        // pagemap shows as swapped, neither written nor of a file, while the memory reads the file again.
                        // (Where pagemap's frames are visible, PresentRegions names such markers and leaves them out: the
                        // file's, not read, as a page of a file mapping that is not present.)
                        var droppedFrom = DroppedFromFile(r);
                        bool dropped = droppedFrom is not null;
                        if (droppedFrom is not null && fileEnds is not null && !fileEnds.Knows(droppedFrom)) markers.Add(new AddressRange(r.Start, r.End));
                        // [start, end) cut to the watched ranges, here and not in an iterator of its own: a save of a sparse
                        // process walks a region a page, and an iterator a region was most of what a full save allocated.
                        if (watched is null || dropped || (r.Categories & (PageCategory.File | PageWalk.NotExclusive)) != 0)
                        {
                            var whole = new AddressRange(r.Start, r.End);
                            readRanges?.Add(whole);
                            yield return whole;
                            continue;
                        }
                        while (watchedAt < watched.Count && watched[watchedAt].End <= r.Start) watchedAt++;
                        for (int i = watchedAt; i < watched.Count && watched[i].Start < r.End; i++)
                        {
                            var part = new AddressRange(Math.Max(r.Start, watched[i].Start), Math.Min(r.End, watched[i].End));
                            readRanges?.Add(part);
                            yield return part;
                        }
                    }
                    if (objects is not null) foreach (var g in ObjectGaps(ulong.MaxValue)) yield return g;
                }
                ulong written = 0;
                var pooled = System.Buffers.ArrayPool<byte>.Shared.Rent(WriteBufferBytes); // returned below: no large array left per save
                var writeBuffer = pooled.AsMemory(0, WriteBufferBytes);
                int buffered = 0;
                void WriteOut(ReadOnlySpan<byte> bytes)
                {
                    pages.Write(bytes);
                    written += (ulong)bytes.Length;
                    // Start writeback of each 32 MiB written, so the disk works while pages are read
                    // and the final fsync has little left to do.
                    if (written - flushedTo >= WritebackBytes)
                    {
                        Native.SyncFileRange((int)pages.SafeFileHandle.DangerousGetHandle(), (long)flushedTo, (long)(written - flushedTo), Native.SYNC_FILE_RANGE_WRITE);
                        flushedTo = written;
                    }
                }
                void FlushBuffer()
                {
                    if (buffered > 0) WriteOut(writeBuffer.Span[..buffered]);
                    buffered = 0;
                }
                // A run of pages to store: gathered into the buffer, or written as it is when it is large.
                void Store(ReadOnlySpan<byte> run)
                {
                    // (What is gathered goes first: the file holds the pages in the order their records give.)
                    if (run.Length * 2 >= writeBuffer.Length) { FlushBuffer(); WriteOut(run); }
                    else
                    {
                        if (buffered + run.Length > writeBuffer.Length) FlushBuffer();
                        run.CopyTo(writeBuffer.Span[buffered..]);
                        buffered += run.Length;
                    }
                    dataOffset += (ulong)run.Length;
                }
                // A page that failed to read in memory gone since it was found (unmapped or replaced: PageWalk.GoneSince) is what
                // a page unmapped before the scan is: in no image, and zero where the chain had it (as AddGonePages does for
                // those); never unreadable. A marker page is left to MarkersFailedBelow.
                var goneSince = PageWalk.GoneSince(source, spans);
                bool Gone(ulong addr)
                {
                    foreach (var m in markers) if (m.Start <= addr && addr < m.End) return false;
                    if (!goneSince(addr)) return false;
                    if (increment && parentPages.Contains(addr)) index.Add(new PageRecord(addr, PageRecordKind.Zero, 0, zeroHash));
                    return true;
                }
                // A page of an object read past its end (truncated since its data was listed) is gone: zero where the chain had it.
                if (objects is not null && increment)
                    objects.PastEnd = addr => { if (parentPages.Contains(addr)) index.Add(new PageRecord(addr, PageRecordKind.Zero, 0, zeroHash)); };
                // Compiled optimised at once: tier 0 hashed a whole save unoptimised on a busy machine (see PageHash).
                // The handler sees addresses in ascending order: the chain's pages are looked up with a cursor.
                var inChain = parentPages.Ascending();
                unreadable = PageWalk.ReadChunks(source, ToRead(), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (address, data) =>
                {
                    if (markerAt < markers.Count) { MarkersFailedBelow(address); markerNext = address + (ulong)data.Length; }
                    int runStart = -1;
                    for (int off = 0; off <= data.Length; off += ps)
                    {
                        bool write = false;
                        if (off < data.Length)
                        {
                            var page = data.Slice(off, ps);
                            ulong addr = address + (ulong)off;
                            scanned++;
                            var h = PageHash.Fast128(page, key);
                            bool inParent = inChain.TryGet(addr, out var ph);
                            if (h == zeroHash) { if (inParent) index.Add(new PageRecord(addr, PageRecordKind.Zero, 0, zeroHash)); }
                            else if (inParent && ph == h) inherited++;
                            else
                            {
                                index.Add(new PageRecord(addr, PageRecordKind.Data, dataOffset + (ulong)(runStart < 0 ? 0 : off - runStart), h));
                                write = true;
                            }
                        }
                        if (write) { if (runStart < 0) runStart = off; continue; }
                        if (runStart >= 0)
                        {
                            Store(data[runStart..off]);
                            runStart = -1;
                        }
                    }
                    progress?.Invoke(Walked(address + (ulong)data.Length), total);
                }, chunkBytes: ReadChunkBytes, cancel: cancel, sharedAnonymous: shared, gone: Gone, objects: objects);
                // Pages of such an object that could not be opened: unreadable, never silently the object's.
                unreadable += objects?.UnopenedPages ?? 0;
                MarkersFailedBelow(ulong.MaxValue);
                unreadable -= Math.Min(unreadable, markersFailed);
                FlushBuffer();
                System.Buffers.ArrayPool<byte>.Shared.Return(pooled); // (on a failure it is left to the collector)
                pages.Flush(flushToDisk: true);
                Phase("pages (found, read, hashed, written, fsync)");
            }
            // Pages the chain has data for that are no longer present, inside the mappings saved: now zero.
            if (increment) inherited += AddGonePages(parentPages, presentRanges!, candidates is null ? null : readRanges!, spans, zeroHash, index, cancel);
            if (increment) Phase("the parent's pages now gone");
            var indexHash = index.Finish();
            indexFile.Dispose();
            // Guard regions hold no page: recorded with their mappings, so that a restore does not make them readable zeros.
            var guards = GuardRegions.Find(source, spans, cancel);

            ulong dataPages = index.DataCount;
            var manifest = new ImageManifest
            {
                Id = Guid.NewGuid(),
                Created = DateTime.UtcNow,
                Parent = chain is null ? null : new ImageParentLink { Path = System.IO.Path.GetRelativePath(output.RealDestination, chain[^1].RealPath), Id = chain[^1].Manifest.Id, Checksum = chain[^1].Manifest.Checksum },
                Depth = chain is null ? 0 : chain[^1].Manifest.Depth + 1,
                ProcessId = source.ProcessId,
                ProcessIdentity = TrackingEpoch.Identity(source),
                ProcessName = source.Name,
                PageKey = key.Hex,
                Kernel = source.Features.KernelRelease,
                PageSize = ps,
                Method = method,
                Frozen = frozen,
                Armed = armed,
                ArmedEpoch = armedEpoch,
                WriteTrackingReset = writeTrackingReset,
                KernelWritten = KernelWrites.Record(pinned),
                KernelWritesUnlocated = unlockedNow ? true : null,
                Mappings = mappings.Where(m => m.Kind != MappingKind.Vsyscall && (selector is null || selector(m)))
                    .Select(m => new ImageMapping { Start = m.Start, End = m.End, Permissions = m.Permissions, Path = m.DisplayName, Offset = m.Offset, Guards = GuardRegions.Within(guards, m.Start, m.End) }).ToList(),
                DataPages = dataPages,
                ZeroPages = index.Count - dataPages,
                InheritedPages = inherited,
                ScannedPages = scanned,
                UnreadablePages = unreadable + devicePages,
                Files =
                {
                    new ImageFileInfo { Name = ImageFormat.PagesFile, Size = (long)dataOffset },
                    new ImageFileInfo { Name = ImageFormat.IndexFile, Size = index.Size, Hash = indexHash.ToString() },
                },
            };
            manifest.Checksum = ImageFormat.ManifestChecksum(manifest);
            var manifestBytes = JsonSerializer.SerializeToUtf8Bytes(manifest, ImageFormat.Json);
            using (var mf = output.Create(ImageFormat.ManifestFile))
            {
                mf.Write(manifestBytes);
                mf.Flush(flushToDisk: true);
            }
            Phase("index and manifest");
            output.Commit();
            Phase("commit");
            return new ImageSaveResult(path, manifest, clock.Elapsed, dataOffset + (ulong)index.Size + (ulong)manifestBytes.Length) { Phases = phases, UnopenedObjectPages = objects?.UnopenedPages ?? 0, FirstUnopenedObject = objects?.FirstUnopened };
        }
        catch (IOException ex) when (ex is not FileNotFoundException)
        {
            throw output.Abandoned(new EngineException(EngineError.ImageWriteError, $"Writing the memory image {path} failed: {ex.Message}", path, ex.HResult & 0xFFFF, ex));
        }
        catch (UnauthorizedAccessException ex)
        {
            throw output.Abandoned(new EngineException(EngineError.PermissionDenied, $"Writing the memory image {path} failed: {ex.Message}", path, Errno.EACCES, ex));
        }
        catch (EngineException ex)
        {
            var named = output.Abandoned(ex);
            if (ReferenceEquals(named, ex)) throw;
            throw named;
        }
    }

    /// <summary>The parent an increment continues: the process's page size, the same process, and (where given) the very image the candidates were found against.</summary>
    private static void CheckParent(OpenedImage parent, IPageSource source, string parentPath, ImageManifest? trackedAgainst)
    {
        var manifest = parent.Manifest;
        CheckParentProcess(manifest, source, parent.File(ImageFormat.ManifestFile), parentPath);
        if (trackedAgainst is not null && (manifest.Id != trackedAgainst.Id || manifest.Checksum != trackedAgainst.Checksum))
            throw new EngineException(EngineError.ImageParentMismatch,
                $"The parent image {parentPath} was replaced while this save read it (it was image {trackedAgainst.Id}, it is now {manifest.Id}): the pages found changed since the one would be compared with the other. Nothing was saved; save again.", parentPath);
    }

    /// <summary>
    /// That <paramref name="manifest"/> (a parent's, read from <paramref name="manifestFile"/>) is of this very process
    /// and page size, else ImageParentMismatch. Save-MemoryImage calls it before it collects the process's tracking too:
    /// the collection clears soft-dirty or resets (and first enables) write tracking, which a refused increment must
    /// not do to the process (another process under a reused pid, or a careless -Parent, would lose its own chain's
    /// tracking to a save that fails).
    /// </summary>
    public static void CheckParentProcess(ImageManifest manifest, IPageSource source, string manifestFile, string parentPath)
    {
        if (manifest.PageSize != source.PageSize)
            throw new EngineException(EngineError.ImageParentMismatch, $"{manifestFile}: page size {manifest.PageSize}, the process uses {source.PageSize}.", parentPath);
        var identity = TrackingEpoch.Identity(source);
        if (manifest.ProcessIdentity != identity)
            throw new EngineException(EngineError.ImageParentMismatch,
                $"{manifestFile} is an image of another process ({manifest.ProcessName}, {manifest.ProcessIdentity}), not of process {source.ProcessId} ({identity ?? "gone"}): an increment continues the chain of the same process. Save a full image instead.", parentPath);
    }

    /// <summary>
    /// Adds a zero record for each page the chain has data for that is no longer present inside the mappings saved;
    /// returns the chain's pages that are present and were not read (they keep the parent's content: inherited).
    /// The chain's pages, the present ranges and the spans all ascend: one walk. (Looked up in the present regions, not
    /// a set of every present page: an increment's cost follows the pages written and the parent's pages.)
    /// Compiled optimised at once, as the page loops are (see PageHash).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // one call a save, a loop over the chain's pages: optimised at once
    private static ulong AddGonePages(ChainPages parentPages, List<AddressRange> presentRanges, List<AddressRange>? readRanges,
        List<PageSpan> spans, Hash128 zeroHash, ImageIndexWriter index, CancellationToken cancel)
    {
        const int CancelEvery = 1 << 16;
        ulong inherited = 0;
        // The chain's pages ascend, and so do the three range lists: one cursor each, no search.
        int span = 0, present = 0, read = 0;
        for (int k = 0; k < parentPages.Count; k++)
        {
            if ((k + 1) % CancelEvery == 0) cancel.ThrowIfCancellationRequested();
            ulong addr = parentPages.Address(k);
            if (parentPages.Hash(k) == zeroHash) continue;
            while (present < presentRanges.Count && presentRanges[present].End <= addr) present++;
            if (present < presentRanges.Count && presentRanges[present].Start <= addr)
            {
                // Present but not read (not a candidate): it keeps the parent's content.
                if (readRanges is not null)
                {
                    while (read < readRanges.Count && readRanges[read].End <= addr) read++;
                    if (read == readRanges.Count || readRanges[read].Start > addr) inherited++;
                }
                continue;
            }
            while (span < spans.Count && spans[span].End <= addr) span++;
            if (span < spans.Count && spans[span].Start <= addr) index.Add(new PageRecord(addr, PageRecordKind.Zero, 0, zeroHash));
        }
        return inherited;
    }

    /// <summary>Two ascending range lists as one, sorted and merged.</summary>
    private static List<AddressRange> Union(IReadOnlyList<AddressRange> a, List<AddressRange> b)
    {
        var merged = new RangeListBuilder();
        int i = 0, j = 0;
        while (i < a.Count || j < b.Count)
        {
            var next = j == b.Count || (i < a.Count && a[i].Start <= b[j].Start) ? a[i++] : b[j++];
            merged.Add(next.Start, next.End);
        }
        return merged.Build();
    }
}
