using System.IO;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 29: every ResourceLimit says what failed, what that leaves undone, and the remedy its errno calls for: out of
/// memory was told to raise the open-file limit (ulimit -n) in each of the places that built the error its own way.
/// </summary>
public sealed class ResourceLimitErrorTests
{
    [Theory]
    [InlineData(Errno.EMFILE, "ulimit -n")]
    [InlineData(Errno.ENFILE, "fs.file-max")]
    [InlineData(Errno.ENOMEM, "memory is free")]
    public void TheRemedyIsTheErrnos(int errno, string remedy)
    {
        var ex = ResourceLimitError.For("Opening /proc/1/statm failed", errno, "Nothing is known of the process from it", 1);
        Assert.Equal(EngineError.ResourceLimit, ex.Error);
        Assert.Equal(errno, ex.Errno);
        Assert.StartsWith($"Opening /proc/1/statm failed: {Errno.Name(errno)}", ex.Message);
        Assert.Contains(remedy, ex.Message);
        if (errno != Errno.EMFILE) Assert.DoesNotContain("ulimit -n", ex.Message);
        Assert.EndsWith(".", ex.Message);
    }

    [Theory]
    [InlineData("Creating /x failed: ENOMEM: Cannot allocate memory")]
    [InlineData("Creating /x failed: fsync said ENOMEM; it was removed again.")]
    public void ARemedyFollowsAMessageAsASentence(string message)
    {
        var said = ResourceLimitError.WithRemedy(message, Errno.ENOMEM);
        Assert.Equal(message.TrimEnd('.') + ". Try again once memory is free.", said);
    }

    [Fact]
    public void AProcReadOutOfMemoryIsResourceLimitWithTheMemoryRemedy()
    {
        var failure = new IOException("Cannot allocate memory", Errno.ENOMEM);
        var ex = Assert.Throws<EngineException>(() => ProcReadFailure.ThrowIfLimit(failure, "/proc/1/status"));
        Assert.Equal(EngineError.ResourceLimit, ex.Error);
        Assert.Contains("memory is free", ex.Message);
        Assert.DoesNotContain("ulimit -n", ex.Message);
        ProcReadFailure.ThrowIfLimit(new IOException("No such process", Errno.ESRCH), "/proc/1/status"); // gone: no error here
    }
}
