using System;
using System.Diagnostics;
using SoftDirty.Tracking;

namespace SoftDirty.TestKit.Benchmarks;

/// <summary>
/// WriteProtect and Hash trackers of one range of another process, for tests/BenchWriteTracking.ps1's
/// rounds: the script drives the target's writes between the timed steps.
/// </summary>
public sealed class RemoteTrackerTiming : IDisposable
{
    private readonly ProcPageSource _source;
    private readonly Func<MemoryMapping, bool> _selector;
    private WriteProtectTracker? _writeProtect;
    private HashTracker? _hash;

    /// <summary>Opens process <paramref name="processId"/>; the trackers select the mappings that overlap [start, end).</summary>
    public RemoteTrackerTiming(int processId, ulong start, ulong end)
    {
        _source = ProcPageSource.Open(processId);
        _selector = m => m.Start < end && m.End > start;
    }

    /// <summary>Milliseconds to enable WriteProtect from outside (create the tracker and reset it).</summary>
    public double EnableWriteProtectMs() => EnableWriteProtectMs(serialProtect: false);

    /// <summary>Milliseconds to enable WriteProtect; with <paramref name="serialProtect"/> the initial write-protect runs as one piece at a time (the baseline of its parallel run).</summary>
    public double EnableWriteProtectMs(bool serialProtect)
    {
        int parallelism = WriteProtectTracker.ProtectParallelism;
        if (serialProtect) WriteProtectTracker.ProtectParallelism = 1;
        var steps = new SoftDirty.Injection.InjectionSteps();
        SoftDirty.Injection.InjectionSteps.Current = steps;
        var clock = Stopwatch.StartNew();
        try
        {
            _writeProtect = new WriteProtectTracker(_source, _selector);
            _writeProtect.Reset();
            return clock.Elapsed.TotalMilliseconds;
        }
        finally
        {
            WriteProtectTracker.ProtectParallelism = parallelism;
            SoftDirty.Injection.InjectionSteps.Current = null;
            LastEnableSteps = steps.Milliseconds;
        }
    }

    /// <summary>The split of the last <see cref="EnableWriteProtectMs(bool)"/> into its steps (milliseconds per step).</summary>
    public System.Collections.Generic.Dictionary<string, double>? LastEnableSteps { get; private set; }

    /// <summary>Takes the Hash tracker's first snapshot (untimed).</summary>
    public void SnapshotHash()
    {
        _hash = new HashTracker(_source, PageHashAlgorithm.Fast128, _selector);
        _hash.Reset();
    }

    /// <summary>Milliseconds of one WriteProtect collection (rearmed).</summary>
    public double CollectWriteProtectMs() => CollectMs(_writeProtect ?? throw new InvalidOperationException("Enable WriteProtect first."));

    /// <summary>Milliseconds of one Hash collection (rearmed).</summary>
    public double CollectHashMs() => CollectMs(_hash ?? throw new InvalidOperationException("Take the Hash snapshot first."));

    private static double CollectMs(IDirtyTracker tracker)
    {
        var clock = Stopwatch.StartNew();
        _ = tracker.Collect(rearm: true);
        return clock.Elapsed.TotalMilliseconds;
    }

    /// <summary>Ends a round: both trackers disposed (WriteProtect switched off in the target).</summary>
    public void EndRound()
    {
        _hash?.Dispose(); _hash = null;
        _writeProtect?.Dispose(); _writeProtect = null;
    }

    /// <summary>Ends the round and closes the process.</summary>
    public void Dispose()
    {
        EndRound();
        _source.Dispose();
    }
}
