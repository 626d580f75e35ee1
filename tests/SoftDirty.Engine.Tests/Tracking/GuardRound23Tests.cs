using System.Linq;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 23: the write tracking of a real process registers private anonymous memory only. A file, memfd, shmem, System V
/// or hugetlb mapping registered for write-protect keeps a uffd-wp marker where the kernel drops a page, and on Linux 6.18 a
/// process that installed a guard region there spun in madvise for ever.
/// </summary>
public class GuardRound23Tests
{
    private const string Maps =
        "55d0c0a00000-55d0c0a01000 rw-p 00000000 00:00 0                          [heap]\n" +
        "7f0b3a240000-7f0b3a241000 rw-p 00000000 00:00 0 \n" +
        "7f0b3a241000-7f0b3a242000 rw-p 00000000 00:00 0                          [anon:cache]\n" +
        "7f0b3a242000-7f0b3a243000 rw-p 00000000 fe:00 4242                       /tmp/data\n" +
        "7f0b3a243000-7f0b3a244000 rw-s 00000000 fe:00 4242                       /tmp/data\n" +
        "7f0b3a244000-7f0b3a245000 rw-p 00000000 00:01 77                         /memfd:m (deleted)\n" +
        "7f0b3a245000-7f0b3a246000 rw-s 00000000 00:01 78                         /memfd:m (deleted)\n" +
        "7f0b3a246000-7f0b3a247000 rw-s 00000000 00:01 79                         /dev/zero (deleted)\n" +
        "7f0b3a247000-7f0b3a248000 rw-s 00000000 00:01 80                         /SYSV00000000 (deleted)\n" +
        "7f0b3a248000-7f0b3a249000 rw-s 00000000 00:01 81                         [anon_shmem:s]\n" +
        "7f0b3a400000-7f0b3a600000 rw-p 00000000 00:10 82                         /anon_hugepage (deleted)\n" +
        "7f0b3a600000-7f0b3a601000 rw-s 00000000 00:00 0 \n" +
        "7ffd0fff0000-7ffd10011000 rw-p 00000000 00:00 0                          [stack]\n";

    [Fact]
    public void OnlyPrivateAnonymousMemoryIsRegistered()
    {
        var registered = MapsParser.Parse(Maps).Where(WriteProtectTracker.Registers).Select(m => m.Start).ToArray();
        Assert.Equal(new[] { 0x55d0c0a00000UL, 0x7f0b3a240000UL, 0x7f0b3a241000UL, 0x7ffd0fff0000UL }, registered);
    }
}
