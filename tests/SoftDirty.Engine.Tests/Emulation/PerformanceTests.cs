using System;
using SoftDirty.Emulation;
using SoftDirty.TestKit.Benchmarks;
using Xunit;
using Xunit.Abstractions;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// Memory bound of the sparse case, and the benchmark helpers on small sizes. Set SOFTDIRTY_BENCH=1 to run
/// the full-size measurements (1 GiB) and print them.
/// </summary>
[Collection(MemoryMeasurement.Name)]
public class PerformanceTests
{
    private readonly ITestOutputHelper _output;
    public PerformanceTests(ITestOutputHelper output) => _output = output;

    private static bool FullSize => Environment.GetEnvironmentVariable("SOFTDIRTY_BENCH") == "1";

    /// <summary>1 TiB mapping, 1,000,000 uniformly random page writes (the hard case: ~86% of the 524,288 leaves touched, ~2 pages each).</summary>
    [Fact]
    public void SparseTebibyteWithMillionRandomPagesFitsIn24MB()
    {
        long bytes = EmulatorBenchmarks.SparseMappingBytes(1UL << 40, 1_000_000, seed: 7);
        _output.WriteLine($"1 TiB, 1M random written pages: {bytes / 1e6:F1} MB managed");
        Assert.True(bytes <= 24_000_000, $"{bytes} bytes");
    }

    [Fact]
    public void HugeSparseMappingCostsOnlyTouchedPages()
    {
        long before = GC.GetTotalMemory(true);
        var p = new EmulatedProcess();
        ulong a = p.Mmap(null, 64UL << 40, Sd.RW).Start;
        for (ulong i = 0; i < 1000; i++) p.Write(a + i * (64UL << 30), 8);
        Assert.Equal(64UL << 40, p.ReadMappings(true)[0].Size);
        long after = GC.GetTotalMemory(true);
        GC.KeepAlive(p);
        Assert.True(after - before < 8_000_000, $"{after - before} bytes");
    }

    [Fact]
    public void BenchmarkHelpersRun()
    {
        double gib = FullSize ? 1 : 1.0 / 64;
        double rate = EmulatorBenchmarks.PagemapEntriesPerSecond(gib, FullSize ? 5 : 1);
        var clear = EmulatorBenchmarks.ClearRefs(gib, FullSize ? 9 : 1);
        var work = EmulatorBenchmarks.RandomWorkload(gib, FullSize ? 20_000_000 : 100_000, 0.3, 1, FullSize ? 3 : 1);
        _output.WriteLine($"pagemap read: {rate / 1e6:F0} M entries/s");
        _output.WriteLine($"clear_refs 4: {clear}");
        _output.WriteLine($"random workload 30% writes: {work}");
        Assert.True(rate > 0 && clear.Ratio > 0 && work.Ratio > 0);
        if (FullSize) Console.WriteLine($"BENCH pagemap {rate / 1e6:F0} M/s; clear {clear}; workload {work}");
    }
}
