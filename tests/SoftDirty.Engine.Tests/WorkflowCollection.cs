using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// The workflow tests allocate a lot (images, emulated processes, hash snapshots): they run on their own,
/// after the parallel tests, so that tests measuring the process's memory (the emulator's) are not disturbed.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class WorkflowCollection
{
    public const string Name = "Workflows (not parallel)";
}
