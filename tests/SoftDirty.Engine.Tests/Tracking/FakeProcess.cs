using System;
using System.Collections.Generic;
using System.Text;
using SoftDirty;
using SoftDirty.Tracking;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// A test double of a process: one anonymous mapping of pages held in arrays, with soft-dirty bits, pagemap
/// entries, /proc/PID/mem reads and a random workload in emulated time (IWorkloadDriver). The tracker and
/// image tests use it where they set each page's bits and the workload's rate directly; the emulator
/// (EmulatedProcess, EmulatedTarget) implements the same interfaces and is what tests of kernel rules use.
/// </summary>
internal sealed class FakeProcess : IPageSource, IWorkloadDriver, IFreezable
{
    public const ulong Base = 0x7f0000000000;
    private readonly byte[]?[] _pages;
    private readonly bool[] _softDirty;
    private readonly Random _random;

    public FakeProcess(int pages, bool softDirty = false, int seed = 1)
    {
        _pages = new byte[]?[pages];
        _softDirty = new bool[pages];
        _random = new Random(seed);
        Features = new KernelFeatures { KernelRelease = "fake", SoftDirty = softDirty, SoftDirtyReason = softDirty ? null : "fake kernel without soft-dirty", Emulated = true };
    }

    public int ProcessId => 424242;
    public string Name => "fake";
    public int PageSize => 4096;
    public KernelFeatures Features { get; }
    public int Pages => _pages.Length;
    /// <summary>Pages written per emulated second by <see cref="Advance"/>, within [HotFirst, HotFirst + HotCount).</summary>
    public double WriteRate { get; set; }
    public int HotFirst { get; set; }
    public int HotCount { get; set; }
    public int FreezeCount { get; private set; }
    public bool Frozen { get; private set; }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1822", Justification = "Read as p.Address(i) beside the instance's other members.")]
    public ulong Address(int page) => Base + (ulong)page * 4096;

    public void Write(int page, byte value, int offset = 0)
    {
        if (Frozen) throw new InvalidOperationException("written while frozen");
        _pages[page] ??= new byte[4096];
        _pages[page]![offset] = value;
        _softDirty[page] = true;
    }

    public void WriteRandom(int page)
    {
        _pages[page] ??= new byte[4096];
        _random.NextBytes(_pages[page]!.AsSpan(0, 64));
        _softDirty[page] = true;
    }

    public void Discard(int page) { _pages[page] = null; _softDirty[page] = false; }
    public byte[] Content(int page) => _pages[page] is { } p ? (byte[])p.Clone() : new byte[4096];

    public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => new[]
    {
        new MemoryMapping { ProcessId = ProcessId, Start = Base, End = Address(_pages.Length), Protection = Protection.Read | Protection.Write, Kind = MappingKind.Anonymous },
    };

    public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            long idx = (long)(firstPage + (ulong)i) - (long)(Base / 4096);
            if (idx < 0 || idx >= _pages.Length || _pages[idx] is null) { destination[i] = default; continue; }
            // Its own page, as a written private anonymous page is (PM_MMAP_EXCLUSIVE): a page that is not exclusive (the
            // zero page, one shared with a fork) is compared by content in every increment (PageWalk.NotExclusive).
            destination[i] = PagemapEntry.ForPresent((ulong)idx + 100, PagemapFlags.Exclusive | (_softDirty[idx] ? PagemapFlags.SoftDirty : PagemapFlags.None));
        }
        return destination.Length;
    }

    public int ReadMemory(ulong address, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            ulong a = address + (ulong)done;
            if (a < Base || a >= Address(_pages.Length)) break;
            int idx = (int)((a - Base) / 4096), off = (int)((a - Base) % 4096);
            int n = Math.Min(4096 - off, destination.Length - done);
            if (_pages[idx] is { } p) p.AsSpan(off, n).CopyTo(destination.Slice(done, n));
            else destination.Slice(done, n).Clear();
            done += n;
        }
        return done;
    }

    public int WriteClearRefs(ReadOnlySpan<byte> text)
    {
        if (Encoding.ASCII.GetString(text).Trim() == "4") Array.Clear(_softDirty);
        return text.Length;
    }

    public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) =>
        throw new EngineException(EngineError.PagemapScanNotSupported, "fake: no PAGEMAP_SCAN");

    public void Advance(TimeSpan interval, System.Threading.CancellationToken cancel)
    {
        int n = (int)Math.Round(WriteRate * interval.TotalSeconds);
        int count = HotCount > 0 ? HotCount : _pages.Length;
        for (int i = 0; i < n; i++) WriteRandom(HotFirst + _random.Next(count));
    }

    public void Freeze() { Frozen = true; FreezeCount++; }
    public void Thaw() => Frozen = false;
    public void Dispose() { }
}
