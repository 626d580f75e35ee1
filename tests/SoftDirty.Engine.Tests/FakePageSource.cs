using System;
using System.Collections.Generic;
using SoftDirty;

namespace SoftDirty.Tests;

/// <summary>
/// An in-memory page source for PageMapReader tests: pagemap entries held in a dictionary of runs, pread
/// that returns 0 for pages outside any mapping and stops at TaskEndPage, and a PAGEMAP_SCAN that follows the
/// kernel's rules (invert, mask, anyof, return mask, merging of equal contiguous output, vec_len and max_pages
/// cuts with walk_end, no pages outside VMAs) for the categories PRESENT, SWAPPED, SOFT_DIRTY, FILE and GUARD.
/// </summary>
internal sealed class FakePageSource : IPageSource
{
    public const int Ps = 4096;
    private readonly Dictionary<ulong, PagemapEntry> _entries = new();
    private readonly List<MemoryMapping> _mappings = new();

    public FakePageSource(bool pagemapScan = true)
    {
        Features = new KernelFeatures { KernelRelease = "fake", PagemapScan = pagemapScan, PagemapScanReason = pagemapScan ? null : "fake kernel without PAGEMAP_SCAN" };
    }

    public int ProcessId => 4242;
    public string Name => "fake";
    public int PageSize => Ps;
    public KernelFeatures Features { get; set; }
    /// <summary>Pages at or above this index read short, as past the task size.</summary>
    public ulong TaskEndPage { get; set; } = 0x7FFF_FFFF_F000UL / Ps;
    /// <summary>Set walk_end back to the request's start when the vector fills (the quirk measured on 6.18).</summary>
    public bool WalkEndQuirk { get; set; }

    public int PreadCalls { get; private set; }
    public long EntriesRead { get; private set; }
    public long ReadCalls { get; private set; }
    public int MaxPreadLength { get; private set; }
    public int ScanCalls { get; private set; }
    public List<(ulong FirstPage, int Length)> Preads { get; } = new();

    public IReadOnlyList<MemoryMapping> Mappings => _mappings;

    public MemoryMapping AddMapping(ulong start, ulong end, string path = "", MappingKind kind = MappingKind.Anonymous)
    {
        var m = new MemoryMapping { ProcessId = ProcessId, Start = start, End = end, Path = path, Kind = kind, Protection = Protection.Read | Protection.Write };
        _mappings.Add(m);
        _mappings.Sort((a, b) => a.Start.CompareTo(b.Start));
        return m;
    }

    public void Set(ulong address, PagemapEntry e) => _entries[address / Ps] = e;

    private bool InVma(ulong page)
    {
        ulong a = page * Ps;
        foreach (var m in _mappings) if (m.Contains(a)) return true;
        return false;
    }

    public PagemapEntry Get(ulong page) => InVma(page) && _entries.TryGetValue(page, out var e) ? e : default;

    public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => _mappings;

    public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination)
    {
        PreadCalls++;
        Preads.Add((firstPage, destination.Length));
        MaxPreadLength = Math.Max(MaxPreadLength, destination.Length);
        int n = 0;
        for (; n < destination.Length; n++)
        {
            ulong page = firstPage + (ulong)n;
            if (page >= TaskEndPage) break;
            destination[n] = Get(page);
        }
        EntriesRead += n;
        ReadCalls++;
        return n;
    }

    /// <summary>Memory reads as zero bytes inside mappings and stops at the first unmapped page.</summary>
    public int ReadMemory(ulong address, Span<byte> destination)
    {
        int n = 0;
        while (n < destination.Length && InVma((address + (ulong)n) / Ps)) destination[n++] = 0;
        return n;
    }

    public int WriteClearRefs(ReadOnlySpan<byte> text) => text.Length;

    /// <summary>The PAGEMAP_SCAN categories of a page, as the kernel derives them from the same state as the entry.</summary>
    public static PageCategory CategoriesOf(PagemapEntry e)
    {
        PageCategory c = 0;
        if (e.Present) c |= PageCategory.Present;
        if (e.Swapped) c |= PageCategory.Swapped;
        if (e.SoftDirty) c |= PageCategory.SoftDirty;
        if (e.FileOrSharedAnon) c |= PageCategory.File;
        if (e.Guard) c |= PageCategory.Guard;
        return c;
    }

    public int ScanPagemap(ref PagemapScanRequest r, Span<PageRegion> regions)
    {
        ScanCalls++;
        if (r.Start % Ps != 0 || (r.Flags & ~PagemapScanRequest.ValidFlags) != 0
            || ((r.CategoryMask | r.CategoryInverted | r.CategoryAnyOf | r.ReturnMask) & ~PagemapScanRequest.ValidCategories) != 0)
            throw new EngineException(EngineError.InvalidArgument, "EINVAL", ProcessId, Errno.EINVAL);
        ulong end = (r.End + Ps - 1) / Ps * Ps;
        ulong taskEnd = TaskEndPage * Ps;
        if (end > taskEnd) end = taskEnd;
        int n = 0;
        ulong found = 0;
        ulong walkEnd = Math.Max(end, r.Start);
        for (ulong a = r.Start; a < end; a += Ps)
        {
            if (!InVma(a / Ps)) continue;
            var cats = CategoriesOf(Get(a / Ps));
            if (!r.Matches(cats)) continue;
            if (r.MaxPages != 0 && found == r.MaxPages) { walkEnd = a; break; }
            var output = cats & r.ReturnMask;
            if (n > 0 && regions[n - 1].End == a && regions[n - 1].Categories == output)
                regions[n - 1].End = a + Ps;
            else if (n == regions.Length) { walkEnd = WalkEndQuirk ? r.Start : a; break; }
            else regions[n++] = new PageRegion(a, a + Ps, output);
            found++;
        }
        r.WalkEnd = walkEnd;
        return n;
    }

    public void Dispose() { }

    // ---------------- random data ----------------

    /// <summary>A random entry of a kind the kernel produces: none, none in a VM_SOFTDIRTY VMA, present, swapped, guard.</summary>
    public static PagemapEntry RandomEntry(Random rng)
    {
        PagemapFlags Maybe(PagemapFlags f, int oneIn) => rng.Next(oneIn) == 0 ? f : PagemapFlags.None;
        switch (rng.Next(6))
        {
            case 0: return default;
            case 1: return new PagemapEntry((ulong)PagemapFlags.SoftDirty);
            case 2:
            case 3:
                return PagemapEntry.ForPresent((ulong)rng.NextInt64(0, 1L << 40),
                    Maybe(PagemapFlags.SoftDirty, 2) | Maybe(PagemapFlags.Exclusive, 2) | Maybe(PagemapFlags.FileOrSharedAnon, 3) | Maybe(PagemapFlags.UffdWriteProtected, 5));
            case 4:
                return PagemapEntry.ForSwapped(rng.Next(32), (ulong)rng.NextInt64(1, 1L << 30), Maybe(PagemapFlags.SoftDirty, 2) | Maybe(PagemapFlags.FileOrSharedAnon, 4));
            default:
                return new PagemapEntry((ulong)(PagemapFlags.Swapped | PagemapFlags.Guard | Maybe(PagemapFlags.SoftDirty, 2)));
        }
    }

    /// <summary>Fills [start, end) with runs of random entries (runs make contiguous regions).</summary>
    public void FillRandom(Random rng, ulong start, ulong end, int maxRun = 8)
    {
        ulong a = start;
        while (a < end)
        {
            var e = RandomEntry(rng);
            int run = rng.Next(1, maxRun + 1);
            for (int i = 0; i < run && a < end; i++, a += Ps)
                Set(a, e.Present ? PagemapEntry.ForPresent(e.Frame + (ulong)i, e.Flags) : e);
        }
    }
}
