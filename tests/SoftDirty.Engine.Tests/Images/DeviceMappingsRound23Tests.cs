using System;
using System.IO;
using System.Linq;
using SoftDirty.Images;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 23: a mapping of a device node outside /dev, /sys and /proc (mknod anywhere, a container's bind mount) was never
/// looked at for VM_PFNMAP, so its pages were saved as none and the image called valid. A mapping of a path is now a
/// candidate unless the path, seen through the process's root, is the regular file the mapping maps
/// (<see cref="DeviceMappings.MayBeDevice"/>). The paths here are the test process's own; no device is needed to show which
/// mappings are looked at.
/// </summary>
public sealed partial class DeviceMappingsRound23Tests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("sd-r23dev-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A mapping of <paramref name="path"/> with <paramref name="inode"/>, as maps shows it for this process.</summary>
    private static MemoryMapping Mapping(string path, ulong inode, bool deleted = false, string? device = null) =>
        MapsParser.Parse($"7f0b3a244000-7f0b3a245000 r--p 00000000 {device ?? DeviceOf(Path.GetDirectoryName(path)!)} {inode}                       {path}{(deleted ? " (deleted)" : "")}\n",
            Environment.ProcessId).Single();

    private static ulong InodeOf(string path) => FileNative.Stat(path, out _)?.Inode ?? throw new IOException($"stat {path} failed");

    private static string DeviceOf(string path) => FileNative.Stat(path, out _)?.Device ?? throw new IOException($"stat {path} failed");

    [Fact]
    public void ANodeThatIsNotARegularFileOutsideDevIsACandidate()
    {
        // A FIFO stands for any node that is not a regular file (a character device needs CAP_MKNOD); before round 23 a
        // path outside /dev, /sys and /proc was never a candidate.
        string fifo = Path.Combine(_dir, "node");
        Assert.Equal(0, Mkfifo(fifo, 0x180));
        Assert.True(DeviceMappings.MayBeDevice(Mapping(fifo, InodeOf(fifo))));
    }

    [Fact]
    public void TheRegularFileAMappingMapsIsNoCandidateAndAReplacedOrDeletedOneIs()
    {
        string file = Path.Combine(_dir, "file");
        File.WriteAllBytes(file, new byte[4096]);
        ulong inode = InodeOf(file);
        Assert.False(DeviceMappings.MayBeDevice(Mapping(file, inode)));
        Assert.True(DeviceMappings.MayBeDevice(Mapping(file, inode + 1)), "the path names another file now: what is mapped is not known");
        Assert.True(DeviceMappings.MayBeDevice(Mapping(file, inode, deleted: true)), "a deleted node cannot be looked at");
        Assert.True(DeviceMappings.MayBeDevice(Mapping(Path.Combine(_dir, "missing"), inode)), "a path that is gone cannot be looked at");
    }

    [Fact]
    public void AFileOnAFileSystemThatIsNotKnownLocalIsACandidateWithoutALookup()
    {
        // A stat on FUSE or NFS can wait on a server for ever: such a file is not looked at. A device no mount names stands
        // for one here (the file itself is regular, so only the device decides).
        string file = Path.Combine(_dir, "file");
        File.WriteAllBytes(file, new byte[4096]);
        Assert.True(DeviceMappings.MayBeDevice(Mapping(file, InodeOf(file), device: "ff:ff")));
        Assert.Equal(new MountInfoLine(41, 0, 43, "/", "/mnt/remote", "fuse.sshfs", "rw,user_id=1000"),
            MountInfoLine.Parse("41 29 0:43 / /mnt/remote rw,nosuid,nodev shared:21 - fuse.sshfs host:/ rw,user_id=1000"));
        Assert.Equal("00:2b", MountInfoLine.Parse("41 29 0:43 / /mnt/remote rw - fuse.sshfs host:/ rw")!.Device);
        Assert.Equal(("fe:01", "ext4"), MountInfoLine.Parse("29 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw") is { } m ? (m.Device, m.Type) : default);
        Assert.Null(MountInfoLine.Parse("not a mountinfo line"));
    }

    [Fact]
    public void AMemfdAndAParsedListingAreJudgedWithoutALookup()
    {
        // A memfd mapped private is a File mapping whose name cannot be looked up; it is shmem, never a device.
        Assert.False(DeviceMappings.MayBeDevice(Mapping("/memfd:x", 77, deleted: true)));
        // No live process: the path alone (a regular path outside /dev is no candidate, as before).
        var parsed = MapsParser.Parse("7f0b3a244000-7f0b3a245000 r--p 00000000 00:2a 5 /no/such/file\n").Single();
        Assert.False(DeviceMappings.MayBeDevice(parsed));
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "mkfifo", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Mkfifo(string path, uint mode);
}
