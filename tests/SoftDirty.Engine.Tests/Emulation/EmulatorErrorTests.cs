using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

/// <summary>Failing calls fail as the kernel's do and change nothing.</summary>
public class EmulatorErrorTests
{
    /// <summary>Everything observable: mappings with counters, all pagemap entries of the range, faults.</summary>
    private static string Snapshot(EmulatedProcess p, ulong start, ulong pages)
    {
        var entries = new PagemapEntry[pages];
        p.ReadPagemap(start >> 12, entries);
        return string.Join(";", p.ReadMappings(true).Select(m => $"{m} {m.Rss} {m.SoftDirty} {string.Join(",", m.VmFlags)}"))
               + "|" + string.Join(",", entries.Select(e => e.Raw)) + "|" + p.Faults;
    }

    private static void AssertFails(EmulatedProcess p, ulong start, ulong pages, EngineError error, int errno, Action call, string? messagePart = null)
    {
        string before = Snapshot(p, start, pages);
        var ex = Assert.Throws<EngineException>(call);
        Assert.Equal(error, ex.Error);
        Assert.Equal(errno, ex.Errno);
        if (messagePart != null) Assert.Contains(messagePart, ex.Message);
        Assert.Equal(before, Snapshot(p, start, pages));
    }

    private static (EmulatedProcess, ulong) Setup()
    {
        var p = New();
        ulong a = MapAnon(p, 4 * Page);
        p.Mmap(a + 4 * Page, Page, Protection.Read, flags: MmapFlags.Fixed);
        p.Mmap(a + 5 * Page, Page, Protection.None, flags: MmapFlags.Fixed);
        p.Write(a, 8);
        Clear(p);
        return (p, a);
    }

    [Fact]
    public void SegmentationFaults()
    {
        var (p, a) = Setup();
        ulong end = a + 6 * Page;
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0, () => p.Write(end + 10, 8), $"0x{end + 10:x}");
        // A write that starts in a writable page and runs into the read-only one: nothing is written.
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0, () => p.Write(a + 3 * Page, 2 * Page), $"0x{a + 4 * Page:x}");
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0, () => p.Write(a + 4 * Page, 1), "write permission");
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0, () => p.Read(a + 5 * Page, 1), "read permission");
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0, () => p.Read(a, 7 * Page), $"0x{a + 5 * Page:x}");
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0, () => p.Read(a + 4 * Page, 3 * Page), $"0x{a + 5 * Page:x}");
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0, () => p.Write(EmulatedProcess.TaskSize - 4, 8));
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0,
            () => EmulatedWorkload.Run(p, a, 6 * Page, WorkloadPattern.Random, 100, 0.5, 1));
        p.GuardInstall(a + 2 * Page, Page);
        AssertFails(p, a, 8, EngineError.SegmentationFault, 0, () => p.Write(a, 3 * Page), "guard");
        p.GuardRemove(a + 2 * Page, Page);
        p.Write(a, 3 * Page);
    }

    [Fact]
    public void InvalidArguments()
    {
        var (p, a) = Setup();
        int e = Errno.EINVAL;
        var inv = EngineError.InvalidArgument;
        AssertFails(p, a, 8, inv, e, () => p.Munmap(a + 1, Page));
        AssertFails(p, a, 8, inv, e, () => p.Munmap(a, 0));
        AssertFails(p, a, 8, inv, e, () => p.Munmap(EmulatedProcess.TaskSize, Page));
        AssertFails(p, a, 8, inv, e, () => p.Mmap(null, 0, RW));
        AssertFails(p, a, 8, inv, e, () => p.Mmap(a + 1, Page, RW, flags: MmapFlags.Fixed));
        AssertFails(p, a, 8, inv, e, () => p.Mmap(null, Page, (Protection)8));
        AssertFails(p, a, 8, inv, e, () => p.Mprotect(a + 1, Page, RW));
        AssertFails(p, a, 8, inv, e, () => p.Mremap(a, Page, a + Page / 2, Page));
        AssertFails(p, a, 8, inv, e, () => p.Mremap(a, 2 * Page, a + Page, 2 * Page));   // overlap
        AssertFails(p, a, 8, inv, e, () => p.Mremap(a, Page, a + 10 * Page, 0));
        AssertFails(p, a, 8, inv, e, () => p.MadviseDontNeed(a + 7, Page));
        AssertFails(p, a, 8, inv, e, () => p.CollapseHugePage(a + Page));
        AssertFails(p, a, 8, inv, e, () => p.WriteClearRefs("7"u8));
        p.Mprotect(a, 0, Protection.None);   // zero length: nothing, as the kernel
    }

    [Fact]
    public void NotMapped()
    {
        var (p, a) = Setup();
        var nm = EngineError.EmulatorNotMapped;
        AssertFails(p, a, 8, nm, Errno.ENOMEM, () => p.Mprotect(a + 6 * Page, Page, Protection.Read), $"0x{a + 6 * Page:x}");
        AssertFails(p, a, 8, nm, Errno.ENOMEM, () => p.MadviseDontNeed(a + 6 * Page, 2 * Page));
        AssertFails(p, a, 8, nm, Errno.ENOMEM, () => p.SwapOut(a + 6 * Page, Page));
        AssertFails(p, a, 8, nm, Errno.EFAULT, () => p.Mremap(a + 6 * Page, Page, a + 20 * Page, Page));
        AssertFails(p, a, 8, nm, Errno.ENOMEM, () => p.ReadPageContent(a + 7 * Page, new byte[Page]));
        p.Munmap(a + 10 * Page, Page);   // unmapping nothing is fine
    }

    /// <summary>As the kernel: mprotect changes the VMAs up to a hole, madvise every mapped part, then ENOMEM.</summary>
    [Fact]
    public void HolesAfterTheStartFailAfterTheMappedPart()
    {
        var (p, a) = Setup();
        var ex = Assert.Throws<EngineException>(() => p.Mprotect(a, 8 * Page, Protection.Read));
        Assert.Equal(Errno.ENOMEM, ex.Errno);
        Assert.Equal("r--p", p.ReadMappings(false)[0].Permissions);
        Assert.Equal(a + 4 * Page, p.ReadMappings(false)[0].End);   // VM_ACCOUNT (it has anon pages) keeps it apart
        Assert.Equal(a + 6 * Page, p.ReadMappings(false)[1].End);   // the rest lost VM_ACCOUNT-free and merged
        Assert.Throws<EngineException>(() => p.MadviseDontNeed(a, 7 * Page));
        Assert.False(p.ReadEntry(a).Present);
    }

    [Fact]
    public void MmapPlacementIsTopDownAndDeterministic()
    {
        var p1 = New();
        var p2 = New();
        ulong a1 = MapAnon(p1, 3 * Page), b1 = MapAnon(p1, Page);
        ulong a2 = MapAnon(p2, 3 * Page), b2 = MapAnon(p2, Page);
        Assert.Equal(a1, a2);
        Assert.Equal(b1, b2);
        Assert.True(a1 + 3 * Page <= EmulatedProcess.MmapBase);
        Assert.Equal(a1 - Page, b1);   // just below, merged into one VMA
        Assert.Single(p1.ReadMappings(false));
        ulong h = MapAnon(p1, 3 * EmulatedProcess.HugePageBytes, huge: true);
        Assert.Equal(0UL, h % EmulatedProcess.HugePageBytes);
        ulong hint = 0x1000_0000;
        Assert.Equal(hint, p1.Mmap(hint, Page, RW).Start);
    }

    /// <summary>A move of several VMAs: EFAULT before 6.17; from then each VMA moves, gaps stay gaps.</summary>
    [Theory]
    [InlineData("6.1")]
    [InlineData("6.18")]
    public void MremapAcrossVmas(string profile)
    {
        var p = New(profile);
        ulong a = MapAnon(p, 4 * Page);
        p.Mprotect(a + Page, Page, Protection.Read);
        p.Munmap(a + 2 * Page, Page);
        p.Write(a, 8);
        ulong target = a + 16 * Page;
        if (!KernelProfile.Get(profile).MremapMovesMultipleVmas)
        {
            AssertFails(p, a, 20, EngineError.EmulatorNotMapped, Errno.EFAULT, () => p.Mremap(a, 4 * Page, target, 4 * Page));
            return;
        }
        p.Mremap(a, 4 * Page, target, 4 * Page);
        Assert.Equal(new[] { "rw-p", "r--p", "rw-p" }, p.ReadMappings(false).Select(m => m.Permissions));
        Assert.Equal(target + 2 * Page, p.ReadMappings(false)[1].End);
        Assert.True(p.ReadEntry(target).Present);
        Assert.Equal(0UL, p.ReadEntry(target + 2 * Page).Raw);
    }
}
