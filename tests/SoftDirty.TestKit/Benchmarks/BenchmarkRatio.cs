namespace SoftDirty.TestKit.Benchmarks;

/// <summary>A timing of the emulator against a bare loop doing the same amount of plain work.</summary>
public readonly record struct BenchmarkRatio(double EmulatorSeconds, double BareSeconds)
{
    /// <summary>Emulator time / bare time (lower is better).</summary>
    public double Ratio => BareSeconds > 0 ? EmulatorSeconds / BareSeconds : double.PositiveInfinity;
    /// <summary>Both timings and the ratio, in milliseconds.</summary>
    public override string ToString() => $"emulator {EmulatorSeconds * 1e3:F2} ms, bare {BareSeconds * 1e3:F2} ms, ratio {Ratio:F2}";
}
