using System;
using System.Threading;

namespace SoftDirty.Workflows;

/// <summary>
/// A real link to a destination machine for a pre-copy migration: each round's image, written locally, is
/// sent there and written, verified and put in place as the next image of the destination's chain; the
/// transfer is timed. The engine knows nothing of how (the cmdlets implement it over a PowerShell session).
/// Failures are <see cref="EngineException"/>s: <see cref="EngineError.LinkBroken"/> when the link itself fails.
/// </summary>
internal interface IImageLink
{
    /// <summary>The destination, for messages and the summary (a computer name).</summary>
    string Computer { get; }

    /// <summary>Where the image <paramref name="name"/> lies on the destination (a path there).</summary>
    string PathOf(string name);

    /// <summary>
    /// Sends the image directory <paramref name="localImage"/> as <paramref name="name"/>: returns when the
    /// destination has verified it and put it in place. <paramref name="progress"/> gets the bytes sent and in all.
    /// </summary>
    LinkTransfer Send(string localImage, string name, Action<ulong, ulong>? progress, CancellationToken cancel);

    /// <summary>Restores the destination's image <paramref name="name"/> there into flat files in <paramref name="restorePath"/> (a path there).</summary>
    void Restore(string name, string restorePath, CancellationToken cancel);
}
