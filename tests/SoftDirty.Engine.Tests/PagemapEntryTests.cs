using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

public class PagemapEntryTests
{
    [Fact]
    public void PresentEntryDecodesPfnAndFlags()
    {
        var e = new PagemapEntry(0x8180_0000_0001_2345UL);
        Assert.True(e.Present);
        Assert.False(e.Swapped);
        Assert.True(e.SoftDirty);
        Assert.True(e.Exclusive);
        Assert.Equal(0x12345UL, e.Pfn);
    }
}
