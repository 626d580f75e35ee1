using System;
using System.Threading;

namespace SoftDirty.Tracking;

/// <summary>
/// A page source that drives its own workload in emulated time (the emulator). Watch-DirtyPage and
/// Invoke-PreCopyMigration advance it between samples and rounds instead of sleeping; a real process lacks it.
/// </summary>
internal interface IWorkloadDriver
{
    /// <summary>Runs the workload for <paramref name="interval"/> of emulated time.</summary>
    void Advance(TimeSpan interval, CancellationToken cancel);
}
