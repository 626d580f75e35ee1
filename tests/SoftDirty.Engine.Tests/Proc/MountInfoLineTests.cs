using Xunit;

namespace SoftDirty.Tests.Proc;

/// <summary>
/// Round 34 (Lead): the one parser of /proc/PID/mountinfo lines, which the memory cgroup guard uses to find where this mount
/// namespace mounts the memory hierarchy (a container mounts it elsewhere, or a subtree of it only).
/// </summary>
public sealed class MountInfoLineTests
{
    [Fact]
    public void ACgroupV1MountNamesItsControllersInItsSuperOptions()
    {
        var m = MountInfoLine.Parse("35 25 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory");
        Assert.NotNull(m);
        Assert.Equal(("cgroup", "/", "/sys/fs/cgroup/memory", "00:1f"), (m!.Type, m.Root, m.MountPoint, m.Device));
        Assert.True(m.HasSuperOption("memory"));
        Assert.False(m.HasSuperOption("mem"));
    }

    [Fact]
    public void ABindMountOfASubtreeNamesItsRootAndTheKernelsEscapesAreUndone()
    {
        // A container sees its own cgroup only: the root is the cgroup's path in the hierarchy. The kernel writes a space
        // as \040 and a backslash as \134 in the root and the mount point.
        var m = MountInfoLine.Parse(@"812 790 0:31 /my\040pod /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory");
        Assert.Equal("/my pod", m!.Root);
        Assert.Equal(@"/mnt/a\b", MountInfoLine.Parse(@"90 1 0:40 / /mnt/a\134b rw - cgroup2 cgroup2 rw")!.MountPoint);
        Assert.Equal("cgroup2", MountInfoLine.Parse("90 1 0:40 / /sys/fs/cgroup rw shared:9 master:3 - cgroup2 cgroup2 rw,nsdelegate")!.Type);
    }

    [Theory]
    [InlineData("")]
    [InlineData("35 25 0:31 / /x rw")]
    [InlineData("x 25 0:31 / /x rw - cgroup cgroup rw")]
    [InlineData("35 25 0-31 / /x rw - cgroup cgroup rw")]
    [InlineData("35 25 0:31 / - cgroup")]
    public void ALineThatIsNotMountinfoIsNoMount(string line) => Assert.Null(MountInfoLine.Parse(line));
}
