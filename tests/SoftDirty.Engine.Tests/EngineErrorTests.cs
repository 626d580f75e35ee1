using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>Every error id carries its category in the engine, and a kernel errno has one id from /proc and the emulator.</summary>
public class EngineErrorTests
{
    [Fact]
    public void EveryErrorHasAnExplicitCategory()
    {
        Assert.Empty(CategorizedAttribute.Uncategorized());
        foreach (var error in Enum.GetValues<EngineError>())
            Assert.True(CategorizedAttribute.Of(error) != FailureCategory.NotSpecified, $"{error} has no category");
    }

    /// <summary>
    /// Round 26 (Fs): a write to a read-only file system or past a quota said "errno 30" and "errno 122"; every errno a
    /// file the module writes may meet is said by its name.
    /// </summary>
    [Theory]
    [InlineData(Errno.EROFS, "EROFS")]
    [InlineData(Errno.EDQUOT, "EDQUOT")]
    [InlineData(Errno.ENAMETOOLONG, "ENAMETOOLONG")]
    [InlineData(Errno.EMFILE, "EMFILE")]
    [InlineData(Errno.ENFILE, "ENFILE")]
    [InlineData(Errno.ENXIO, "ENXIO")]
    public void AnErrnoAFileWriteMayMeetIsNamed(int errno, string name)
    {
        Assert.Equal(name, Errno.Name(errno));
        Assert.StartsWith(name + ": ", Errno.Describe(errno));
    }

    [Fact]
    public void AValueOutsideTheEnumIsNotSpecified()
    {
        var none = (EngineError)Enum.GetValues<EngineError>().Cast<int>().Max() + 1;
        Assert.Equal(FailureCategory.NotSpecified, CategorizedAttribute.Of(none));
    }

    /// <summary>clear_refs text the kernel rejects (kstrtoint, then the type check): one ErrorId and errno from both sides of the seam.</summary>
    [HostTheory]
    [InlineData("9\n", Errno.EINVAL)]
    [InlineData("soft\n", Errno.EINVAL)]
    [InlineData("99999999999\n", Errno.ERANGE)]
    public void RejectedClearRefsIsOneErrorFromProcAndTheEmulator(string text, int errno)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(text);
        using var emulated = new EmulatedProcess();
        using var real = ProcPageSource.Open(Environment.ProcessId);
        var fromEmulator = Assert.Throws<EngineException>(() => emulated.WriteClearRefs(bytes));
        var fromProc = Assert.Throws<EngineException>(() => real.WriteClearRefs(bytes));
        Assert.Equal(EngineError.InvalidArgument, fromProc.Error);
        Assert.Equal(fromProc.Error, fromEmulator.Error);
        Assert.Equal(errno, fromProc.Errno);
        Assert.Equal(errno, fromEmulator.Errno);
    }
}
