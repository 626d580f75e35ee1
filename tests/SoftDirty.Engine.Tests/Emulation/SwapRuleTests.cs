using System;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Tracking;
using Xunit;
using static SoftDirty.Tests.Emulation.Sd;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// The swap rules measured in round 25 on Debian's 6.1, 6.12, 7.2 and 7.3 with a zram swap (tests/vm/matrix.sh
/// SOFTDIRTY_MATRIX_SWAP, tests/scenarios/vm/swap.scenario), whose recorded prints tests/Pester/Security.Round25.Swap.Tests.ps1
/// compares whole. Each fact here is one of those prints.
/// </summary>
public class SwapRuleTests
{
    // One page of byte 5 swapped out, then a fork: both halves' entries refer to its slot.
    private static (EmulatedProcess Parent, EmulatedProcess Child, ulong Address) ForkedWithPageOut()
    {
        var parent = New("7.3");
        ulong a = MapAnon(parent, Page);
        parent.Write(a, Page, 5);
        parent.SwapOut(a, Page);
        return (parent, parent.Fork(), a);
    }

    private static byte FirstByte(EmulatedProcess p, ulong a)
    {
        Span<byte> one = stackalloc byte[1];
        Assert.Equal(1, p.ReadMemory(a, one));
        return one[0];
    }

    // swap-fork: a page swapped out before the fork is one swap slot of both; the first swap-in leaves it in the swap
    // cache and the second maps that same page, so both read it not exclusive (before: a copy each, both exclusive).
    [Theory]
    [InlineData("6.1")]
    [InlineData("7.3")]
    public void BothHalvesOfAForkMapTheOnePageSwappedInFromTheirSharedSlot(string profile)
    {
        var parent = New(profile);
        ulong a = MapAnon(parent, 2 * Page);
        parent.Write(a, 2 * Page, 5);
        Clear(parent);
        parent.Write(a, Page, 6);
        parent.SwapOut(a, 2 * Page);
        var child = parent.Fork();
        child.Read(a, Page);
        Assert.True(Entries(child, a, 1)[0] is { Present: true, Exclusive: true, SoftDirty: true });
        parent.Read(a, Page);
        var both = new[] { Entries(parent, a, 1)[0], Entries(child, a, 1)[0] };
        Assert.All(both, e => Assert.True(e is { Present: true, Exclusive: false, SoftDirty: true }));
    }

    // A write to the page the swap cache holds for another swap entry copies it: the other half still reads the bytes
    // of the swap-out (before the rule, it read the writer's bytes: the swap cache frame was reused in place).
    [Fact]
    public void AWriteToThePageOfASharedSlotCopiesItAndTheOtherHalfReadsTheOldBytes()
    {
        var (parent, child, a) = ForkedWithPageOut();
        child.Read(a, Page);      // swapped in, in the swap cache: the parent's entry still refers to the slot
        child.Write(a, Page, 9);  // copies
        Assert.Equal(9, FirstByte(child, a));
        Assert.Equal(5, FirstByte(parent, a));
        parent.Read(a, Page);
        Assert.Equal(5, FirstByte(parent, a));
        Assert.True(Entries(parent, a, 1)[0] is { Present: true, Exclusive: true });
        parent.Write(a, Page, 3);
        Assert.Equal(9, FirstByte(child, a));
        Assert.Equal(3, FirstByte(parent, a));
    }

    // mprotect to read-write does not make the swap cache's page writable while the other half's entry still refers to its
    // slot (the page is not exclusive): the write after it copies, and the other half swaps in the bytes of the swap-out.
    [Fact]
    public void MprotectLeavesThePageOfASharedSlotWriteProtected()
    {
        var (parent, child, a) = ForkedWithPageOut();
        child.Mprotect(a, Page, Protection.Read);
        child.Read(a, Page);
        child.Mprotect(a, Page, RW);
        child.Write(a, Page, 9);
        parent.Read(a, Page);
        Assert.Equal(5, FirstByte(parent, a));
        Assert.Equal(9, FirstByte(child, a));
    }

    // swap-fork-free: MADV_FREE leaves the swap cache's page of a slot the other half still refers to (folio_free_swap fails):
    // reclaim swaps it out again with its bytes, where a lazily freed page would be dropped and read as zeros.
    [Fact]
    public void MadviseFreeLeavesThePageOfASharedSlot()
    {
        var (parent, child, a) = ForkedWithPageOut();
        child.Read(a, Page);
        child.MadviseFree(a, Page);
        child.SwapOut(a, Page);
        Assert.True(Entries(child, a, 1)[0].Swapped);
        Assert.Equal(5, FirstByte(child, a));
    }

    // swap-fork-free: reclaim of the swap cache's page puts it back in its slot (the entry refers to that slot once more), so
    // the halves still share one page when both swap it in again (before: a new slot, and each half a page of its own).
    [Fact]
    public void ReclaimOfTheSwapCachesPageReturnsItToItsSlot()
    {
        var (parent, child, a) = ForkedWithPageOut();
        child.Read(a, Page);
        child.SwapOut(a, Page);
        child.Read(a, Page);
        parent.Read(a, Page);
        Assert.All(new[] { Entries(parent, a, 1)[0], Entries(child, a, 1)[0] }, e => Assert.True(e is { Present: true, Exclusive: false }));
        Assert.Equal(5, FirstByte(child, a));
    }

    // swap-shared: reclaim moves a page of shared anonymous memory from the page cache to swap, so a read fault's
    // fault-around no longer maps it (before: it stayed cached and was mapped around the fault); its bytes stay.
    [Theory]
    [InlineData("6.1")]
    [InlineData("7.3")]
    public void SharedMemoryPagedOutIsNotMappedAroundAFaultAndKeepsItsBytes(string profile)
    {
        var p = New(profile);
        ulong a = p.Mmap(null, 4 * Page, RW, MmapFlags.Shared).Start;
        p.Write(a, 4 * Page, 5);
        Clear(p);
        p.Write(a, 2 * Page, 6);
        p.SwapOut(a, 4 * Page);
        Assert.All(Entries(p, a, 4), e => Assert.False(e.Present || e.Swapped || e.SoftDirty));
        Assert.Equal(6, FirstByte(p, a + Page));   // read from the object (swap), no fault
        p.Read(a, Page);
        var e = Entries(p, a, 4);
        Assert.True(e[0] is { Present: true, SoftDirty: false });
        Assert.All(e[1..], x => Assert.False(x.Present));
        Assert.Equal([new AddressRange(a + Page, a + 4 * Page)], p.ObjectPages(a + Page, a + 4 * Page));
        p.Read(a + Page, 3 * Page);
        Assert.Equal(6, FirstByte(p, a + Page));
        Assert.Equal(5, FirstByte(p, a + 2 * Page));
    }
}
