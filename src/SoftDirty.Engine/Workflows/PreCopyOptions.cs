using System;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

internal sealed class PreCopyOptions
{
    /// <summary>Bytes per second of the simulated link (unused with <see cref="Link"/>).</summary>
    public double Bandwidth { get; init; }
    public int MaxIterations { get; init; } = 30;
    /// <summary>Stop the live rounds once at most this many pages are dirty.</summary>
    public ulong StopThreshold { get; init; }
    public string? Destination { get; init; }
    /// <summary>Freeze for the stop-and-copy round (a real process: ptrace, see <see cref="PtraceFreeze"/>); off only for the current process.</summary>
    public bool FreezeFinal { get; init; } = true;
    public Func<MemoryMapping, bool>? Selector { get; init; }
    /// <summary>A real link: each round's image crosses it (<see cref="Destination"/> is then ignored: images are staged in a private temp folder) and it is timed instead of <see cref="Bandwidth"/>.</summary>
    public IImageLink? Link { get; init; }
    /// <summary>With <see cref="Link"/>: restore the final image on the destination into flat files there.</summary>
    public string? RestorePath { get; init; }
}
