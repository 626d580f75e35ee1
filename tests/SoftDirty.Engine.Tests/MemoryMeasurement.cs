using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Tests that must run alone: those that measure managed memory (GC.GetTotalMemory), where another test
/// allocating at the same time would be counted as theirs, the kernel-vs-emulator comparison, and those that hold .NET's
/// child reaping (another test's hold would be counted as theirs).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryMeasurement
{
    public const string Name = "Memory measurement (not parallel)";
}
