using System;
using System.Linq;
using System.Text;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

/// <summary>Section 1 (pagemap reads) and section 2 (clear_refs parsing) of the reference.</summary>
public class PagemapFormatTests
{
    [Fact]
    public void OutsideVmasEntriesAreZeroAndHolesCarryVmSoftDirty()
    {
        var p = New();
        ulong a = MapAnon(p, 4 * Page);
        p.Munmap(a + 2 * Page, Page);
        p.Write(a, 8);
        var entries = new PagemapEntry[6];
        Assert.Equal(6, p.ReadPagemap((a >> 12) - 1, entries));
        Assert.Equal(0UL, entries[0].Raw);                                   // before the VMA
        Assert.True(entries[1].Present && entries[1].SoftDirty);
        Assert.Equal((ulong)PagemapFlags.SoftDirty, entries[2].Raw);         // hole inside the VMA
        Assert.Equal(0UL, entries[3].Raw);                                   // unmapped page
        Assert.Equal((ulong)PagemapFlags.SoftDirty, entries[4].Raw);
        Assert.Equal(0UL, entries[5].Raw);
    }

    [Fact]
    public void PfnsHiddenUnlessPrivileged()
    {
        var hidden = New();
        var shown = New(privileged: true);
        foreach (var p in new[] { hidden, shown })
        {
            ulong a = MapAnon(p, 2 * Page);
            p.Write(a, 2 * Page);
            p.SwapOut(a + Page, Page);
            var present = p.ReadEntry(a);
            var swapped = p.ReadEntry(a + Page);
            Assert.True(present.Present && present.Exclusive && present.SoftDirty);
            Assert.True(swapped.Swapped && swapped.SoftDirty && !swapped.Exclusive);
            if (p.Privileged)
            {
                Assert.True(present.Pfn >= 1024);
                Assert.True(swapped.SwapOffset >= 1);
                Assert.True(p.Features.PfnVisible);
            }
            else
            {
                Assert.Equal(0UL, present.Frame);
                Assert.Equal(0UL, swapped.Frame);
                Assert.False(p.Features.PfnVisible);
            }
        }
    }

    [Fact]
    public void ThpEntriesShareOneSoftDirtyStateAndCountPfns()
    {
        var p = New(privileged: true);
        ulong a = MapAnon(p, EmulatedProcess.HugePageBytes, huge: true);
        p.Write(a, 8);
        var entries = new PagemapEntry[512];
        p.ReadPagemap(a >> 12, entries);
        for (int i = 0; i < 512; i++)
        {
            Assert.True(entries[i].Present && entries[i].SoftDirty && entries[i].Exclusive);
            Assert.Equal(entries[0].Pfn + (ulong)i, entries[i].Pfn);
        }
        Assert.Equal(0UL, entries[0].Pfn % 512);
    }

    [Fact]
    public void FileBitForFileAndSharedPagesExclusiveOnlyWhenMappedOnce()
    {
        var p = New();
        ulong file = p.Mmap(null, Page, Protection.Read, path: "/tmp/data.bin").Start;
        ulong shm = p.Mmap(null, Page, RW, flags: MmapFlags.Shared).Start;
        ulong anon = MapAnon(p);
        p.Read(file, 8);
        p.Write(shm, 8);
        p.Write(anon, 8);
        Assert.True(p.ReadEntry(file).FileOrSharedAnon);
        Assert.True(p.ReadEntry(shm).FileOrSharedAnon);
        Assert.False(p.ReadEntry(anon).FileOrSharedAnon);
        Assert.True(p.ReadEntry(shm).Exclusive);
        var child = p.Fork();
        child.Read(shm, 8);
        Assert.False(p.ReadEntry(shm).Exclusive);
        Assert.False(p.ReadEntry(anon).Exclusive);
        var maps = p.ReadMappings(true);
        Assert.Equal(MappingKind.File, maps.Single(m => m.Start == file).Kind);
        Assert.Equal(MappingKind.SharedAnonymous, maps.Single(m => m.Start == shm).Kind);
        Assert.Equal(MappingKind.Anonymous, maps.Single(m => m.Start == anon).Kind);
        Assert.Equal("r--p", maps.Single(m => m.Start == file).Permissions);
        Assert.Equal("rw-s", maps.Single(m => m.Start == shm).Permissions);
        Assert.Equal(Page / 2, maps.Single(m => m.Start == shm).Pss);
    }

    [Fact]
    public void PrivateFileWriteCopiesToAnonymousPage()
    {
        var p = New();
        ulong a = p.Mmap(null, Page, RW, path: "/tmp/private.bin").Start;
        p.Read(a, 8);
        Assert.True(p.ReadEntry(a).FileOrSharedAnon);
        p.Write(a, 8);
        Assert.False(p.ReadEntry(a).FileOrSharedAnon);
        Assert.Equal(1, p.Faults.CowFaults);
    }

    [Fact]
    public void ReadsClampAtTaskSize()
    {
        var p = New();
        ulong last = (EmulatedProcess.TaskSize >> 12) - 1;
        var entries = new PagemapEntry[10];
        Assert.Equal(1, p.ReadPagemap(last, entries));
        Assert.Equal(0, p.ReadPagemap(last + 1, entries));
        Assert.Equal(0, p.ReadPagemap(last, Span<PagemapEntry>.Empty));
    }

    [Fact]
    public void FeaturesDescribeTheProfile()
    {
        var f = New("6.1").Features;
        Assert.True(f.Emulated && f.SoftDirty);
        Assert.False(f.PagemapScan);
        Assert.NotNull(f.PagemapScanReason);
        Assert.False(f.UffdWriteProtectAsync);
        Assert.StartsWith("6.1", f.KernelRelease);
        var g = New("6.18").Features;
        Assert.True(g.PagemapScan && g.UffdWriteProtectAsync);
        Assert.Throws<EngineException>(() => KernelProfile.Get("5.0"));
        Assert.True(New().ProcessId >= EmulatedProcess.FirstProcessId);
    }

    [Theory]
    [InlineData("4", 1)]
    [InlineData("4\n", 2)]
    [InlineData("4\0", 2)]
    [InlineData(" 4 ", 3)]
    [InlineData("+4", 2)]
    [InlineData("\t4\n\n", 4)]
    [InlineData("4\0garbage", 9)]
    [InlineData("00000000004\n", 12)]
    public void ClearRefsAcceptsWhatTheKernelAccepts(string text, int accepted)
    {
        var p = New();
        ulong a = MapAnon(p);
        p.Write(a, 8);
        Assert.Equal(accepted, p.WriteClearRefs(Encoding.ASCII.GetBytes(text)));
        Assert.False(Check(p, a));
    }

    [Theory]
    [InlineData("0", Errno.EINVAL)]
    [InlineData("6", Errno.EINVAL)]
    [InlineData("-1", Errno.EINVAL)]
    [InlineData("x", Errno.EINVAL)]
    [InlineData("", Errno.EINVAL)]
    [InlineData("\n", Errno.EINVAL)]
    [InlineData("4 4", Errno.EINVAL)]
    [InlineData("0x4", Errno.EINVAL)]
    [InlineData("99999999999", Errno.ERANGE)]
    public void ClearRefsRejectsAsTheKernel(string text, int errno)
    {
        var p = New();
        ulong a = MapAnon(p);
        p.Write(a, 8);
        var ex = Assert.Throws<EngineException>(() => p.WriteClearRefs(Encoding.ASCII.GetBytes(text)));
        Assert.Equal(EngineError.InvalidArgument, ex.Error);
        Assert.Equal(errno, ex.Errno);
        Assert.True(Check(p, a));   // nothing cleared
    }

    [Theory, MemberData(nameof(AllProfiles), MemberType = typeof(Sd))]
    public void NoSoftDirtyKernelClearSucceedsAndBit55IsNeverSet(string profile)
    {
        var p = New(profile, noSoftDirty: true);
        Assert.False(p.Features.SoftDirty);
        Assert.NotNull(p.Features.SoftDirtyReason);
        ulong a = MapAnon(p, 2 * Page);
        var m = p.ReadMappings(true).Single();
        Assert.False(m.SoftDirty);
        Assert.DoesNotContain("sd", m.VmFlags);
        Assert.False(p.ReadEntry(a).SoftDirty);
        Assert.Equal(2, p.WriteClearRefs("4\n"u8));
        p.Write(a, 2 * Page);
        Assert.False(p.ReadEntry(a).SoftDirty);
        Clear(p);
        p.Write(a, 8);
        Assert.Equal(0, p.Faults.SoftDirtyWriteProtectFaults);   // clear did not write-protect
        p.SwapOut(a, 2 * Page);
        p.Mremap(a, 2 * Page, a + 16 * Page, 2 * Page);
        Assert.False(p.ReadEntry(a + 16 * Page).SoftDirty);
    }

    [Fact]
    public void ContentWritesAreHonest()
    {
        var p = New();
        ulong a = MapAnon(p, 2 * Page);
        var before = new byte[Page];
        var after = new byte[Page];
        p.Write(a + 100, new byte[] { 1, 2, 3 });
        p.ReadPageContent(a, before);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 0 }, before[99..104]);
        Clear(p);
        p.Write(a + 100, new byte[] { 1, 2, 3 });          // same bytes: content unchanged, still soft-dirty
        p.ReadPageContent(a, after);
        Assert.Equal(before, after);
        Assert.True(Check(p, a));
        p.Write(a + Page - 2, 4, 0xEE);                     // crosses into the second page
        p.ReadPageContent(a + Page, after);
        Assert.Equal(0xEE, after[0]);
        Assert.Equal(0xEE, after[1]);
        Assert.Equal(0, after[2]);
        p.Write(a + Page, Page);                           // new unspecified data
        var generated = new byte[Page];
        p.ReadPageContent(a + Page, generated);
        Assert.NotEqual(after, generated);
        p.ReadPageContent(a + Page, after);
        Assert.Equal(generated, after);                     // deterministic
    }
}
