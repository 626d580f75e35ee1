using System;
using System.Collections.Generic;
using SoftDirty;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>The pagemap entry codec, bit by bit (kernel-semantics.md section 1).</summary>
public class PagemapEntryTests
{
    private const ulong Present = 1UL << 63, Swapped = 1UL << 62, File = 1UL << 61;
    private const ulong SoftDirtyBit = 1UL << 55, ExclusiveBit = 1UL << 56, UffdWpBit = 1UL << 57, GuardBit = 1UL << 58;

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

    [Fact]
    public void MasksAndConstantsMatchTheKernelLayout()
    {
        Assert.Equal(0x007F_FFFF_FFFF_FFFFUL, PagemapEntry.FrameMask);
        Assert.Equal(0xFF80_0000_0000_0000UL, PagemapEntry.FlagMask);
        Assert.Equal(0x1FUL, PagemapEntry.SwapTypeMask);
        Assert.Equal(5, PagemapEntry.SwapTypeBits);
        Assert.Equal(8, PagemapEntry.Size);
        Assert.Equal(0x0080_0000_0000_0000UL, (ulong)PagemapFlags.SoftDirty);
        Assert.Equal(1UL << 56, (ulong)PagemapFlags.Exclusive);
        Assert.Equal(1UL << 57, (ulong)PagemapFlags.UffdWriteProtected);
        Assert.Equal(1UL << 58, (ulong)PagemapFlags.Guard);
        Assert.Equal(1UL << 61, (ulong)PagemapFlags.FileOrSharedAnon);
        Assert.Equal(1UL << 62, (ulong)PagemapFlags.Swapped);
        Assert.Equal(1UL << 63, (ulong)PagemapFlags.Present);
    }

    public static IEnumerable<object[]> SingleFlagBits() => new[]
    {
        new object[] { 55, "SoftDirty" },
        new object[] { 56, "Exclusive" },
        new object[] { 57, "UffdWriteProtected" },
        new object[] { 58, "Guard" },
        new object[] { 61, "FileOrSharedAnon" },
        new object[] { 62, "Swapped" },
        new object[] { 63, "Present" },
    };

    private static Dictionary<string, bool> Bools(PagemapEntry e) => new()
    {
        ["SoftDirty"] = e.SoftDirty,
        ["Exclusive"] = e.Exclusive,
        ["UffdWriteProtected"] = e.UffdWriteProtected,
        ["Guard"] = e.Guard,
        ["FileOrSharedAnon"] = e.FileOrSharedAnon,
        ["Swapped"] = e.Swapped,
        ["Present"] = e.Present,
    };

    [Theory]
    [MemberData(nameof(SingleFlagBits))]
    public void EachFlagBitSetsExactlyItsProperty(int bit, string property)
    {
        var e = new PagemapEntry(1UL << bit);
        foreach (var (name, value) in Bools(e))
            Assert.True(value == (name == property), $"bit {bit}: {name} = {value}");
        Assert.Equal((PagemapFlags)(1UL << bit), e.Flags);
        Assert.Equal(0UL, e.Frame);
        Assert.Equal(1UL << bit, e.Raw);
    }

    [Theory]
    [MemberData(nameof(SingleFlagBits))]
    public void EachFlagPropertyIsClearWhenOnlyItsBitIsClear(int bit, string property)
    {
        var e = new PagemapEntry(ulong.MaxValue & ~(1UL << bit));
        foreach (var (name, value) in Bools(e))
            Assert.True(value == (name != property), $"all but bit {bit}: {name} = {value}");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(31)]
    [InlineData(53)]
    [InlineData(54)]
    public void EveryFrameBitIsPartOfThePfn(int bit)
    {
        var e = new PagemapEntry(Present | (1UL << bit));
        Assert.Equal(1UL << bit, e.Pfn);
        Assert.Equal(1UL << bit, e.Frame);
        Assert.Equal(PagemapFlags.Present, e.Flags);
        Assert.Null(e.SwapType);
        Assert.Null(e.SwapOffset);
    }

    [Fact]
    public void PfnIsBits0To54Only()
    {
        var e = new PagemapEntry(ulong.MaxValue);
        Assert.Equal(0x007F_FFFF_FFFF_FFFFUL, e.Pfn);
        var flagsOnly = new PagemapEntry(Present | SoftDirtyBit | ExclusiveBit | UffdWpBit | GuardBit | File | 0xABCUL);
        Assert.Equal(0xABCUL, flagsOnly.Pfn);
    }

    [Theory]
    [InlineData(0x0000_0000_0001_2345UL)] // frame but not present: none of it is a PFN
    [InlineData(Present)]                 // present, frame hidden (no CAP_SYS_ADMIN)
    [InlineData(Present | SoftDirtyBit | ExclusiveBit)]
    [InlineData(Swapped | 0x1234UL)]      // swapped: the frame is type|offset, not a PFN
    [InlineData(0UL)]
    public void PfnIsNullWhenNotPresentOrHidden(ulong raw)
    {
        Assert.Null(new PagemapEntry(raw).Pfn);
    }

    [Theory]
    [InlineData(0b00001UL, 1, 0UL)]
    [InlineData(0b11111UL, 31, 0UL)]
    [InlineData(0b100000UL, 0, 1UL)]
    [InlineData((0x1234UL << 5) | 7, 7, 0x1234UL)]
    [InlineData(PagemapEntry.FrameMask, 31, (1UL << 50) - 1)]
    [InlineData(1UL << 54, 0, 1UL << 49)]
    public void SwappedEntryDecodesTypeBits0To4AndOffsetBits5To54(ulong frame, int type, ulong offset)
    {
        var e = new PagemapEntry(Swapped | SoftDirtyBit | frame);
        Assert.Equal(type, e.SwapType);
        Assert.Equal(offset, e.SwapOffset);
        Assert.Null(e.Pfn);
        Assert.True(e.SoftDirty);
        Assert.False(e.Present);
    }

    [Theory]
    [InlineData(Swapped)]                      // hidden: frame zeroed for openers without CAP_SYS_ADMIN
    [InlineData(Swapped | SoftDirtyBit | GuardBit)]
    [InlineData(Present | 0x1234UL)]           // present: not a swap entry
    [InlineData(0x1234UL)]                     // neither
    [InlineData(SoftDirtyBit)]                 // none entry in a VM_SOFTDIRTY VMA
    public void SwapFieldsAreNullWhenNotSwappedOrHidden(ulong raw)
    {
        var e = new PagemapEntry(raw);
        Assert.Null(e.SwapType);
        Assert.Null(e.SwapOffset);
    }

    [Fact]
    public void Bits59And60AreNoFlag()
    {
        var e = new PagemapEntry((1UL << 59) | (1UL << 60));
        foreach (var (name, value) in Bools(e)) Assert.False(value, name);
        Assert.Null(e.Pfn);
        Assert.Null(e.SwapType);
        Assert.Equal(0UL, e.Frame);
        Assert.Equal((1UL << 59) | (1UL << 60), e.Raw);
    }

    [Theory]
    [InlineData(1UL, PagemapFlags.None)]
    [InlineData(0x12345UL, PagemapFlags.SoftDirty | PagemapFlags.Exclusive)]
    [InlineData(PagemapEntry.FrameMask, PagemapFlags.SoftDirty | PagemapFlags.Exclusive | PagemapFlags.UffdWriteProtected | PagemapFlags.Guard | PagemapFlags.FileOrSharedAnon)]
    public void ForPresentRoundTrips(ulong pfn, PagemapFlags flags)
    {
        var e = PagemapEntry.ForPresent(pfn, flags);
        Assert.True(e.Present);
        Assert.False(e.Swapped);
        Assert.Equal(pfn, e.Pfn);
        Assert.Equal(flags | PagemapFlags.Present, e.Flags);
        Assert.Equal(e, new PagemapEntry(e.Raw));
        Assert.Equal(Present | (ulong)flags | pfn, e.Raw);
    }

    [Fact]
    public void ForPresentMasksAnOversizePfnAndKeepsItOutOfTheFlags()
    {
        var e = PagemapEntry.ForPresent(ulong.MaxValue);
        Assert.Equal(PagemapEntry.FrameMask, e.Pfn);
        Assert.Equal(PagemapFlags.Present, e.Flags);
        var e2 = PagemapEntry.ForPresent((1UL << 55) | 5);
        Assert.Equal(5UL, e2.Pfn);
        Assert.False(e2.SoftDirty);
    }

    [Fact]
    public void ForPresentWithPfnZeroReadsAsHidden()
    {
        var e = PagemapEntry.ForPresent(0, PagemapFlags.SoftDirty);
        Assert.True(e.Present);
        Assert.Null(e.Pfn);
        Assert.Equal(Present | SoftDirtyBit, e.Raw);
    }

    [Theory]
    [InlineData(1, 0UL)]
    [InlineData(0, 1UL)]
    [InlineData(3, 0x1000UL)]
    [InlineData(31, (1UL << 50) - 1)]
    public void ForSwappedRoundTrips(int type, ulong offset)
    {
        var e = PagemapEntry.ForSwapped(type, offset, PagemapFlags.SoftDirty);
        Assert.True(e.Swapped);
        Assert.False(e.Present);
        Assert.True(e.SoftDirty);
        Assert.Equal(type, e.SwapType);
        Assert.Equal(offset, e.SwapOffset);
        Assert.Null(e.Pfn);
        Assert.Equal(Swapped | SoftDirtyBit | (offset << 5) | (ulong)(uint)type, e.Raw);
    }

    [Fact]
    public void ForSwappedMasksOversizeTypeAndOffset()
    {
        var e = PagemapEntry.ForSwapped(32 + 3, 1UL << 50 | 9); // type keeps 5 bits, offset keeps 50
        Assert.Equal(3, e.SwapType);
        Assert.Equal(9UL, e.SwapOffset);
        Assert.Equal(PagemapFlags.Swapped, e.Flags);
        var max = PagemapEntry.ForSwapped(-1, ulong.MaxValue);
        Assert.Equal(31, max.SwapType);
        Assert.Equal((1UL << 50) - 1, max.SwapOffset);
        Assert.Equal(PagemapFlags.Swapped, max.Flags);
    }

    [Fact]
    public void ForSwappedTypeZeroOffsetZeroReadsAsHidden()
    {
        var e = PagemapEntry.ForSwapped(0, 0);
        Assert.True(e.Swapped);
        Assert.Null(e.SwapType);
        Assert.Null(e.SwapOffset);
    }

    [Fact]
    public void FactoriesDropTheAlwaysZeroBits59And60()
    {
        var bogus = (PagemapFlags)((1UL << 59) | (1UL << 60)) | PagemapFlags.SoftDirty;
        Assert.Equal(Present | SoftDirtyBit | 7, PagemapEntry.ForPresent(7, bogus).Raw);
        Assert.Equal(Swapped | SoftDirtyBit | (2UL << 5) | 1, PagemapEntry.ForSwapped(1, 2, bogus).Raw);
    }

    [Fact]
    public void FlagsIsTheHighBitsOnly()
    {
        var e = new PagemapEntry(Present | File | ExclusiveBit | 0x7F_FFFF_FFFF_FFFFUL);
        Assert.Equal(PagemapFlags.Present | PagemapFlags.FileOrSharedAnon | PagemapFlags.Exclusive, e.Flags);
        Assert.Equal(PagemapFlags.None, new PagemapEntry(PagemapEntry.FrameMask).Flags);
    }

    [Fact]
    public void EqualityIsOnTheRawValue()
    {
        var a = new PagemapEntry(Present | 42);
        var b = PagemapEntry.ForPresent(42);
        var c = PagemapEntry.ForPresent(43);
        Assert.True(a == b);
        Assert.False(a != b);
        Assert.True(a != c);
        Assert.True(a.Equals(b));
        Assert.True(a.Equals((object)b));
        Assert.False(a.Equals((object)(Present | 42)));
        Assert.False(a.Equals(null));
        Assert.Equal(a.GetHashCode(), b.GetHashCode());
        Assert.Equal(default, new PagemapEntry(0));
    }

    [Theory]
    [InlineData(0UL, "none")]
    [InlineData(Present | 0x12345UL, "present pfn=0x12345")]
    [InlineData(Present, "present pfn=hidden")]
    [InlineData(Present | SoftDirtyBit | ExclusiveBit | 0xabcUL, "present pfn=0xabc SoftDirty, Exclusive")]
    [InlineData(Swapped | (0x1000UL << 5) | 3, "swapped type=3 offset=4096")]
    [InlineData(Swapped | SoftDirtyBit, "swapped type=hidden offset=hidden SoftDirty")]
    [InlineData(SoftDirtyBit, "not present SoftDirty")]
    [InlineData(Swapped | GuardBit | 0x20, "swapped type=0 offset=1 Guard")]
    [InlineData(Present | File | UffdWpBit | 1, "present pfn=0x1 UffdWriteProtected, FileOrSharedAnon")]
    public void ToStringDescribesTheEntry(ulong raw, string expected)
    {
        Assert.Equal(expected, new PagemapEntry(raw).ToString());
    }

    [Fact]
    public void ClearRefsTypesHaveTheKernelValues()
    {
        Assert.Equal(1, (int)ClearRefsType.All);
        Assert.Equal(2, (int)ClearRefsType.Anonymous);
        Assert.Equal(3, (int)ClearRefsType.Mapped);
        Assert.Equal(4, (int)ClearRefsType.SoftDirty);
        Assert.Equal(5, (int)ClearRefsType.PeakRss);
    }
}
