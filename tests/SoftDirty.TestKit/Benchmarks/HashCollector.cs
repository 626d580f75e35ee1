using System;
using SoftDirty.Tracking;

namespace SoftDirty.TestKit.Benchmarks;

/// <summary>
/// The Hash method on a range of another process, reset once on creation: each <see cref="Collect"/> is one
/// collection (a new snapshot of every present page, compared with the last), the subject of a bench ratio.
/// </summary>
public sealed class HashCollector : IDisposable
{
    private readonly ProcPageSource _source;
    private readonly HashTracker _tracker;
    private readonly ulong _pages;

    /// <summary>Tracks the mappings of process <paramref name="processId"/> that overlap [start, start + length).</summary>
    public HashCollector(int processId, ulong start, ulong length)
    {
        _source = ProcPageSource.Open(processId);
        _tracker = new HashTracker(_source, PageHashAlgorithm.Fast128, m => m.Start < start + length && m.End > start);
        _pages = length / (ulong)_source.PageSize;
        _tracker.Reset();
    }

    /// <summary>One collection; returns the pages it reported; throws when it hashed fewer pages than the range holds.</summary>
    public ulong Collect()
    {
        var set = _tracker.Collect();
        if (_tracker.Snapshot!.PageCount < _pages)
            throw new InvalidOperationException($"hashed {_tracker.Snapshot.PageCount} pages of {_pages}");
        return set.PageCount;
    }

    /// <summary>Closes the process's /proc files.</summary>
    public void Dispose()
    {
        _tracker.Dispose();
        _source.Dispose();
    }
}
