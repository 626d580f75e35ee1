using System;
using System.IO;
using System.Linq;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>MapsParser over real /proc text captured on the CI machine (see Fixtures/README.md).</summary>
public class MapsParserTests
{
    internal static string Fixture(string name) => File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", name));

    private static MemoryMapping At(System.Collections.Generic.IEnumerable<MemoryMapping> ms, ulong start) => Assert.Single(ms, m => m.Start == start);

    [Theory]
    [InlineData("maps-self.txt", 38)]
    [InlineData("smaps-self.txt", 38)]
    [InlineData("maps-odd.txt", 32)]
    [InlineData("smaps-odd.txt", 32)]
    [InlineData("smaps-crafted.txt", 3)]
    public void EveryVmaIsParsedInAddressOrder(string file, int count)
    {
        var ms = MapsParser.Parse(Fixture(file), processId: 77);
        Assert.Equal(count, ms.Count);
        Assert.All(ms, m => Assert.Equal(77, m.ProcessId));
        Assert.All(ms, m => Assert.True(m.End > m.Start && m.Start % 4096 == 0 && m.End % 4096 == 0, m.ToString()));
        for (int i = 1; i < ms.Count; i++) Assert.True(ms[i].Start >= ms[i - 1].End);
    }

    [Fact]
    public void HeaderFieldsOfAFileMapping()
    {
        var m = At(MapsParser.Parse(Fixture("maps-self.txt")), 0x7f6f5db2f000);
        Assert.Equal(0x7f6f5dc85000UL, m.End);
        Assert.Equal(0x156000UL, m.Size);
        Assert.Equal("r-xp", m.Permissions);
        Assert.Equal(Protection.Read | Protection.Execute, m.Protection);
        Assert.False(m.Shared);
        Assert.Equal(0x26000UL, m.Offset);
        Assert.Equal("fe:00", m.Device);
        Assert.Equal(332096UL, m.Inode);
        Assert.Equal("/usr/lib/x86_64-linux-gnu/libc.so.6", m.Path);
        Assert.False(m.Deleted);
        Assert.Equal(MappingKind.File, m.Kind);
        Assert.Null(m.Rss);
        Assert.Null(m.SoftDirty);
        Assert.Empty(m.VmFlags);
    }

    [Theory]
    [InlineData(0x563ae1256000UL, "rw-p", Protection.Read | Protection.Write, false, "[heap]", MappingKind.Heap)]
    [InlineData(0x7ffdf1c2e000UL, "rw-p", Protection.Read | Protection.Write, false, "[stack]", MappingKind.Stack)]
    [InlineData(0x7f6f5dcf6000UL, "r--p", Protection.Read, false, "[vvar]", MappingKind.Vvar)]
    [InlineData(0x7f6f5dcfa000UL, "r--p", Protection.Read, false, "[vvar_vclock]", MappingKind.Vvar)]
    [InlineData(0x7f6f5dcfc000UL, "r-xp", Protection.Read | Protection.Execute, false, "[vdso]", MappingKind.Vdso)]
    [InlineData(0xffffffffff600000UL, "--xp", Protection.Execute, false, "[vsyscall]", MappingKind.Vsyscall)]
    [InlineData(0x7f6f5db09000UL, "r--p", Protection.Read, false, "/usr/lib/x86_64-linux-gnu/libc.so.6", MappingKind.File)]
    [InlineData(0x7f6f5dcec000UL, "r--s", Protection.Read, true, "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache", MappingKind.File)]
    public void PseudoMappingsOfSelf(ulong start, string perms, Protection prot, bool shared, string path, MappingKind kind)
    {
        var m = At(MapsParser.Parse(Fixture("maps-self.txt")), start);
        Assert.Equal(perms, m.Permissions);
        Assert.Equal(prot, m.Protection);
        Assert.Equal(shared, m.Shared);
        Assert.Equal(path, m.Path);
        Assert.Equal(kind, m.Kind);
        Assert.False(m.Deleted);
    }

    [Fact]
    public void VsyscallLiesAtTheTopOfTheAddressSpace()
    {
        var m = MapsParser.Parse(Fixture("maps-self.txt"))[^1];
        Assert.Equal(0xffffffffff600000UL, m.Start);
        Assert.Equal(0xffffffffff601000UL, m.End);
        Assert.Equal(MappingKind.Vsyscall, m.Kind);
        Assert.Equal("00:00", m.Device);
        Assert.Equal(0UL, m.Inode);
    }

    [Fact]
    public void AnonymousLineWithTrailingSpaceHasEmptyPath()
    {
        var m = At(MapsParser.Parse(Fixture("maps-odd.txt")), 0x7f54069ee000);
        Assert.Equal(string.Empty, m.Path);
        Assert.Equal(MappingKind.Anonymous, m.Kind);
        Assert.Equal("[anon]", m.DisplayName);
        Assert.Equal(0UL, m.Inode);
        var none = At(MapsParser.Parse(Fixture("maps-odd.txt")), 0x7f54069a7000);
        Assert.Equal(Protection.None, none.Protection);
        Assert.Equal("---p", none.Permissions);
    }

    [Fact]
    public void PathWithSpacesIsKeptWhole()
    {
        var m = At(MapsParser.Parse(Fixture("maps-odd.txt")), 0x7f5406bd8000);
        Assert.Equal("/tmp/xfix/dir with spaces/my data file.bin", m.Path);
        Assert.Equal("rw-s", m.Permissions);
        Assert.True(m.Shared);
        Assert.Equal(Protection.Read | Protection.Write, m.Protection);
        Assert.Equal(11657743UL, m.Inode);
        Assert.Equal(MappingKind.File, m.Kind);
        Assert.False(m.Deleted);
    }

    [Fact]
    public void DeletedFileHasFlagAndSuffixStripped()
    {
        var m = At(MapsParser.Parse(Fixture("maps-odd.txt")), 0x7f5406bd6000);
        Assert.Equal("/tmp/xfix/gone.bin", m.Path);
        Assert.True(m.Deleted);
        Assert.Equal(0x1000UL, m.Offset);
        Assert.Equal(MappingKind.File, m.Kind);
        Assert.DoesNotContain("(deleted)", m.DisplayName);
    }

    [Theory]
    [InlineData(0x7f54069e8000UL, "/dev/zero", 70UL)]
    [InlineData(0x7f54069ec000UL, "/dev/zero", 67UL)]
    [InlineData(0x7f54069e9000UL, "/SYSV00000000", 0UL)]
    [InlineData(0x7f54069eb000UL, "/memfd:my memfd", 68UL)]
    public void SharedAnonymousMemoryIsDeletedAndClassified(ulong start, string path, ulong inode)
    {
        var m = At(MapsParser.Parse(Fixture("maps-odd.txt")), start);
        Assert.Equal(path, m.Path);
        Assert.True(m.Deleted);
        Assert.True(m.Shared);
        Assert.Equal("00:01", m.Device);
        Assert.Equal(inode, m.Inode);
        Assert.Equal(MappingKind.SharedAnonymous, m.Kind);
    }

    [Fact]
    public void PrivateMappingOfDevZeroIsAnonymous()
    {
        // mmap of /dev/zero MAP_PRIVATE (the kernel's mmap_zero makes the VMA anonymous and keeps the device as its file: maps
        // names it, not deleted, with the device's inode; measured on 6.18), then MAP_SHARED (shmem: "(deleted)").
        var maps = MapsParser.Parse(
            "7f3124815000-7f312481d000 rw-p 00000000 00:05 4                          /dev/zero\n" +
            "7f3124626000-7f312462e000 rw-s 00000000 00:01 101214                     /dev/zero (deleted)\n");
        Assert.Equal(MappingKind.Anonymous, maps[0].Kind);
        Assert.False(maps[0].Deleted);
        Assert.Equal(MappingKind.SharedAnonymous, maps[1].Kind);
    }

    [Fact]
    public void MapsAndSmapsAgreeOnHeaders()
    {
        var maps = MapsParser.Parse(Fixture("maps-odd.txt"));
        var smaps = MapsParser.Parse(Fixture("smaps-odd.txt"));
        Assert.Equal(maps.Select(m => (m.Start, m.End, m.Permissions, m.Offset, m.Device, m.Inode, m.Path, m.Deleted, m.Kind)),
                     smaps.Select(m => (m.Start, m.End, m.Permissions, m.Offset, m.Device, m.Inode, m.Path, m.Deleted, m.Kind)));
    }

    [Fact]
    public void SmapsCountersAreInBytes()
    {
        var stack = At(MapsParser.Parse(Fixture("smaps-self.txt")), 0x7ffd128cd000);
        Assert.Equal(MappingKind.Stack, stack.Kind);
        Assert.Equal(12UL * 1024, stack.Rss);
        Assert.Equal(12UL * 1024, stack.Pss);

        var file = At(MapsParser.Parse(Fixture("smaps-odd.txt")), 0x7f5406bd8000);
        Assert.Equal(4096UL, file.Rss);
        Assert.Equal(4096UL, file.Pss);
        Assert.Equal(0UL, file.SharedClean);
        Assert.Equal(0UL, file.SharedDirty);
        Assert.Equal(0UL, file.PrivateClean);
        Assert.Equal(4096UL, file.PrivateDirty);
        Assert.Equal(4096UL, file.Referenced);
        Assert.Equal(0UL, file.Anonymous);
        Assert.Equal(0UL, file.AnonHugePages);
        Assert.Equal(0UL, file.Swap);
        Assert.Equal(0UL, file.Locked);
        Assert.Equal(new[] { "rd", "wr", "sh", "mr", "mw", "me", "ms" }, file.VmFlags);
        Assert.False(file.SoftDirty);

        var heap = At(MapsParser.Parse(Fixture("smaps-odd.txt")), 0x55a10f985000);
        Assert.Equal(8192UL, heap.Rss);
        Assert.Equal(8192UL, heap.Anonymous);
        Assert.Equal(132UL * 1024, heap.Size);
    }

    [Fact]
    public void EveryRealSmapsBlockHasCountersAndVmFlags()
    {
        foreach (var file in new[] { "smaps-self.txt", "smaps-odd.txt" })
        {
            var ms = MapsParser.Parse(Fixture(file));
            Assert.All(ms, m =>
            {
                Assert.NotNull(m.Rss);
                Assert.NotNull(m.Pss);
                Assert.NotNull(m.Swap);
                Assert.NotEmpty(m.VmFlags);
                Assert.False(m.SoftDirty); // this kernel has no CONFIG_MEM_SOFT_DIRTY
                Assert.True(m.Rss <= m.Size);
                Assert.Equal(0UL, m.Rss % 1024);
            });
        }
    }

    [Fact]
    public void SdInVmFlagsMeansSoftDirty()
    {
        var ms = MapsParser.Parse(Fixture("smaps-crafted.txt"));
        Assert.Equal(new bool?[] { true, false, true }, ms.Select(m => m.SoftDirty));
        Assert.Equal(new[] { "rd", "wr", "mr", "mw", "me", "ac", "sd" }, ms[0].VmFlags);
    }

    [Fact]
    public void NamedAnonymousMappings()
    {
        var ms = MapsParser.Parse(Fixture("smaps-crafted.txt"));
        Assert.Equal("[anon_shmem:shared thing]", ms[1].Path);
        Assert.Equal(MappingKind.SharedAnonymous, ms[1].Kind);
        Assert.Equal("[anon:test buffer]", ms[2].Path);
        Assert.Equal(MappingKind.NamedAnonymous, ms[2].Kind);
        Assert.Equal(8192UL, ms[2].Rss);
        Assert.Equal("[anon:test buffer]", ms[2].DisplayName);
    }

    [Theory]
    [InlineData("", 0UL, false, MappingKind.Anonymous)]
    [InlineData("", 0UL, true, MappingKind.SharedAnonymous)]
    [InlineData("[stack:1234]", 0UL, false, MappingKind.Stack)]
    [InlineData("[uprobes]", 0UL, false, MappingKind.Other)]
    [InlineData("/dev/shm/x", 5UL, true, MappingKind.SharedAnonymous)]
    [InlineData("/dev/shm/x", 5UL, false, MappingKind.File)]
    [InlineData("/usr/bin/cat", 5UL, false, MappingKind.File)]
    // hugetlb memory: its pages carry no soft-dirty bit of their own (pagemap takes it from the VMA's VM_SOFTDIRTY, which
    // clear_refs clears, and clear_refs never write-protects them), so it must stay a kind compared by content
    // (ContentCheckedTracker.ChangeableByOthers): MAP_HUGETLB anonymous memory is the file /anon_hugepage of the kernel's
    // internal hugetlbfs mount, a hugetlb memfd is /memfd:NAME.
    [InlineData("/anon_hugepage", 5UL, false, MappingKind.File)]
    [InlineData("/anon_hugepage", 5UL, true, MappingKind.File)]
    [InlineData("/memfd:h", 5UL, false, MappingKind.SharedAnonymous)]
    public void Classify(string path, ulong inode, bool shared, MappingKind kind)
    {
        Assert.Equal(kind, MemoryMapping.Classify(path, inode, shared));
        if (path.StartsWith("/anon_hugepage", StringComparison.Ordinal) || path.StartsWith("/memfd:", StringComparison.Ordinal))
            Assert.True(SoftDirty.Tracking.ContentCheckedTracker.ChangeableByOthers(new MemoryMapping { Start = 0x1000, End = 0x201000, Path = path, Inode = inode, Shared = shared, Kind = kind }));
    }

    [Theory]
    [InlineData("garbage\n", 1)]
    [InlineData("00400000-00401000 r-xp 00000000 fe:00 1 /bin/x\nRss 4 kB\n", 2)]
    [InlineData("00400000-00401000 r-xp 00000000 fe:00 1 /bin/x\nSize: 4 kB\n\nRss: x kB\n", 4)]
    [InlineData("Rss: 4 kB\n", 1)]
    [InlineData("00400000-00401000 rwxpq 00000000 fe:00 1 /bin/x\n", 1)] // perms of 5 letters: not a header
    [InlineData("0040000g-00401000 r-xp 00000000 fe:00 1\n", 1)]
    [InlineData("00400000-00401000 r-xp 00000000 fe00 1\n", 1)]
    [InlineData("00400000-00401000 r-xp 00000000 fe:00 1 /a\n00402000-00403000 r-xp zz fe:00 1 /b\n", 2)]
    public void MalformedInputThrowsFormatExceptionWithLineNumber(string text, int line)
    {
        var ex = Assert.Throws<FormatException>(() => MapsParser.Parse(text));
        Assert.StartsWith($"line {line}:", ex.Message);
    }

    [Fact]
    public void EmptyTextHasNoMappings()
    {
        Assert.Empty(MapsParser.Parse(""));
        Assert.Empty(MapsParser.Parse("\n\n"));
    }

    [Fact]
    public void MissingFinalNewlineIsTolerated()
    {
        var ms = MapsParser.Parse("00400000-00401000 r-xp 00000000 fe:00 1 /bin/x\nRss: 4 kB");
        Assert.Equal(4096UL, Assert.Single(ms).Rss);
    }

    [Fact]
    public void FormatPermissionsIsTheInverseOfParsing()
    {
        foreach (var m in MapsParser.Parse(Fixture("maps-odd.txt")))
            Assert.Equal(m.Permissions, MemoryMapping.FormatPermissions(m.Protection, m.Shared));
    }
}
