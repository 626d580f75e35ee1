using System.Linq;
using SoftDirty.Images;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 23: which mappings map memory that ends with the process, whose pages the process does not map a save reads from
/// the object (<see cref="UnnamedObjectPages"/>): a memfd, shared anonymous memory, a System V segment, a deleted file.
/// A file with a name (a file of /dev/shm included) is the file's; anonymous memory has no object.
/// </summary>
public class UnnamedObjectPagesRound23Tests
{
    private const string Maps =
        "7f0b3a250000-7f0b3a251000 rw-s 00000000 00:01 77                         /memfd:x (deleted)\n" +
        "7f0b3a251000-7f0b3a252000 rw-p 00000000 00:01 77                         /memfd:x (deleted)\n" +
        "7f0b3a252000-7f0b3a253000 rw-s 00000000 00:01 4096                       /dev/zero (deleted)\n" +
        "7f0b3a253000-7f0b3a254000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)\n" +
        "7f0b3a254000-7f0b3a255000 rw-s 00000000 00:01 4097                       [anon_shmem:name]\n" +
        "7f0b3a255000-7f0b3a256000 r-xp 00000000 fe:00 1234                       /usr/lib/libgone.so (deleted)\n" +
        "7f0b3a256000-7f0b3a257000 rw-s 00000000 00:19 12                         /dev/shm/x (deleted)\n" +
        "7f0b3a257000-7f0b3a258000 rw-s 00000000 00:19 13                         /dev/shm/named\n" +
        "7f0b3a258000-7f0b3a259000 r--p 00000000 fe:00 331651                     /usr/lib/x86_64-linux-gnu/libc.so.6\n" +
        "7f0b3a259000-7f0b3a25a000 rw-p 00000000 00:00 0 \n" +
        "7f0b3a25a000-7f0b3a25b000 rw-s 00000000 00:00 0 \n" +
        "7f0b3a25b000-7f0b3a25c000 rw-p 00000000 00:00 0                          [anon:name]\n" +
        "7f0b3a25c000-7f0b3a25d000 rw-s 00000000 00:10 1039                       anon_inode:[perf_event]\n" +
        "7f0b3a400000-7f0b3a800000 rw-p 00000000 00:0f 30876                      /anon_hugepage (deleted)\n" +
        "7f0b3a800000-7f0b3ac00000 rw-s 00000000 00:0f 30877                      /anon_hugepage (deleted)\n" +
        "7ffd10010000-7ffd10012000 r-xp 00000000 00:00 0                          [vdso]\n";

    [Theory]
    [InlineData(0x7f0b3a250000UL, true)]  // a memfd, MAP_SHARED
    [InlineData(0x7f0b3a251000UL, true)]  // a memfd, MAP_PRIVATE (its pages not copied are the memfd's)
    [InlineData(0x7f0b3a252000UL, true)]  // shared anonymous memory
    [InlineData(0x7f0b3a253000UL, true)]  // a System V segment
    [InlineData(0x7f0b3a254000UL, true)]  // named shared anonymous memory
    [InlineData(0x7f0b3a255000UL, true)]  // a library deleted while mapped
    [InlineData(0x7f0b3a256000UL, true)]  // a file of /dev/shm unlinked while mapped
    [InlineData(0x7f0b3a257000UL, false)] // a file of /dev/shm with its name: the file's
    [InlineData(0x7f0b3a258000UL, false)] // a regular file: the file's
    [InlineData(0x7f0b3a259000UL, false)] // anonymous memory: no object
    [InlineData(0x7f0b3a25a000UL, false)] // (no inode: nothing to open)
    [InlineData(0x7f0b3a25b000UL, false)] // named anonymous memory
    [InlineData(0x7f0b3a25c000UL, false)] // a pseudo file (no "(deleted)")
    [InlineData(0x7f0b3a400000UL, false)] // private anonymous huge pages: the object is never written (a root CI run had
                                          // every page not mapped unreadable, so the image tested incomplete)
    [InlineData(0x7f0b3a800000UL, true)]  // shared anonymous huge pages
    [InlineData(0x7ffd10010000UL, false)]
    public void OnlyMemoryWithoutALastingNameIsReadFromItsObject(ulong start, bool expected)
    {
        var m = MapsParser.Parse(Maps).Single(x => x.Start == start);
        Assert.Equal(expected, UnnamedObjectPages.IsUnnamed(m));
    }
}
