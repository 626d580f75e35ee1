using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using SoftDirty.Images;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>
/// Pre-copy migration rounds: send everything while the process runs, then what was dirtied meanwhile,
/// until little is dirty (converged), the round limit, or the dirty set stops shrinking; then stop the process
/// and send the rest. The link is simulated: a live round lasts at least bytes / bandwidth (real time for a
/// real process, emulated time through <see cref="IWorkloadDriver"/> for an emulated one). Or it is real
/// (<see cref="PreCopyOptions.Link"/>): each round's image is staged in a private temp folder, sent, verified
/// and put in place on the destination, and the transfer is timed; an emulated process then runs its workload
/// for the measured seconds, and the stop-and-copy round's downtime is measured from the freeze until the
/// destination holds the final image.
/// </summary>
internal static class PreCopyMigration
{
    /// <summary>How errors name the -Destination folder.</summary>
    private const string DestinationWhat = "The migration destination";
    /// <summary>The step (<see cref="Injection.InjectionSteps"/>) that ends when an absent destination was checked, before it is created.</summary>
    internal const string DestinationCheckedStep = "destination checked (migration)";

    /// <summary>The rounds and the summary; <paramref name="warn"/> is told when a round sends every present page because another command or session reset the tracking meanwhile, and when the staging folder of a link could not be removed.</summary>
    public static IEnumerable<object> Run(IDirtyTracker tracker, PreCopyOptions options, CancellationToken cancel, Action<string>? status = null, Action<ulong, ulong>? transfer = null, Action<string>? warn = null)
    {
        var link = options.Link;
        if (link is not null)
        {
            // The images are staged locally (an increment is written against its parent's hashes) in a private folder removed at the end
            // (or by a later migration, when this process is killed: PreCopyStage).
            var stage = PreCopyStage.Create();
            try
            {
                foreach (var record in Rounds(tracker, new PreCopyOptions
                {
                    Bandwidth = 1, MaxIterations = options.MaxIterations, StopThreshold = options.StopThreshold, FreezeFinal = options.FreezeFinal,
                    Selector = options.Selector, Link = link, RestorePath = options.RestorePath, Destination = stage,
                }, stage, status, transfer, warn, cancel)) yield return record;
            }
            finally { if (PreCopyStage.Remove(stage) is { } left) warn?.Invoke(left); }
            yield break;
        }
        foreach (var record in Rounds(tracker, options, null, status, transfer, warn, cancel)) yield return record;
    }

    private static IEnumerable<object> Rounds(IDirtyTracker tracker, PreCopyOptions options, string? stage, Action<string>? status, Action<ulong, ulong>? transferProgress, Action<string>? warn, CancellationToken cancel)
    {
        var link = stage is null ? null : options.Link;
        ulong linkBytes = 0;
        double linkSeconds = 0;
        string? held = null; // the last image the destination confirmed it put in place
        // Sends a staged image over the link: the bytes and seconds measured, and where the image now lies there.
        (ulong Bytes, double Seconds, string Image) Cross(string image, string what)
        {
            status?.Invoke(what);
            var name = Path.GetFileName(image);
            LinkTransfer t;
            try { t = link!.Send(image, name, transferProgress, cancel); }
            catch (EngineException ex)
            {
                // What the destination holds now: the failure of a round says it (round 27: "its last complete, verified image" named none).
                var holds = held is null ? $"{link!.Computer} holds no image of this migration" : $"{link!.Computer} holds the rounds up to {held}, each complete and verified";
                var maybe = ex.Error == EngineError.LinkBroken ? $", and {link.PathOf(name)} only where its receiver put it in place before the link failed (Test-MemoryImage there tells)" : $"; {link.PathOf(name)} is not there";
                throw new EngineException(ex.Error, $"{ex.Message} ({holds}{maybe}.)", ex.Target, ex.Errno, ex);
            }
            linkBytes += t.Bytes;
            linkSeconds += t.Seconds;
            held = link.PathOf(name);
            return (t.Bytes, t.Seconds, held);
        }
        if (options.Bandwidth <= 0) throw new EngineException(EngineError.InvalidArgument, "The bandwidth must be more than 0 bytes per second.", options.Bandwidth);
        var source = tracker.Source;
        bool emulated = source is IWorkloadDriver;
        int ps = source.PageSize;
        var total = Stopwatch.StartNew();
        double clock = 0;
        string? parent = null;
        bool created = false;
        var madeFolders = new List<string>(); // the folders above -Destination that the check created
        if (link is null && options.Destination is { } dest && !SafeFiles.CheckDestination(Path.GetFullPath(dest), DestinationWhat, madeFolders))
        {
            Injection.InjectionSteps.Mark(DestinationCheckedStep);
            try
            {
                SafeFiles.CreateDirectory(Path.GetFullPath(dest));
                created = true;
            }
            catch (EngineException ex) when (ex.Errno == Errno.EEXIST)
            {
                // Made meanwhile (another migration into the same place): judged as the check judges it now. An empty folder
                // of the caller's is used, as it would have been had it been there first; the rounds then meet at round-01.
                SafeFiles.CheckDestination(Path.GetFullPath(dest), DestinationWhat);
            }
            catch
            {
                // Not made (a failed mkdir, or its folder's fsync: the folder taken back): nor are the folders on the way kept.
                SafeDirectory.RemoveMade(madeFolders, DestinationWhat);
                throw;
            }
        }
        try
        {
            tracker.Reset(cancel);
            DirtyPageSet? pending = null; // null: everything
            ulong totalPages = 0;
            int round = 0, growing = 0;
            bool toldUnreadable = false, toldInexact = false, toldOverCount = false, toldUnopened = false;
            ulong lastDirty = ulong.MaxValue;
            PreCopyStopReason reason;
            string why;
            while (true)
            {
                round++;
                status?.Invoke($"round {round}: sending {(pending is null ? "every present page" : pending.PageCount + " dirty pages")}");
                var roundClock = Stopwatch.StartNew();
                var (sent, image) = Send(source, tracker.Method, pending, options, round, ref parent, warn, cancel);
                double transfer = sent * (double)ps / options.Bandwidth;
                ulong bytes = sent * (ulong)ps;
                if (link is not null) (bytes, transfer, image) = Cross(image!, $"round {round}: sending {sent} pages to {link.Computer}");
                double roundSeconds;
                if (emulated) { IntervalClock.Wait(source, TimeSpan.FromSeconds(transfer), cancel); roundSeconds = transfer; }
                else
                {
                    IntervalClock.Wait(source, TimeSpan.FromSeconds(Math.Max(0, transfer - roundClock.Elapsed.TotalSeconds)), cancel);
                    roundSeconds = roundClock.Elapsed.TotalSeconds;
                }
                var dirty = tracker.Collect(rearm: true, cancel);
                if (dirty.ResetElsewhere) warn?.Invoke(DirtyWatch.ResetElsewhereWarning(source, $"round {round + 1}"));
                if (dirty.InexactReason is { } inexact && !toldInexact) { toldInexact = true; warn?.Invoke(DirtyWatch.InexactWarning(source, inexact)); }
                if (dirty.OverCountReason is { } over && !toldOverCount) { toldOverCount = true; warn?.Invoke(DirtyWatch.OverCountWarning(source, over)); }
                if (dirty.UnreadablePages > 0 && !toldUnreadable) { toldUnreadable = true; warn?.Invoke(DirtyWatch.UnreadableWarning(source, dirty.UnreadablePages, $"round {round + 1}")); }
                if (dirty.UnopenedObjectPages > 0 && !toldUnopened) { toldUnopened = true; warn?.Invoke(DirtyWatch.UnopenedWarning(source, dirty, $"round {round + 1}")); }
                clock += roundSeconds;
                totalPages += sent;
                yield return new PreCopyRound
                {
                    Round = round, Phase = PreCopyPhase.Live, PagesSent = sent, BytesSent = bytes, TransferSeconds = transfer,
                    RoundSeconds = roundSeconds, DirtyPages = dirty.PageCount, Rate = dirty.PageCount / Math.Max(roundSeconds, 1e-6),
                    Elapsed = emulated ? clock : total.Elapsed.TotalSeconds, PageSize = ps, Method = dirty.Method, ImagePath = image, ToComputer = link?.Computer, Ranges = dirty.Ranges.ToArray(),
                };
                pending = dirty;
                if (dirty.PageCount <= options.StopThreshold)
                { reason = PreCopyStopReason.Converged; why = $"{dirty.PageCount} dirty pages after round {round}, at or below the stop threshold of {options.StopThreshold}."; break; }
                if (round >= options.MaxIterations)
                { reason = PreCopyStopReason.MaxIterations; why = $"{options.MaxIterations} live rounds done and still {dirty.PageCount} dirty pages (threshold {options.StopThreshold})."; break; }
                growing = dirty.PageCount >= lastDirty ? growing + 1 : 0;
                lastDirty = dirty.PageCount;
                if (growing >= 2)
                { reason = PreCopyStopReason.NotConverging; why = $"the dirty set stopped shrinking ({dirty.PageCount} pages): the process dirties memory about as fast as the link sends it ({dirty.PageCount * (double)ps / Math.Max(roundSeconds, 1e-6) / (1 << 20):N1} MiB/s dirtied vs {options.Bandwidth / (1 << 20):N1} MiB/s)."; break; }
            }

            // Stop-and-copy: freeze, add what was dirtied since the last collection, send it, resume.
            status?.Invoke("stop-and-copy");
            var stopClock = Stopwatch.StartNew();
            ulong finalSent;
            string? finalImage;
            DirtyPageSet finalSet;
            double downtime, finalTransfer;
            ulong finalBytes;
            using (options.FreezeFinal ? ProcessFreeze.Freeze(source, cancel) : null)
            {
                var extra = tracker.Collect(rearm: true, cancel);
                if (extra.ResetElsewhere) warn?.Invoke(DirtyWatch.ResetElsewhereWarning(source, "the stop-and-copy round"));
                finalSet = Union(pending!, extra);
                double findSeconds = stopClock.Elapsed.TotalSeconds;
                (finalSent, finalImage) = Send(source, tracker.Method, finalSet, options, round + 1, ref parent, warn, cancel);
                finalTransfer = finalSent * (double)ps / options.Bandwidth;
                finalBytes = finalSent * (ulong)ps;
                downtime = findSeconds + finalTransfer;
                if (link is not null)
                {
                    (finalBytes, finalTransfer, finalImage) = Cross(finalImage!, $"stop-and-copy: sending {finalSent} pages to {link.Computer}");
                    downtime = stopClock.Elapsed.TotalSeconds; // measured: from the freeze until the destination holds the final image
                }
            } // resumed here, before anything is emitted
            if (link is not null && options.RestorePath is { } restore)
            {
                status?.Invoke($"restoring {finalImage} into {restore} on {link.Computer}");
                try { link.Restore(Path.GetFileName(finalImage!), restore, cancel); }
                catch (EngineException ex)
                {
                    throw new EngineException(ex.Error, $"{ex.Message} ({link.Computer} holds the final image {finalImage}, complete and verified, with its chain; restore it there with Restore-MemoryImage.)", ex.Target, ex.Errno, ex);
                }
            }
            totalPages += finalSent;
            clock += downtime;
            yield return new PreCopyRound
            {
                Round = round + 1, Phase = PreCopyPhase.StopAndCopy, PagesSent = finalSent, BytesSent = finalBytes, TransferSeconds = finalTransfer,
                RoundSeconds = downtime, DirtyPages = 0, Rate = 0, Elapsed = emulated ? clock : total.Elapsed.TotalSeconds, PageSize = ps, Method = tracker.Method,
                ImagePath = finalImage, ToComputer = link?.Computer, Ranges = finalSet.Ranges.ToArray(),
            };
            yield return new PreCopySummary
            {
                ProcessId = source.ProcessId, Name = source.Name, Method = tracker.Method, LiveRounds = round,
                TotalPagesSent = totalPages, TotalBytesSent = link is null ? totalPages * (ulong)ps : linkBytes,
                Bandwidth = link is null ? options.Bandwidth : linkBytes / Math.Max(linkSeconds, 1e-9), ToComputer = link?.Computer, RestorePath = link is null ? null : options.RestorePath,
                EstimatedDowntime = downtime, Converged = reason == PreCopyStopReason.Converged, StopReason = reason, Reason = why,
                TotalSeconds = emulated ? clock : total.Elapsed.TotalSeconds, FinalImage = finalImage,
            };
        }
        finally
        {
            // A migration that failed before writing anything leaves no empty folder behind (written rounds are kept: a valid chain).
            if (created && Directory.Exists(options.Destination) && !Directory.EnumerateFileSystemEntries(options.Destination!).Any())
                Directory.Delete(options.Destination!);
            SafeDirectory.RemoveMade(madeFolders, DestinationWhat);
        }
    }

    /// <summary>Sends pages: writes an image (with a destination) or reads them, as a sender would; returns the pages sent.</summary>
    /// <remarks>
    /// A round image that lacks present pages it could not read (memfd_secret, memory served by the process's own
    /// userfaultfd, VM_PFNMAP mappings) is said at once through <paramref name="warn"/>: the chain it starts or
    /// continues is not valid (Test-MemoryImage), and a migration must not look complete when its images lack memory.
    /// Without a destination the first round (every present page) says the same of what it could not read.
    /// </remarks>
    private static (ulong Pages, string? Image) Send(IPageSource source, TrackingMethod method, DirtyPageSet? pages, PreCopyOptions options, int round, ref string? parent,
        Action<string>? warn, CancellationToken cancel)
    {
        if (options.Destination is { } dest)
        {
            var path = Path.Combine(dest, $"round-{round:D2}");
            var result = ImageWriter.Save(source, path, parent, method, pages, options.Selector, cancel: cancel);
            if (result.UnopenedObjectPages > 0)
                warn?.Invoke($"Round {round}: {result.UnopenedObjectPages} page(s) of memory that ends with process {source.ProcessId} (a memfd, shared anonymous or System V memory, a deleted file) are not mapped in the process and could not be read from the object, which this user cannot open (/proc/PID/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, and the process holds no descriptor of it) or whose file system's reads may never answer: the image {result.Path} lacks them, and the chain from it is not valid (Test-MemoryImage). Leave those mappings out with -Mapping, or migrate as root.");
            if (result.Manifest.UnreadablePages > result.UnopenedObjectPages)
                warn?.Invoke($"Round {round}: {result.Manifest.UnreadablePages - result.UnopenedObjectPages} present page(s) of process {source.ProcessId} could not be read (kept from other processes as memfd_secret is, served by the process's own userfaultfd, or in a mapping of device memory, VM_PFNMAP or VM_IO, which pagemap cannot show): the image {result.Path} lacks them, and the chain from it is not valid (Test-MemoryImage). Leave those mappings out with -Mapping, or do not migrate this process.");
            parent = path;
            return (result.Manifest.DataPages + result.Manifest.ZeroPages, path);
        }
        // What a sender reads: the present pages (round 1) or the tracker's (later rounds); and, as a save does, the pages of memory
        // that ends with the process that it does not map, from their object (UnnamedObjectPages): round 1 left them out of its
        // count (round 24: 1,000 pages of a memfd the process does not map), and a later round read a changed one through
        // /proc/PID/mem, which faults it into the process.
        var mappings = source.ReadMappings(false);
        var spans = PageWalk.DataSpans(mappings, options.Selector);
        using var objects = UnnamedObjectPages.For(source, spans);
        var present = new List<AddressRange>();
        var gaps = new List<AddressRange>();
        foreach (var r in PageWalk.PresentRegions(source, spans, cancel: cancel))
        {
            if (objects is not null)
            {
                gaps.AddRange(objects.GapsBelow(r.Start));
                objects.Covered(r.End);
            }
            if ((r.Categories & PageCategory.PfnZero) == 0) present.Add(new AddressRange(r.Start, r.End));
        }
        if (objects is not null) gaps.AddRange(objects.GapsBelow(ulong.MaxValue));
        List<AddressRange> ranges;
        ulong unseen = 0;
        if (pages is null)
        {
            ranges = present.Concat(gaps).OrderBy(r => r.Start).ToList();
            unseen = DeviceMappings.Pages(source, mappings, options.Selector);
        }
        else ranges = CutAt(pages.Ranges, gaps);
        ulong n = 0;
        ulong unreadable = PageWalk.ReadChunks(source, ranges, (_, data) => n += (ulong)(data.Length / source.PageSize), cancel: cancel,
            gone: pages is null ? PageWalk.GoneSince(source, spans) : null, objects: objects);
        // The first round (every present page) says what a sender could not read, as a round image's lack is said (round 22:
        // without -Destination nothing was); later rounds send what the tracker found, whose collection says what it could not read.
        if (pages is null && unreadable + unseen > 0)
            warn?.Invoke($"Round {round}: {unreadable + unseen} present page(s) of process {source.ProcessId} could not be read (kept from other processes as memfd_secret is, served by the process's own userfaultfd, or in a mapping of device memory, VM_PFNMAP, which pagemap cannot show): a destination would lack them. Leave those mappings out with -Mapping, or do not migrate this process.");
        if (pages is null && objects?.UnopenedPages is > 0 and var unopened)
            warn?.Invoke($"Round {round}: {unopened} page(s) of memory that ends with process {source.ProcessId} (a memfd, shared anonymous or System V memory, a deleted file: first {objects.FirstUnopened}) are not mapped in the process and could not be read from the object, which this user cannot open (/proc/PID/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, and the process holds no descriptor of it) or whose file system's reads may never answer: a destination would lack them. Leave those mappings out with -Mapping, or migrate as root.");
        return (n, null);
    }

    /// <summary><paramref name="ranges"/> (ascending) cut at the bounds of <paramref name="at"/> (ascending): no piece lies partly in one of those.</summary>
    internal static List<AddressRange> CutAt(IReadOnlyList<AddressRange> ranges, IReadOnlyList<AddressRange> at)
    {
        var cut = new List<AddressRange>();
        int j = 0;
        foreach (var r in ranges)
        {
            ulong s = r.Start;
            while (s < r.End)
            {
                while (j < at.Count && at[j].End <= s) j++;
                ulong end = j == at.Count ? r.End : Math.Min(r.End, at[j].Start > s ? at[j].Start : at[j].End);
                cut.Add(new AddressRange(s, end));
                s = end;
            }
        }
        return cut;
    }

    public static DirtyPageSet Union(DirtyPageSet a, DirtyPageSet b)
    {
        var all = a.Ranges.Concat(b.Ranges).OrderBy(r => r.Start).ToList();
        var m = new RangeListBuilder();
        foreach (var r in all) m.Add(r.Start, r.End);
        return new DirtyPageSet(a.Method, a.PageSize, m.Build(), a.PagesScanned + b.PagesScanned, a.CollectTime + b.CollectTime);
    }
}
