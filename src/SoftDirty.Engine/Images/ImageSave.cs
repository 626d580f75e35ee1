using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// Save-MemoryImage's work, in its order: the destination is checked (the folders on the way made) before the process is
/// touched; the parent read and checked to be this process's; the changed pages found (soft-dirty cleared or the write
/// tracking reset, for the next increment); the process frozen where asked; the image written (<see cref="ImageWriter.Save"/>).
/// A save that fails leaves no folder it made on the way (its own folder is never made: <see cref="PrivateOutput"/>).
/// </summary>
internal static class ImageSave
{
    /// <summary>How errors name the destination.</summary>
    private const string DestinationWhat = "The image directory";

    public static ImageSaveResult Run(IPageSource source, ImageSaveRequest request, CancellationToken cancel)
    {
        // The destination first, before the process is touched: a save refused for it (ImageExists, UnsafeDestination) had
        // frozen the process, cleared its soft-dirty or reset its write tracking (the chain's next increment then compared
        // every page), and injected and enabled a write tracking that stayed in it.
        var madeFolders = new List<string>();
        SafeFiles.CheckDestination(request.Path, DestinationWhat, madeFolders);
        try { return Save(source, request, cancel); }
        catch
        {
            SafeDirectory.RemoveMade(madeFolders, DestinationWhat);
            throw;
        }
    }

    private static ImageSaveResult Save(IPageSource source, ImageSaveRequest request, CancellationToken cancel)
    {
        var parent = request.Parent;
        ImageManifest? parentManifest = parent is null ? null : ImageReader.ReadManifest(parent);
        // Whose image the parent is, before the tracking is collected (which changes the process's tracking).
        if (parentManifest is not null) ImageWriter.CheckParentProcess(parentManifest, source, System.IO.Path.Combine(parent!, ImageFormat.ManifestFile), parent!);
        // A chain saved before chains had a page-hash key goes on with the fixed one, which a process can collide on purpose.
        if (parentManifest is { PageKey: null })
            request.Warn?.Invoke($"The chain of {parent} has no page-hash key (it was saved by an earlier version): this increment compares pages by a hash that the process could keep while changing a page. Save a full image to start a keyed chain.");
        var method = ImageTracking.Resolve(source, request.Method);
        var selector = request.Select?.Invoke();
        var lap = Stopwatch.StartNew();
        using (request.Freeze ? ProcessFreeze.Freeze(source, cancel) : null)
        {
            var frozen = lap.Elapsed;
            var candidates = ImageTracking.Candidates(source, method, parentManifest, selector, request.Verify, out var armed, out var epoch, out var reset, request.Warn, cancel);
            var tracked = lap.Elapsed - frozen;
            request.Verbose?.Invoke(candidates is null ? $"{method}: every present page is compared" : $"{method}: {candidates.PageCount} candidate pages");
            var result = ImageWriter.Save(source, request.Path, parent, method, candidates, selector, request.Freeze, armed,
                request.Progress, cancel, epoch, reset, parentManifest);
            request.Verbose?.Invoke($"Saved in {lap.Elapsed.TotalMilliseconds:N1} ms: {(request.Freeze ? $"freeze {frozen.TotalMilliseconds:N1} ms, " : "")}" +
                $"tracking {tracked.TotalMilliseconds:N1} ms, {string.Join(", ", result.Phases)}.");
            return result;
        }
    }
}
