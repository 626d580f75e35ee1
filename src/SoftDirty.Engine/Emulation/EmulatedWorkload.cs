using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

using SoftDirty.Emulation;

namespace SoftDirty;

/// <summary>How a workload picks its pages.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum WorkloadPattern
{
    /// <summary>Page 0, 1, 2, ... wrapping around.</summary>
    Sequential,
    /// <summary>Uniformly random pages.</summary>
    Random,
    /// <summary>90% of accesses to a hot 10% of the pages (a contiguous block at a seed-chosen place), 10% anywhere.</summary>
    HotSet,
    /// <summary>Zipf-like with s = 1: page k drawn with probability about 1/(k+1) (log-uniform inverse).</summary>
    Zipf,
}

/// <summary>What a workload did and what it cost.</summary>
public sealed class WorkloadResult
{
    public long Accesses { get; init; }
    public long Reads { get; init; }
    public long Writes { get; init; }
    /// <summary>The faults the workload took, by kind.</summary>
    public FaultCounts Faults { get; init; }
    public TimeSpan Elapsed { get; init; }
    public double AccessesPerSecond => Elapsed.TotalSeconds > 0 ? Accesses / Elapsed.TotalSeconds : 0;
    public override string ToString() => $"{Accesses} accesses ({Reads} reads, {Writes} writes), {Faults.Total} faults, {Elapsed.TotalMilliseconds:F1} ms";
}

/// <summary>A source of page accesses (page index within the range, and whether it writes).</summary>
internal interface IPageAccessStream
{
    void Next(out ulong pageIndex, out bool write);
}

/// <summary>The workload's random numbers: xorshift64*, deterministic for a seed, cheap enough for a hot loop.</summary>
internal struct WorkloadRandom
{
    private ulong _state;
    public WorkloadRandom(int seed) => _state = PageContent.SplitMix((ulong)seed) | 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Next()
    {
        _state ^= _state >> 12;
        _state ^= _state << 25;
        _state ^= _state >> 27;
        return _state * 0x2545F4914F6CDD1DUL;
    }

    /// <summary>Uniform in [0, n).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Below(ulong n) => Math.BigMul(Next(), n, out _);

    /// <summary>A write with probability threshold / 2^64.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Chance(ulong threshold) => Next() < threshold;

    public static ulong Threshold(double ratio) =>
        ratio <= 0 ? 0 : ratio >= 1 ? ulong.MaxValue : (ulong)(ratio * 18446744073709551616.0);
}

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

/// <summary>
/// Drives an emulated process with memory accesses: a synthetic pattern (<see cref="Run"/>) or a trace
/// (<see cref="Replay"/>). Each access touches one 8-byte word of a page with the kernel's fault rules; a
/// write stores new content. The hot path is a few array indexings per access (the leaf table of the last
/// page is cached); faults take the full path. Deterministic for a seed.
/// </summary>
public static class EmulatedWorkload
{
    /// <summary>
    /// Runs <paramref name="count"/> accesses over [address, address + length) with the pattern, writing
    /// with probability <paramref name="writeRatio"/>. The range is checked first: SegmentationFault (and
    /// nothing done) when it is not wholly mapped with the permissions the accesses need.
    /// </summary>
    public static WorkloadResult Run(EmulatedProcess process, ulong address, ulong length, WorkloadPattern pattern,
        long count, double writeRatio, int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(process);
        if (count < 0) throw new SoftDirtyException(SoftDirtyError.InvalidArgument, $"The access count {count} is negative.", count);
        if (double.IsNaN(writeRatio) || writeRatio < 0 || writeRatio > 1)
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument, $"The write ratio {writeRatio} is not between 0 and 1.", writeRatio);
        ulong firstPage = address >> EmulatedProcess.PageShift;
        ulong endPage = (address + length + EmulatedProcess.PageBytes - 1) >> EmulatedProcess.PageShift;
        if (length == 0 || endPage <= firstPage)
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument, "The workload range is empty (EINVAL).", length, Errno.EINVAL);
        var stream = new PatternStream(pattern, endPage - firstPage, writeRatio, seed);
        return process.RunAccesses(ref stream, firstPage, endPage, count, writeRatio > 0, writeRatio < 1);
    }

    /// <summary>
    /// Replays a trace of CSV lines "op,address[,length]" (op read or write; address decimal or 0x hex;
    /// length default 8). Blank lines and lines starting with '#' are skipped; a header line "op,..." too.
    /// All lines are parsed before any runs (InvalidArgument names a bad line); a faulting access throws
    /// SegmentationFault after the accesses before it.
    /// </summary>
    public static WorkloadResult Replay(EmulatedProcess process, IEnumerable<string> lines)
    {
        ArgumentNullException.ThrowIfNull(process);
        var ops = new List<(bool Write, ulong Address, ulong Length)>();
        int lineNumber = 0;
        foreach (var raw in lines)
        {
            lineNumber++;
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#' || line.StartsWith("op,", StringComparison.OrdinalIgnoreCase)) continue;
            var parts = line.Split(',');
            bool? write = parts[0].Trim().ToLowerInvariant() switch { "read" => false, "write" => true, _ => null };
            if (write == null || parts.Length > 3 || !TryParseNumber(parts.Length > 1 ? parts[1] : "", out ulong a)
                || !TryParseNumber(parts.Length > 2 ? parts[2] : DefaultTraceLength, out ulong len))
                throw new SoftDirtyException(SoftDirtyError.InvalidArgument,
                    $"Trace line {lineNumber} '{line}' is not 'read|write,address[,length]'.", lineNumber);
            ops.Add((write.Value, a, len));
        }
        var before = process.Faults;
        long reads = 0, writes = 0;
        var clock = Stopwatch.StartNew();
        foreach (var (w, a, len) in ops)
        {
            if (w) { process.Write(a, len); writes++; }
            else { process.Read(a, len); reads++; }
        }
        clock.Stop();
        return new WorkloadResult { Accesses = reads + writes, Reads = reads, Writes = writes, Faults = process.Faults - before, Elapsed = clock.Elapsed };
    }

    private const string DefaultTraceLength = "8";

    private static bool TryParseNumber(string text, out ulong value)
    {
        text = text.Trim();
        return text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? ulong.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value)
            : ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}

public sealed partial class EmulatedProcess
{
    /// <summary>The workload hot loop: dense leaves are accessed in place, everything else takes <see cref="TouchPage"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal WorkloadResult RunAccesses<T>(ref T stream, ulong firstPage, ulong endPage, long count, bool needWrite, bool needRead)
        where T : struct, IPageAccessStream
    {
        lock (_mem.Lock)
        {
            ulong address = firstPage << PageShift, length = (endPage - firstPage) << PageShift;
            if (needWrite) CheckAccess(address, length, write: true);
            if (needRead) CheckAccess(address, length, write: false);
            var before = new FaultCounts(_readFaults, _writeFaults, _cowFaults, _sdFaults, _uffdFaults, _swapIns);
            long writes = 0;
            ulong cachedLeaf = ulong.MaxValue;
            ulong[]? cached = null;
            var clock = Stopwatch.StartNew();
            for (long n = 0; n < count; n++)
            {
                stream.Next(out ulong index, out bool write);
                ulong page = firstPage + index;
                ulong leaf = page >> PageTable.LeafShift;
                if (write) writes++;
                if (leaf != cachedLeaf) { cached = _pt.TryGetDense(leaf); cachedLeaf = leaf; }
                if (cached != null)
                {
                    ref ulong entry = ref cached[page & PageTable.LeafIndexMask];
                    ulong v = entry;
                    if (write)
                    {
                        if ((v & (Pte.Present | Pte.Writable)) == (Pte.Present | Pte.Writable))
                        {
                            entry = v | Pte.Dirty | Pte.Accessed;
                            _mem.SetContent(v & Pte.FrameMask, _mem.NewContentVersion());
                            continue;
                        }
                    }
                    else if ((v & Pte.Present) != 0)
                    {
                        entry = v | Pte.Accessed;
                        continue;
                    }
                }
                ulong frame = TouchPage(page, write);
                if (write) _mem.SetContent(frame, _mem.NewContentVersion());
                cachedLeaf = ulong.MaxValue;
            }
            clock.Stop();
            var after = new FaultCounts(_readFaults, _writeFaults, _cowFaults, _sdFaults, _uffdFaults, _swapIns);
            return new WorkloadResult { Accesses = count, Reads = count - writes, Writes = writes, Faults = after - before, Elapsed = clock.Elapsed };
        }
    }
}
