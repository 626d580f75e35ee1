using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;

namespace SoftDirty.Tests.Emulation;

/// <summary>The VMA list keeps the kernel's meanings: vma_lookup contains, find_vma ends after; split, merge, range.</summary>
public class VmaListTests
{
    private const ulong Page = EmulatedProcess.PageBytes;
    private const Protection RW = Protection.Read | Protection.Write;

    // Two VMAs with a one-page hole: [0x10000, 0x12000) and [0x13000, 0x15000).
    private static VmaList TwoWithAHole(bool sticky = false)
    {
        var list = new VmaList(sticky);
        list.Insert(Anon(0x13000, 0x15000));
        list.Insert(Anon(0x10000, 0x12000));
        return list;
    }

    private static Vma Anon(ulong start, ulong end) =>
        new() { Start = start, End = end, Protection = RW, PageOffset = start / Page };

    [Fact]
    public void VmaLookupFindsOnlyTheVmaContainingTheAddress()
    {
        var list = TwoWithAHole();
        Assert.Equal(0x10000UL, list.VmaLookup(0x11FFF)!.Start);
        Assert.Null(list.VmaLookup(0x12000));   // the hole
        Assert.Null(list.VmaLookup(0xF000));    // below every VMA
        Assert.Null(list.VmaLookup(0x15000));   // above every VMA
    }

    [Fact]
    public void FindVmaFindsTheFirstVmaEndingAfterTheAddressEvenAcrossAHole()
    {
        var list = TwoWithAHole();
        Assert.Equal(0x13000UL, list.FindVma(0x12000)!.Start);   // in the hole: the next VMA, as find_vma
        Assert.Equal(0x10000UL, list.FindVma(0xF000)!.Start);
        Assert.Equal(0x13000UL, list.FindVma(0x14FFF)!.Start);
        Assert.Null(list.FindVma(0x15000));
        Assert.Equal(list.Count, list.FindVmaIndex(0x15000));
    }

    [Fact]
    public void IntersectionHoleAndRangeSeeTheGap()
    {
        var list = TwoWithAHole();
        Assert.Null(list.FindVmaIntersection(0x12000, 0x13000));
        Assert.Equal(0x13000UL, list.FindVmaIntersection(0x12000, 0x13001)!.Start);
        Assert.Equal(0x12000UL, list.FirstHole(0x10000, 0x15000));
        Assert.Null(list.FirstHole(0x13000, 0x15000));
        Assert.Equal(new ulong[] { 0x10000, 0x13000 }, list.Range(0x11000, 0x14000).Select(v => v.Start).ToArray());
    }

    [Fact]
    public void SplitThenMergeRestoresOneVma()
    {
        var list = TwoWithAHole();
        list.Split(0x11000);
        Assert.Equal(3, list.Count);
        Assert.Equal(0x11000UL, list.VmaLookup(0x11000)!.Start);
        Assert.Equal(0x11000UL, list[1].PageOffset * Page);
        int i = list.Merge(list.FindVmaIndex(0x11000));
        Assert.Equal(0, i);
        Assert.Equal(2, list.Count);
        Assert.Equal((0x10000UL, 0x12000UL), (list[0].Start, list[0].End));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void MergeKeepsTheSurvivorsSoftDirtyUnlessSticky(bool sticky, bool softDirty)
    {
        var list = new VmaList(sticky);
        list.Insert(Anon(0x10000, 0x11000));
        var next = Anon(0x11000, 0x12000);
        next.Flags = VmaFlags.SoftDirty;
        int i = list.Merge(list.Insert(next));
        Assert.Single(list);
        Assert.Equal(softDirty, list[i].SoftDirty);
    }

    [Fact]
    public void UnmappedAreaTopDownTakesTheHighestAlignedGap()
    {
        var list = TwoWithAHole();
        Assert.Equal(0x12000UL, list.UnmappedAreaTopDown(Page, Page, 0x10000, 0x13000));
        Assert.Null(list.UnmappedAreaTopDown(2 * Page, Page, 0x10000, 0x15000));
        Assert.Equal(0x15000UL, list.UnmappedAreaTopDown(Page, Page, 0x10000, 0x16000));
    }
}
