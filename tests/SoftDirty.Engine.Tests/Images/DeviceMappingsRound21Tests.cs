using System.Linq;
using SoftDirty.Images;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 21: which mappings a save reads smaps for, to find VM_PFNMAP and VM_IO ones (a perf_event ring buffer, device
/// memory) whose pages pagemap cannot show and which therefore count as unreadable (<see cref="DeviceMappings"/>).
/// </summary>
public class DeviceMappingsRound21Tests
{
    private const string Maps =
        "7f0b3a244000-7f0b3a24d000 rw-s 00000000 00:10 1039                       anon_inode:[perf_event]\n" +
        "7f0b3a24d000-7f0b3a24e000 rw-s 100000000 00:06 512                       /dev/dri/renderD128\n" +
        "7f0b3a24e000-7f0b3a24f000 rw-s 00000000 00:15 9000                       /sys/devices/pci0000:00/0000:00:02.0/resource0\n" +
        "7f0b3a24f000-7f0b3a250000 r--p 00000000 fe:00 331651                     /usr/lib/x86_64-linux-gnu/libc.so.6\n" +
        "7f0b3a250000-7f0b3a251000 rw-p 00000000 00:00 0 \n" +
        "7f0b3a251000-7f0b3a252000 rw-s 00000000 00:01 77                         /memfd:x (deleted)\n" +
        "7f0b3a252000-7f0b3a253000 rw-p 00000000 00:00 0                          [anon:name]\n" +
        "7ffd1000c000-7ffd10010000 r--p 00000000 00:00 0                          [vvar]\n" +
        "7ffd10010000-7ffd10012000 r-xp 00000000 00:00 0                          [vdso]\n";

    [Theory]
    [InlineData(0x7f0b3a244000UL, true)]  // perf_event ring (VM_PFNMAP on Linux 6.18)
    [InlineData(0x7f0b3a24d000UL, true)]  // a device
    [InlineData(0x7f0b3a24e000UL, true)]  // a PCI resource file
    [InlineData(0x7f0b3a24f000UL, false)] // a regular file
    [InlineData(0x7f0b3a250000UL, false)] // anonymous memory
    [InlineData(0x7f0b3a251000UL, false)] // a memfd
    [InlineData(0x7f0b3a252000UL, false)] // named anonymous memory
    [InlineData(0x7ffd1000c000UL, false)] // the kernel's [vvar] (VM_PFNMAP too, but not the process's data)
    [InlineData(0x7ffd10010000UL, false)]
    public void OnlyMappingsOfDevicesAndPseudoFilesMayBeDeviceMemory(ulong start, bool expected)
    {
        var m = MapsParser.Parse(Maps).Single(x => x.Start == start);
        Assert.Equal(expected, DeviceMappings.MayBeDevice(m));
    }
}
