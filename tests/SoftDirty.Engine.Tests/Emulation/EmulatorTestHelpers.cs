using SoftDirty;
using SoftDirty.Emulation;
using Xunit;

namespace SoftDirty.Tests.Emulation;

/// <summary>The selftests' helpers: clear = write "4" to clear_refs; check = bit 55, cross-checked with PAGEMAP_SCAN where the profile has it.</summary>
internal static class Sd
{
    public const ulong Page = EmulatedProcess.PageBytes;
    public const Protection RW = Protection.Read | Protection.Write;

    public static void Clear(EmulatedProcess p) => p.ClearRefs(ClearRefsType.SoftDirty);

    public static bool Check(EmulatedProcess p, ulong address)
    {
        bool bit = p.ReadEntry(address).SoftDirty;
        if (p.Profile.HasPagemapScan)
        {
            var request = new PagemapScanRequest
            {
                Start = address & ~(Page - 1), End = (address & ~(Page - 1)) + Page,
                CategoryMask = PageCategory.SoftDirty, ReturnMask = PageCategory.SoftDirty,
            };
            var regions = new PageRegion[1];
            int n = p.ScanPagemap(ref request, regions);
            Assert.Equal(bit, n == 1);
        }
        return bit;
    }

    public static EmulatedProcess New(string profile = KernelProfile.DefaultName, bool noSoftDirty = false, bool privileged = false)
        => EmulatedProcess.Create("test", profile, noSoftDirty, privileged);

    public static ulong MapAnon(EmulatedProcess p, ulong length = Page, Protection prot = RW, bool huge = false)
        => p.Mmap(null, length, prot, flags: huge ? MmapFlags.HugePage : MmapFlags.None).Start;

    /// <summary>The pagemap entries of <paramref name="pages"/> pages at <paramref name="a"/>.</summary>
    public static PagemapEntry[] Entries(EmulatedProcess p, ulong a, int pages)
    {
        var e = new PagemapEntry[pages];
        p.ReadPagemap(a / Page, e);
        return e;
    }

    public static PageRegion[] Scan(EmulatedProcess p, ref PagemapScanRequest r, int vecLen = 64)
    {
        var regions = new PageRegion[vecLen];
        int n = p.ScanPagemap(ref r, regions);
        return regions[..n];
    }

    public static TheoryData<string> AllProfiles() => new() { "6.1", "6.18", "6.19" };
}
