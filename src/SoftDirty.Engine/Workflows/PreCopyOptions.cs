using System;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

internal sealed class PreCopyOptions
{
    /// <summary>Bytes per second of the simulated link.</summary>
    public double Bandwidth { get; init; }
    public int MaxIterations { get; init; } = 30;
    /// <summary>Stop the live rounds once at most this many pages are dirty.</summary>
    public ulong StopThreshold { get; init; }
    public string? Destination { get; init; }
    /// <summary>Freeze for the stop-and-copy round (a real process: ptrace, see <see cref="PtraceFreeze"/>); off only for the current process.</summary>
    public bool FreezeFinal { get; init; } = true;
    public Func<MemoryMapping, bool>? Selector { get; init; }
}
