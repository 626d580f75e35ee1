using System;
using System.Runtime.CompilerServices;

namespace SoftDirty.Emulation;

internal struct PatternStream : IPageAccessStream
{
    private const double HotFraction = 0.1, HotShare = 0.9;
    private WorkloadRandom _random;
    private readonly WorkloadPattern _pattern;
    private readonly ulong _pages, _writeThreshold, _hotStart, _hotPages, _hotThreshold;
    private readonly double _logPages;
    private ulong _next;

    public PatternStream(WorkloadPattern pattern, ulong pages, double writeRatio, int seed)
    {
        _random = new WorkloadRandom(seed);
        _pattern = pattern;
        _pages = pages;
        _writeThreshold = WorkloadRandom.Threshold(writeRatio);
        _hotPages = Math.Max(1, (ulong)(pages * HotFraction));
        _hotStart = _random.Below(pages - _hotPages + 1);
        _hotThreshold = WorkloadRandom.Threshold(HotShare);
        _logPages = Math.Log(pages + 1);
        _next = 0;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Next(out ulong pageIndex, out bool write)
    {
        switch (_pattern)
        {
            case WorkloadPattern.Sequential:
                pageIndex = _next;
                if (++_next == _pages) _next = 0;
                break;
            case WorkloadPattern.HotSet:
                pageIndex = _random.Chance(_hotThreshold) ? _hotStart + _random.Below(_hotPages) : _random.Below(_pages);
                break;
            case WorkloadPattern.Zipf:
                double u = (_random.Next() >> 11) * (1.0 / (1UL << 53));
                pageIndex = Math.Min(_pages - 1, (ulong)Math.Exp(u * _logPages) - 1);
                break;
            default:
                pageIndex = _random.Below(_pages);
                break;
        }
        write = _random.Chance(_writeThreshold);
    }
}
