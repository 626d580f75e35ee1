using SoftDirty;
using SoftDirty.Emulation;
using System.Linq;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

/// <summary>The scenarios of tools/testing/selftests/mm/soft-dirty.c, on every profile.</summary>
public class SoftDirtySelftestTests
{
    [Theory, MemberData(nameof(AllProfiles), MemberType = typeof(Sd))]
    public void TestSimple(string profile)
    {
        using var p = New(profile);
        ulong a = MapAnon(p);
        Clear(p);
        for (int i = 0; i < 10_000; i++)
        {
            Assert.False(Check(p, a));
            p.Write(a, 8);
            Assert.True(Check(p, a));
            Clear(p);
        }
    }

    [Theory, MemberData(nameof(AllProfiles), MemberType = typeof(Sd))]
    public void TestVmaReuse(string profile)
    {
        using var p = New(profile);
        ulong a = MapAnon(p);
        Assert.True(Check(p, a));           // fresh VMA: VM_SOFTDIRTY
        Clear(p);
        p.Munmap(a, Page);
        ulong b = p.Mmap(a, Page, RW, flags: MmapFlags.Fixed).Start;
        Assert.Equal(a, b);
        Assert.True(Check(p, b));
    }

    [Theory, MemberData(nameof(AllProfiles), MemberType = typeof(Sd))]
    public void TestHugepage(string profile)
    {
        using var p = New(profile);
        ulong a = MapAnon(p, EmulatedProcess.HugePageBytes, huge: true);
        Assert.Equal(0UL, a % EmulatedProcess.HugePageBytes);
        p.Write(a, 8);
        Assert.Equal(EmulatedProcess.HugePageBytes, p.ReadMappings(true)[0].AnonHugePages);
        Clear(p);
        for (int i = 0; i < 1000; i++)
        {
            Assert.False(Check(p, a));
            Assert.False(Check(p, a + 511 * Page));
            p.Write(a + 100 * Page, 8);
            Assert.True(Check(p, a));
            Assert.True(Check(p, a + 511 * Page));
            Clear(p);
        }
    }

    [Theory, MemberData(nameof(AllProfiles), MemberType = typeof(Sd))]
    public void TestMprotectAnon(string profile) => MprotectCycle(New(profile), null);

    [Theory, MemberData(nameof(AllProfiles), MemberType = typeof(Sd))]
    public void TestMprotectFile(string profile) => MprotectCycle(New(profile), "/tmp/soft-dirty-test-file");

    private static void MprotectCycle(EmulatedProcess p, string? path)
    {
        ulong a = p.Mmap(null, Page, RW, flags: path != null ? MmapFlags.Shared : MmapFlags.None, path: path).Start;
        p.Write(a, 8);
        Assert.True(Check(p, a));
        Clear(p);
        Assert.False(Check(p, a));
        p.Mprotect(a, Page, Protection.Read);
        Assert.False(Check(p, a));
        p.Mprotect(a, Page, RW);
        Assert.False(Check(p, a));
        long sdFaults = p.Faults.SoftDirtyWriteProtectFaults;
        p.Write(a, 8);
        Assert.True(Check(p, a));
        Assert.Equal(sdFaults + 1, p.Faults.SoftDirtyWriteProtectFaults);   // the write still faulted
    }

    [Theory, MemberData(nameof(AllProfiles), MemberType = typeof(Sd))]
    public void TestMerge(string profile)
    {
        using var p = New(profile);
        bool sticky = KernelProfile.Get(profile).StickySoftDirtyOnMerge;
        ulong reserved = p.Mmap(null, 5 * Page, Protection.None).Start;
        p.Munmap(reserved, 4 * Page);
        ulong page1 = reserved, page2 = reserved + Page, page3 = reserved + 2 * Page;

        p.Mmap(page1, Page, RW, flags: MmapFlags.Fixed);
        Clear(p);
        p.Mmap(page3, Page, RW, flags: MmapFlags.Fixed);
        p.Mremap(page3, Page, page2, Page);
        var merged = p.ReadMappings(false);
        Assert.Contains(merged, m => m.Start == page1 && m.End == page3);   // page2 merged with page1
        Assert.Equal(sticky, Check(p, page1));
        Assert.Equal(sticky, Check(p, page2));

        p.Munmap(page1, 3 * Page);
        p.Mmap(page1, Page, RW, flags: MmapFlags.Fixed);
        Clear(p);
        p.Mmap(page2, Page, RW | Protection.Execute, flags: MmapFlags.Fixed);
        Assert.Equal(2, p.ReadMappings(false).Count(m => m.End <= page3));   // no merge
        p.Mprotect(page1, Page, RW | Protection.Execute);
        Assert.Contains(p.ReadMappings(false), m => m.Start == page1 && m.End == page3);
        // The merged VMA takes the changed (cleaned) VMA's flags: clean before the 6.19 sticky merge, as
        // Debian's real 6.1 kernel shows (tests/scenarios/regression-61-mprotect-merge-flags.scenario).
        Assert.Equal(sticky, Check(p, page1));
        Assert.Equal(sticky, Check(p, page2));
    }
}
