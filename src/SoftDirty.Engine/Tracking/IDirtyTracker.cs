using System;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>
/// Which pages changed since the last reset. A tracker is armed by <see cref="Reset"/>; <see cref="Collect"/>
/// returns the pages changed since then and, with rearm, starts the next interval at once.
/// </summary>
internal interface IDirtyTracker : IDisposable
{
    /// <summary>The method this tracker uses.</summary>
    TrackingMethod Method { get; }
    /// <summary>The process tracked.</summary>
    IPageSource Source { get; }
    /// <summary>Why this method was chosen (for Auto) or what it relies on.</summary>
    string Description { get; }
    /// <summary>Starts an interval: what is in memory now counts as clean.</summary>
    void Reset(CancellationToken cancel = default);
    /// <summary>The pages changed since the last reset; with <paramref name="rearm"/> the next interval starts now.</summary>
    DirtyPageSet Collect(bool rearm = true, CancellationToken cancel = default);
}
