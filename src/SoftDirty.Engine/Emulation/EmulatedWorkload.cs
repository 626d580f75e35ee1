using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;

namespace SoftDirty.Emulation;

/// <summary>
/// Drives an emulated process with memory accesses: a synthetic pattern (<see cref="Run"/>) or a trace
/// (<see cref="Replay"/>). Each access touches one 8-byte word of a page with the kernel's fault rules; a
/// write stores new content. The hot path is a few array indexings per access (the leaf table of the last
/// page is cached); faults take the full path. Deterministic for a seed.
/// </summary>
internal static class EmulatedWorkload
{
    /// <summary>
    /// Runs <paramref name="count"/> accesses over [address, address + length) with the pattern, writing
    /// with probability <paramref name="writeRatio"/>. The range is checked first: SegmentationFault (and
    /// nothing done) when it is not wholly mapped with the permissions the accesses need.
    /// </summary>
    public static WorkloadResult Run(EmulatedProcess process, ulong address, ulong length, WorkloadPattern pattern,
        long count, double writeRatio, int seed = 1, System.Threading.CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(process);
        if (count < 0) throw new EngineException(EngineError.InvalidArgument, $"The access count {count} is negative.", count);
        if (double.IsNaN(writeRatio) || writeRatio < 0 || writeRatio > 1)
            throw new EngineException(EngineError.InvalidArgument, $"The write ratio {writeRatio} is not between 0 and 1.", writeRatio);
        ulong firstPage = address >> EmulatedProcess.PageShift;
        ulong endPage = (address + length + EmulatedProcess.PageBytes - 1) >> EmulatedProcess.PageShift;
        if (length == 0 || endPage <= firstPage)
            throw new EngineException(EngineError.InvalidArgument, "The workload range is empty (EINVAL).", length, Errno.EINVAL);
        var stream = new PatternStream(pattern, endPage - firstPage, writeRatio, seed);
        return process.RunAccesses(ref stream, firstPage, endPage, count, writeRatio > 0, writeRatio < 1, cancel);
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
                throw new EngineException(EngineError.InvalidArgument,
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
