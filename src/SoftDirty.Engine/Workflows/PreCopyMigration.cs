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
/// real process, emulated time through <see cref="IWorkloadDriver"/> for an emulated one).
/// </summary>
internal static class PreCopyMigration
{
    public static IEnumerable<object> Run(IDirtyTracker tracker, PreCopyOptions options, CancellationToken cancel, Action<string>? status = null)
    {
        if (options.Bandwidth <= 0) throw new EngineException(EngineError.InvalidArgument, "The bandwidth must be more than 0 bytes per second.", options.Bandwidth);
        var source = tracker.Source;
        bool emulated = source is IWorkloadDriver;
        int ps = source.PageSize;
        var total = Stopwatch.StartNew();
        double clock = 0;
        string? parent = null;
        bool created = false;
        if (options.Destination is { } dest && !SafeFiles.CheckDestination(Path.GetFullPath(dest), "The migration destination"))
        {
            SafeFiles.CreateDirectory(Path.GetFullPath(dest));
            created = true;
        }
        try
        {
            tracker.Reset(cancel);
            DirtyPageSet? pending = null; // null: everything
            ulong totalPages = 0;
            int round = 0, growing = 0;
            ulong lastDirty = ulong.MaxValue;
            PreCopyStopReason reason;
            string why;
            while (true)
            {
                round++;
                status?.Invoke($"round {round}: sending {(pending is null ? "every present page" : pending.PageCount + " dirty pages")}");
                var roundClock = Stopwatch.StartNew();
                var (sent, image) = Send(source, tracker.Method, pending, options, round, ref parent, cancel);
                double transfer = sent * (double)ps / options.Bandwidth;
                double roundSeconds;
                if (emulated) { IntervalClock.Wait(source, TimeSpan.FromSeconds(transfer), cancel); roundSeconds = transfer; }
                else
                {
                    IntervalClock.Wait(source, TimeSpan.FromSeconds(Math.Max(0, transfer - roundClock.Elapsed.TotalSeconds)), cancel);
                    roundSeconds = roundClock.Elapsed.TotalSeconds;
                }
                var dirty = tracker.Collect(rearm: true, cancel);
                clock += roundSeconds;
                totalPages += sent;
                yield return new PreCopyRound
                {
                    Round = round, Phase = PreCopyPhase.Live, PagesSent = sent, BytesSent = sent * (ulong)ps, TransferSeconds = transfer,
                    RoundSeconds = roundSeconds, DirtyPages = dirty.PageCount, Rate = dirty.PageCount / Math.Max(roundSeconds, 1e-6),
                    Elapsed = emulated ? clock : total.Elapsed.TotalSeconds, PageSize = ps, Method = dirty.Method, ImagePath = image, Ranges = dirty.Ranges.ToArray(),
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
            using (options.FreezeFinal ? ProcessFreeze.Freeze(source, cancel) : null)
            {
                var extra = tracker.Collect(rearm: true, cancel);
                finalSet = Union(pending!, extra);
                double findSeconds = stopClock.Elapsed.TotalSeconds;
                (finalSent, finalImage) = Send(source, tracker.Method, finalSet, options, round + 1, ref parent, cancel);
                finalTransfer = finalSent * (double)ps / options.Bandwidth;
                downtime = findSeconds + finalTransfer;
            } // resumed here, before anything is emitted
            totalPages += finalSent;
            clock += downtime;
            yield return new PreCopyRound
            {
                Round = round + 1, Phase = PreCopyPhase.StopAndCopy, PagesSent = finalSent, BytesSent = finalSent * (ulong)ps, TransferSeconds = finalTransfer,
                RoundSeconds = downtime, DirtyPages = 0, Rate = 0, Elapsed = emulated ? clock : total.Elapsed.TotalSeconds, PageSize = ps, Method = tracker.Method,
                ImagePath = finalImage, Ranges = finalSet.Ranges.ToArray(),
            };
            yield return new PreCopySummary
            {
                ProcessId = source.ProcessId, Name = source.Name, Method = tracker.Method, LiveRounds = round,
                TotalPagesSent = totalPages, TotalBytesSent = totalPages * (ulong)ps, Bandwidth = options.Bandwidth,
                EstimatedDowntime = downtime, Converged = reason == PreCopyStopReason.Converged, StopReason = reason, Reason = why,
                TotalSeconds = emulated ? clock : total.Elapsed.TotalSeconds, FinalImage = finalImage,
            };
        }
        finally
        {
            // A migration that failed before writing anything leaves no empty folder behind (written rounds are kept: a valid chain).
            if (created && Directory.Exists(options.Destination) && !Directory.EnumerateFileSystemEntries(options.Destination!).Any())
                Directory.Delete(options.Destination!);
        }
    }

    /// <summary>Sends pages: writes an image (with a destination) or reads them, as a sender would; returns the pages sent.</summary>
    private static (ulong Pages, string? Image) Send(IPageSource source, TrackingMethod method, DirtyPageSet? pages, PreCopyOptions options, int round, ref string? parent, CancellationToken cancel)
    {
        if (options.Destination is { } dest)
        {
            var path = Path.Combine(dest, $"round-{round:D2}");
            var result = ImageWriter.Save(source, path, parent, method, pages, options.Selector, cancel: cancel);
            parent = path;
            return (result.Manifest.DataPages + result.Manifest.ZeroPages, path);
        }
        IEnumerable<AddressRange> ranges;
        if (pages is null)
        {
            var spans = PageWalk.DataSpans(source.ReadMappings(false), options.Selector);
            ranges = PageWalk.PresentRegions(source, spans, cancel).Where(r => (r.Categories & PageCategory.PfnZero) == 0).Select(r => new AddressRange(r.Start, r.End)).ToList();
        }
        else ranges = pages.Ranges;
        ulong n = 0;
        PageWalk.ReadChunks(source, ranges, (_, data) => n += (ulong)(data.Length / source.PageSize), cancel: cancel);
        return (n, null);
    }

    public static DirtyPageSet Union(DirtyPageSet a, DirtyPageSet b)
    {
        var all = a.Ranges.Concat(b.Ranges).OrderBy(r => r.Start).ToList();
        var m = new RangeListBuilder();
        foreach (var r in all) m.Add(r.Start, r.End);
        return new DirtyPageSet(a.Method, a.PageSize, m.Build(), a.PagesScanned + b.PagesScanned, a.CollectTime + b.CollectTime);
    }
}
