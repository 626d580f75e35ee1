using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Tests that measure managed memory (GC.GetTotalMemory) run alone: another test allocating at the same
/// time would be counted as theirs.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryMeasurement
{
    public const string Name = "Memory measurement (not parallel)";
}
