using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using SoftDirty.Emulation;

namespace SoftDirty.TestKit.Benchmarks;

/// <summary>
/// Measurements of the emulator's speed targets, for a benchmark script: plain methods returning numbers
/// (best of <c>repeats</c> runs). Each builds its own emulated process.
/// </summary>
public static class EmulatorBenchmarks
{
    private const ulong GiB = 1UL << 30;
    private const int PagemapChunkEntries = 16 * 1024;

    /// <summary>An emulated process with <paramref name="gib"/> GiB of private anonymous memory, every page written.</summary>
    public static (EmulatedProcess Process, ulong Address, ulong Length) PopulatedProcess(double gib)
    {
        var p = new EmulatedProcess("benchmark");
        ulong length = (ulong)(gib * GiB) & ~(EmulatedProcess.PageBytes - 1);
        var m = p.Mmap(null, length, Protection.Read | Protection.Write);
        p.Write(m.Start, length, 1);
        return (p, m.Start, length);
    }

    /// <summary>Pagemap entries per second reading an all-present region of <paramref name="gib"/> GiB in 128 KiB chunks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double PagemapEntriesPerSecond(double gib = 1, int repeats = 5)
    {
        var (p, start, length) = PopulatedProcess(gib);
        var buffer = new PagemapEntry[PagemapChunkEntries];
        ulong pages = length >> EmulatedProcess.PageShift, first = start >> EmulatedProcess.PageShift;
        double best = double.MaxValue;
        for (int r = 0; r < Math.Max(1, repeats); r++)
        {
            var clock = Stopwatch.StartNew();
            for (ulong done = 0; done < pages;)
            {
                int n = (int)Math.Min((ulong)buffer.Length, pages - done);
                done += (ulong)p.ReadPagemap(first + done, buffer.AsSpan(0, n));
            }
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }
        return pages / best;
    }

    /// <summary>clear_refs "4" over <paramref name="gib"/> GiB of present pages against a bare vectorised AND-NOT over as many 64-bit words.</summary>
    public static BenchmarkRatio ClearRefs(double gib = 1, int repeats = 5)
    {
        var (p, _, length) = PopulatedProcess(gib);
        var words = new ulong[length >> EmulatedProcess.PageShift];
        Array.Fill(words, ulong.MaxValue);
        double emulator = double.MaxValue, bare = double.MaxValue;
        for (int r = 0; r < Math.Max(1, repeats); r++)
        {
            var clock = Stopwatch.StartNew();
            p.ClearRefs(ClearRefsType.SoftDirty);
            emulator = Math.Min(emulator, clock.Elapsed.TotalSeconds);
            clock.Restart();
            PageTable.AndNot(words, Pte.ClearSoftDirtyMask);
            bare = Math.Min(bare, clock.Elapsed.TotalSeconds);
        }
        return new BenchmarkRatio(emulator, bare);
    }

    /// <summary>
    /// A random workload (<paramref name="accesses"/> accesses, <paramref name="writeRatio"/> writes) over
    /// <paramref name="gib"/> GiB of written memory, against a bare loop that draws the same random pages
    /// and reads or writes one 64-bit word of each in an ordinary array of that size.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static BenchmarkRatio RandomWorkload(double gib = 1, long accesses = 10_000_000, double writeRatio = 0.3, int seed = 1, int repeats = 3)
    {
        var (p, start, length) = PopulatedProcess(gib);
        ulong pages = length >> EmulatedProcess.PageShift;
        const int wordsPerPage = (int)(EmulatedProcess.PageBytes / sizeof(ulong));
        var memory = new ulong[pages * wordsPerPage];
        for (ulong i = 0; i < (ulong)memory.LongLength; i += wordsPerPage) memory[i] = i;
        double emulator = double.MaxValue, bare = double.MaxValue;
        ulong sink = 0;
        for (int r = 0; r < Math.Max(1, repeats); r++)
        {
            var result = EmulatedWorkload.Run(p, start, length, WorkloadPattern.Random, accesses, writeRatio, seed);
            emulator = Math.Min(emulator, result.Elapsed.TotalSeconds);
            var stream = new PatternStream(WorkloadPattern.Random, pages, writeRatio, seed);
            var clock = Stopwatch.StartNew();
            for (long n = 0; n < accesses; n++)
            {
                stream.Next(out ulong page, out bool write);
                ref ulong word = ref memory[page * wordsPerPage];
                if (write) word = (ulong)n; else sink += word;
            }
            bare = Math.Min(bare, clock.Elapsed.TotalSeconds);
        }
        GC.KeepAlive(sink);
        return new BenchmarkRatio(emulator, bare);
    }

    /// <summary>
    /// Managed bytes (GC.GetTotalMemory(true) difference) of an emulated process with a
    /// <paramref name="mappingBytes"/> private anonymous mapping in which <paramref name="touchedPages"/>
    /// uniformly random pages (distinct or not, drawn with the workload generator) were written.
    /// </summary>
    public static long SparseMappingBytes(ulong mappingBytes = 1UL << 40, int touchedPages = 1_000_000, int seed = 1)
    {
        long before = GC.GetTotalMemory(true);
        var p = new EmulatedProcess("sparse");
        var m = p.Mmap(null, mappingBytes, Protection.Read | Protection.Write);
        EmulatedWorkload.Run(p, m.Start, mappingBytes, WorkloadPattern.Random, touchedPages, writeRatio: 1, seed);
        long after = GC.GetTotalMemory(true);
        GC.KeepAlive(p);
        return after - before;
    }
}
