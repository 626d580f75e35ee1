using System.IO;
using System.Linq;
using Xunit;

namespace SoftDirty.Tests.Proc;

/// <summary>
/// Round 29: <see cref="ProcLink"/> reads a link whole, however long (readlink cuts a link at the room it is given without
/// a word: a deleted program's path in /proc/PID/exe can be thousands of bytes), and says why there is none.
/// </summary>
public sealed class ProcLinkTests
{
    [Theory]
    [InlineData(10)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(257)]
    [InlineData(3000)]
    public void ALinkIsReadWholeWhateverItsLength(int length)
    {
        using var scratch = new ScratchFolder("r29-proclink");
        // A target of that many bytes: segments of a name a file system takes (at most 255 bytes each).
        var target = "/" + string.Join('/', Enumerable.Range(0, length / 100 + 1).Select(i => new string((char)('a' + i % 26), 99)));
        target = target[..length];
        var link = Path.Combine(scratch.Path, "link");
        File.CreateSymbolicLink(link, target);
        Assert.Equal(target, ProcLink.Read(link, out int errno));
        Assert.Equal(0, errno);
    }

    [Fact]
    public void NoLinkIsNullWithItsErrno()
    {
        using var scratch = new ScratchFolder("r29-proclink");
        var file = Path.Combine(scratch.Path, "file");
        File.WriteAllText(file, "");
        Assert.Null(ProcLink.Read(file, out int notLink));
        Assert.Equal(Errno.EINVAL, notLink);
        Assert.Null(ProcLink.Read(Path.Combine(scratch.Path, "absent"), out int absent));
        Assert.Equal(Errno.ENOENT, absent);
    }

    [Fact]
    public void ThisProcessesNamespaceLinkReads() =>
        Assert.StartsWith("pid:[", ProcLink.Read("/proc/self/ns/pid", out _));
}
