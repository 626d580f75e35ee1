using System;
using System.Runtime.CompilerServices;

namespace SoftDirty.Emulation;

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
