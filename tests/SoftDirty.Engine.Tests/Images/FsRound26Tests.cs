using System;
using System.IO;
using System.Linq;
using System.Text;
using SoftDirty.Images;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Round 26 (Fs): file systems and their limits. A file written whole under a temporary name beside it (a chart) must take
/// every name the file system takes: the temporary name <c>.NAME.GUID.tmp</c> of a 218-255 byte name was past NAME_MAX, and
/// the write failed with ENAMETOOLONG for a legal name.
/// </summary>
public class FsRound26Tests
{
    /// <summary>217 bytes: the longest name whose temporary file fitted before the fix; 255: NAME_MAX; 85 CJK characters: 255 bytes of UTF-8.</summary>
    [Theory]
    [InlineData(85, '\u4e2d'), InlineData(217, 'b'), InlineData(218, 'c'), InlineData(255, 'd')]
    public void AFileOfAnyLegalNameIsWrittenWhole(int length, char c)
    {
        using var scratch = new ScratchFolder("r26fs");
        using var dir = SafeDirectory.Open(scratch.Path, "The test folder", scratch.Path, create: false)!;
        var name = new string(c, length);
        File.WriteAllText(Path.Combine(scratch.Path, name), "OLD");
        SafeFiles.WriteReplacing(dir, name, Encoding.ASCII.GetBytes("NEW"));
        Assert.Equal("NEW", File.ReadAllText(Path.Combine(scratch.Path, name)));
        Assert.Equal(new[] { name }, Directory.EnumerateFileSystemEntries(scratch.Path).Select(Path.GetFileName).ToArray());
    }

    [Fact]
    public void AHiddenNameKeepsItsSuffixAndNeverSplitsASurrogatePair()
    {
        var name = string.Concat(Enumerable.Repeat("\U0001F600", 63)); // 4 bytes each: 252 bytes
        var hidden = SafeFiles.HiddenName(name, ".0123456789abcdef0123456789abcdef.tmp");
        Assert.InRange(Encoding.UTF8.GetByteCount(hidden), 1, 255);
        Assert.StartsWith(".", hidden, StringComparison.Ordinal);
        Assert.EndsWith(".0123456789abcdef0123456789abcdef.tmp", hidden, StringComparison.Ordinal);
        Assert.Equal(hidden, Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(hidden)));
        Assert.Equal(".short.x", SafeFiles.HiddenName("short", ".x"));
    }
}
