using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using SoftDirty.Emulation;
using SoftDirty.Injection;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// Which pages an image save must look at, per method. Hash: every present page (compared with the parent
/// chain's hashes). SoftDirty: the soft-dirty pages, when the parent was saved from the same process with
/// soft-dirty cleared. WriteProtect: the written pages of a tracker kept on the source across saves (an
/// emulated process), or of another real process's write tracking, which lives in that process between commands.
/// </summary>
internal static class ImageTracking
{
    private static readonly ConditionalWeakTable<IPageSource, KeptTracker> Kept = new();

    /// <summary>
    /// A tracker kept on an emulated source between saves, the selection it tracks (the save's that made it), and the
    /// epoch of the image it was last re-armed at (that image's ArmedEpoch).
    /// </summary>
    private sealed class KeptTracker(WriteProtectTracker tracker, Func<MemoryMapping, bool>? selector)
    {
        public WriteProtectTracker Tracker { get; } = tracker;
        public Func<MemoryMapping, bool>? Selector { get; } = selector;
        public string? Epoch { get; set; }
        /// <summary>The process's <see cref="EmulatedProcess.WriteProtects"/> after this tracker's last look.</summary>
        public long WriteProtects { get; set; }
    }

    /// <summary>The page source under any wrappers (the one whose tracking state they share).</summary>
    private static IPageSource Unwrapped(IPageSource source)
    {
        const int MaxDepth = 16;
        for (int i = 0; i < MaxDepth && source is IPageSourceWrapper w; i++) source = w.Inner;
        return source;
    }

    public static TrackingMethod Resolve(IPageSource source, TrackingMethod method)
    {
        if (method != TrackingMethod.Auto) return method;
        if (source.Features.SoftDirty) return TrackingMethod.SoftDirty;
        if (source is IAsyncWriteProtectSource && source.Features.PagemapScan) return TrackingMethod.WriteProtect;
        if (source is ProcPageSource && source.ProcessId != Environment.ProcessId && WriteTrackingStore.Load(source.ProcessId) is not null) return TrackingMethod.WriteProtect;
        return TrackingMethod.Hash;
    }

    /// <inheritdoc cref="Candidates(IPageSource, TrackingMethod, ImageManifest?, Func{MemoryMapping, bool}?, bool, out TrackingMethod?, out string?, out Guid?, Action{string}?, CancellationToken)"/>
    public static DirtyPageSet? Candidates(IPageSource source, TrackingMethod method, ImageManifest? parent, Func<MemoryMapping, bool>? selector, bool verify,
        out TrackingMethod? armed, out string? armedEpoch, Action<string>? warn, CancellationToken cancel) =>
        Candidates(source, method, parent, selector, verify, out armed, out armedEpoch, out _, warn, cancel);

    /// <summary>
    /// The candidates (null: every present page) and the method re-armed for the next increment. Call with the
    /// process frozen or just before reading: soft-dirty is cleared here. Soft-dirty candidates are used only
    /// while the epoch the parent armed is still current (<see cref="TrackingEpoch"/>) and not with
    /// <paramref name="verify"/>; otherwise every page is compared, and <paramref name="warn"/> says why.
    /// <paramref name="armedEpoch"/> is the epoch this call's clear started: pass it to <see cref="ImageWriter.Save"/>.
    /// </summary>
    /// <remarks>
    /// WriteProtect of another real process uses its write tracking (Enable-WriteTracking), enabling it when it
    /// is not yet (and leaving it enabled: the chain goes on in later commands); <paramref name="writeTrackingReset"/>
    /// gets the reset the image is taken at, for its manifest.
    /// </remarks>
    public static DirtyPageSet? Candidates(IPageSource source, TrackingMethod method, ImageManifest? parent, Func<MemoryMapping, bool>? selector, bool verify,
        out TrackingMethod? armed, out string? armedEpoch, out Guid? writeTrackingReset, Action<string>? warn, CancellationToken cancel)
    {
        armed = null;
        armedEpoch = null;
        writeTrackingReset = null;
        switch (method)
        {
            case TrackingMethod.SoftDirty:
            {
                if (!source.Features.SoftDirty)
                    throw new EngineException(EngineError.SoftDirtyNotSupported, source.Features.SoftDirtyReason ?? "No soft-dirty on this kernel.", source.ProcessId);
                DirtyPageSet? set = null;
                bool exact;
                string? why;
                // The read and the clear at one moment (SoftDirtyWindow): a write between them would be lost to this
                // image and to every later one.
                using (SoftDirtyWindow.Stop(source, cancel, out exact, out why))
                {
                    if (parent is not null && parent.Armed == TrackingMethod.SoftDirty && parent.ProcessId == source.ProcessId && !verify)
                    {
                        var spans = PageWalk.DataSpans(source.ReadMappings(false), selector);
                        var ranges = SoftDirtyTracker.Dirty(source, spans, cancel, out ulong scanned);
                        // Checked after the read: a clear by another command before or during it is seen here.
                        var current = TrackingEpoch.Current(source);
                        if (parent.ArmedEpoch is { } e && current == e && parent.ProcessIdentity == TrackingEpoch.Identity(source))
                            set = new DirtyPageSet(TrackingMethod.SoftDirty, source.PageSize, ranges, scanned, TimeSpan.Zero);
                        else
                            warn?.Invoke(current is null
                                ? $"Cannot tell whether soft-dirty of process {source.ProcessId} was cleared since the parent image (no usable state folder): comparing every page's contents with the parent's hashes instead."
                                : $"Soft-dirty of process {source.ProcessId} was cleared since the parent image was taken (by another command of this module: Clear-SoftDirty, Watch-DirtyPage, a migration or another chain): comparing every page's contents with the parent's hashes instead.");
                    }
                    armedEpoch = source.ClearRefs(ClearRefsType.SoftDirty, cancel);
                }
                if (exact) armed = TrackingMethod.SoftDirty;
                else
                {
                    armedEpoch = null;
                    warn?.Invoke($"Process {source.ProcessId} could not be stopped for the moment between reading soft-dirty and clearing it ({why}): a write in that moment would be missing from the next increment, so the next increment compares every page's contents instead.");
                }
                return set; // no usable parent arming: compare every page this time
            }
            case TrackingMethod.WriteProtect when source is ProcPageSource proc && proc.ProcessId != Environment.ProcessId:
            {
                using var tracker = new WriteProtectTracker(proc, selector, cancel);
                tracker.KeepEnabled(cancel);
                DirtyPageSet? set = null;
                if (parent is not null && parent.Armed == TrackingMethod.WriteProtect && parent.ProcessId == proc.ProcessId && !verify
                    && parent.ProcessIdentity == TrackingEpoch.Identity(source)
                    && parent.WriteTrackingReset is { } at && at == tracker.RemoteState!.ResetId)
                {
                    tracker.Resume(at);
                    set = tracker.Collect(rearm: true, cancel); // checks the reset again under the tracking's lock
                    if (tracker.ResetElsewhere)
                    {
                        warn?.Invoke($"The write tracking of process {proc.ProcessId} was reset by another command or session after this save checked it: comparing every page's contents with the parent's hashes instead.");
                        set = null;
                    }
                }
                else
                {
                    if (parent is not null && parent.Armed == TrackingMethod.WriteProtect && !verify)
                        warn?.Invoke($"The write tracking of process {proc.ProcessId} was reset or restarted since the parent image was taken: comparing every page's contents with the parent's hashes instead.");
                    tracker.Reset(cancel); // no parent taken at the current reset: compare every page this time
                }
                armed = TrackingMethod.WriteProtect;
                writeTrackingReset = tracker.RemoteState!.ResetId;
                return set;
            }
            case TrackingMethod.WriteProtect:
            {
                if (source is not IAsyncWriteProtectSource)
                    throw new EngineException(EngineError.WriteProtectNotSupported,
                        $"Memory images of process {source.ProcessId} cannot use WriteProtect: its tracking would not outlive this command. Use -Method Hash or SoftDirty.", source.ProcessId);
                DirtyPageSet? set = null;
                // The kept tracker counts from the image it was last re-armed at: only an increment of that very image
                // (its ArmedEpoch) may use its answer; a branch, or an increment of an older image of the chain, would
                // miss the writes between that image and the newer one the tracker was re-armed at.
                // It also watches only the mappings of the selection it was made with: a save of another selection
                // (every mapping after a -Mapping save) would miss the writes elsewhere, so it starts a new one.
                // Kept on the process under its wrappers: each command wraps an emulated process anew (EmulatedTarget),
                // so a tracker kept on the wrapper was never found again and every increment compared every page.
                var keptOn = Unwrapped(source);
                // The process's uffd-wp bits are one set: a watch, a migration, Search-PageMap -WriteProtect or
                // Register-EmulatedWriteProtect re-protects the pages this tracker counts on, taking their writes away.
                // Its answer is used only where nothing else write-protected the process since its own last look,
                // checked and collected under the process's lock, so no other runspace's re-protect comes between.
                var emulated = keptOn as EmulatedProcess;
                lock (emulated?.MemoryLock ?? new object()) // another kind of source: nothing to hold
                {
                    bool hasKept = Kept.TryGetValue(keptOn, out var kept);
                    bool untouched = hasKept && (emulated is null || kept!.WriteProtects == emulated.WriteProtects);
                    if (parent is not null && parent.Armed == TrackingMethod.WriteProtect && hasKept && parent.ArmedEpoch == kept!.Epoch && kept.Selector == selector && untouched && !verify)
                        set = kept.Tracker.Collect(rearm: true, cancel);
                    else
                    {
                        if (parent is not null && parent.Armed == TrackingMethod.WriteProtect && hasKept && !verify)
                            warn?.Invoke(kept!.Selector != selector && parent.ArmedEpoch == kept.Epoch
                                ? $"The write tracking of process {source.ProcessId} watches the mappings of another selection (-Mapping) than this save's: comparing every page's contents with the parent's hashes instead."
                                : parent.ArmedEpoch == kept.Epoch && !untouched
                                ? $"The pages of process {source.ProcessId} were write-protected again by another command since the parent image was taken (Watch-DirtyPage, Invoke-PreCopyMigration, Search-PageMap -WriteProtect or Register-EmulatedWriteProtect), which takes the record of their writes away: comparing every page's contents with the parent's hashes instead."
                                : $"The write tracking of process {source.ProcessId} was re-armed at another image since the parent image was taken (a branch, or an increment of an older image): comparing every page's contents with the parent's hashes instead.");
                        if (hasKept) { kept!.Tracker.Dispose(); Kept.Remove(keptOn); }
                        var t = new WriteProtectTracker(source, selector);
                        t.Reset(cancel);
                        kept = new KeptTracker(t, selector);
                        Kept.Add(keptOn, kept);
                    }
                    kept!.Epoch = Guid.NewGuid().ToString("N");
                    if (emulated is not null) kept.WriteProtects = emulated.WriteProtects;
                    armedEpoch = kept.Epoch;
                    armed = TrackingMethod.WriteProtect;
                    return set;
                }
            }
            default:
                return null;
        }
    }

    /// <summary>
    /// The parts of the selected mappings whose pages no tracker's answer can vouch for: an increment compares them
    /// by content whatever the candidates say. Mappings not writable now (WriteProtect watches writable mappings
    /// only, so a page written before an mprotect to read-only or PROT_NONE is found by its content alone), shared
    /// mappings, and everything outside the parent's mappings (a selection wider than the parent's: pages that were
    /// never saved, whether written since or not). Pages of files and shared memory in private mappings, which
    /// write(2) and other processes change without this process's page tables seeing it, are compared by
    /// <see cref="ImageWriter"/> page by page (their pagemap category), and so are the pages dropped there under write
    /// tracking (uffd-wp markers, which read the file again).
    /// </summary>
    /// <param name="mappings">The process's mappings, ascending.</param>
    /// <param name="selector">The save's selection; null: all.</param>
    /// <param name="parent">The parent image's mappings (ascending, disjoint: the manifest's invariant).</param>
    /// <param name="kernelWritten">
    /// Buffers the kernel writes through its own mapping (io_uring registered buffers, <see cref="PinnedBuffers"/>): no
    /// page-table bit sees those writes, so the mappings holding them are compared by content too.
    /// </param>
    public static List<AddressRange> Untracked(IReadOnlyList<MemoryMapping> mappings, Func<MemoryMapping, bool>? selector, IReadOnlyList<ImageMapping> parent,
        IReadOnlyList<AddressRange>? kernelWritten = null)
    {
        var b = new RangeListBuilder();
        int p = 0;
        foreach (var m in mappings)
        {
            if (selector is not null && !selector(m)) continue;
            if ((m.Protection & Protection.Write) == 0 || m.Shared || Overlaps(kernelWritten, m)) { b.Add(m.Start, m.End); continue; }
            ulong at = m.Start;
            while (p < parent.Count && parent[p].End <= at) p++;
            for (int q = p; q < parent.Count && parent[q].Start < m.End; q++)
            {
                if (parent[q].Start > at) b.Add(at, parent[q].Start);
                at = Math.Max(at, parent[q].End);
            }
            if (at < m.End) b.Add(at, m.End);
        }
        return b.Build();
    }

    private static bool Overlaps(IReadOnlyList<AddressRange>? ranges, MemoryMapping m)
    {
        if (ranges is null) return false;
        foreach (var r in ranges)
            if (r.Start < m.End && m.Start < r.End) return true;
        return false;
    }
}
