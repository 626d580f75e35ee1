using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Issue 13, fifth attack round, at the engine: pages a tracker cannot see change (files and shared memory, mappings
/// made read-only after a write, a selection wider than the parent's) must be compared by content whatever the
/// tracker's candidates say (<see cref="ImageTracking.Untracked"/>), while private writable memory keeps trusting them;
/// and the private folder of a destination with a long name must itself be a legal name (<see cref="PrivateOutput.WorkName"/>).
/// The real-process and emulator counterparts are in tests/Pester/Security.Round5.Images.Tests.ps1.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageRound5Tests : IDisposable
{
    private const int Pages = 16, Half = Pages / 2;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdround5-" + Guid.NewGuid().ToString("n"));

    public ImageRound5Tests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>
    /// A <see cref="FakeProcess"/> seen as two mappings of <see cref="Half"/> pages ([0, Half) and [Half, Pages)),
    /// the first with <see cref="FirstProtection"/> and <see cref="FirstShared"/>, and with the pages in
    /// <see cref="FilePages"/> marked file-or-shared in the pagemap (a page cache page).
    /// </summary>
    private sealed class Layout : IPageSource
    {
        private readonly FakeProcess _inner;
        public Layout(FakeProcess inner) => _inner = inner;
        public Protection FirstProtection { get; set; } = Protection.Read | Protection.Write;
        public bool FirstShared { get; set; }
        public HashSet<int> FilePages { get; } = new();
        public int ProcessId => _inner.ProcessId;
        public string Name => _inner.Name;
        public int PageSize => _inner.PageSize;
        public KernelFeatures Features => _inner.Features;
        public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => new[]
        {
            new MemoryMapping { ProcessId = ProcessId, Start = _inner.Address(0), End = _inner.Address(Half), Protection = FirstProtection, Shared = FirstShared, Kind = MappingKind.Anonymous, Path = "first" },
            new MemoryMapping { ProcessId = ProcessId, Start = _inner.Address(Half), End = _inner.Address(Pages), Protection = Protection.Read | Protection.Write, Kind = MappingKind.Anonymous, Path = "second" },
        };
        public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination)
        {
            int n = _inner.ReadPagemap(firstPage, destination);
            for (int i = 0; i < n; i++)
            {
                long page = (long)(firstPage + (ulong)i) - (long)(FakeProcess.Base / 4096);
                if (destination[i].Present && FilePages.Contains((int)page))
                    destination[i] = PagemapEntry.ForPresent(destination[i].Frame, PagemapFlags.FileOrSharedAnon);
            }
            return n;
        }
        public int ReadMemory(ulong address, Span<byte> destination) => _inner.ReadMemory(address, destination);
        public int WriteClearRefs(ReadOnlySpan<byte> text) => _inner.WriteClearRefs(text);
        public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) => _inner.ScanPagemap(ref request, regions);
        public void Dispose() { }
    }

    /// <summary>What a tracker that saw no write answers.</summary>
    private static DirtyPageSet NothingWritten() => new(TrackingMethod.SoftDirty, 4096, Array.Empty<AddressRange>(), 0, TimeSpan.Zero);

    private static (FakeProcess Process, Layout Source) NewProcess(int seed)
    {
        var p = new FakeProcess(Pages, seed: seed);
        for (int i = 0; i < Pages; i++) p.WriteRandom(i);
        return (p, new Layout(p));
    }

    /// <summary>Whether the chain ending at <paramref name="leaf"/> resolves to exactly the process's present memory (also used by later rounds).</summary>
    internal static void AssertChainHolds(string leaf, FakeProcess p)
    {
        Assert.True(ImageVerifier.Test(leaf).Valid);
        using var chain = ImageReader.Chain(leaf);
        var pages = ChainPages.Of(chain);
        for (int i = 0; i < p.Pages; i++)
            Assert.True(pages.TryGet(p.Address(i), out var h) && h == PageHash.Fast128(p.Content(i), chain[0].PageKey), $"page {i} of the chain is not the process's");
    }

    [Fact]
    public void PagesOfFilesAndSharedMemoryAreComparedThoughTheTrackerSawNoWrite()
    {
        // Before the fix the increment trusted the candidates alone: a page another process (or write(2)) changed in
        // a memfd or file mapping kept its parent's bytes, and Test-MemoryImage called the chain valid.
        var (p, source) = NewProcess(51);
        source.FilePages.UnionWith(new[] { 2, 3, 10 });
        var parent = Path.Combine(_dir, "file-0");
        ImageWriter.Save(source, parent, null, TrackingMethod.Hash, null);
        foreach (var i in new[] { 3, 10 }) p.WriteRandom(i);
        var child = ImageWriter.Save(source, Path.Combine(_dir, "file-1"), parent, TrackingMethod.SoftDirty, NothingWritten());
        Assert.Equal(2UL, child.Manifest.DataPages);
        AssertChainHolds(child.Path, p);
    }

    [Theory]
    [InlineData(Protection.Read)]
    [InlineData(Protection.None)]
    public void PagesOfAMappingNotWritableNowAreComparedThoughTheTrackerSawNoWrite(Protection now)
    {
        // WriteProtect watches writable mappings only: a page written and then made read-only (or PROT_NONE) was lost.
        var (p, source) = NewProcess(52);
        var parent = Path.Combine(_dir, $"prot-{now}-0");
        ImageWriter.Save(source, parent, null, TrackingMethod.Hash, null);
        p.WriteRandom(1);
        source.FirstProtection = now;
        var child = ImageWriter.Save(source, Path.Combine(_dir, $"prot-{now}-1"), parent, TrackingMethod.WriteProtect, NothingWritten());
        Assert.Equal(1UL, child.Manifest.DataPages);
        AssertChainHolds(child.Path, p);
    }

    [Fact]
    public void PagesOfASharedMappingAreComparedThoughTheTrackerSawNoWrite()
    {
        var (p, source) = NewProcess(53);
        source.FirstShared = true;
        var parent = Path.Combine(_dir, "shared-0");
        ImageWriter.Save(source, parent, null, TrackingMethod.Hash, null);
        p.WriteRandom(4);
        var child = ImageWriter.Save(source, Path.Combine(_dir, "shared-1"), parent, TrackingMethod.SoftDirty, NothingWritten());
        Assert.Equal(1UL, child.Manifest.DataPages);
        AssertChainHolds(child.Path, p);
    }

    [Fact]
    public void AnIncrementOfMoreMappingsThanItsParentSavesThePagesTheParentNeverHad()
    {
        // A parent saved with -Mapping (the first mapping only), an increment of everything: the second mapping's
        // pages were never saved, so "not written since the parent" does not mean "in the parent".
        var (p, source) = NewProcess(54);
        var parent = Path.Combine(_dir, "wider-0");
        ImageWriter.Save(source, parent, null, TrackingMethod.Hash, null, selector: m => m.Path == "first");
        var child = ImageWriter.Save(source, Path.Combine(_dir, "wider-1"), parent, TrackingMethod.SoftDirty, NothingWritten());
        Assert.Equal((ulong)Half, child.Manifest.DataPages);
        AssertChainHolds(child.Path, p);
    }

    [Fact]
    public void PrivateWritableMemoryStillTrustsTheTracker_TheRuleDoesNotMakeEveryIncrementAFullCompare()
    {
        var (p, source) = NewProcess(55);
        var parent = Path.Combine(_dir, "trusted-0");
        ImageWriter.Save(source, parent, null, TrackingMethod.Hash, null);
        var child = ImageWriter.Save(source, Path.Combine(_dir, "trusted-1"), parent, TrackingMethod.SoftDirty, NothingWritten());
        Assert.Equal(0UL, child.Manifest.DataPages);
        Assert.Equal(0UL, child.Manifest.ScannedPages);
        Assert.Equal((ulong)Pages, child.Manifest.InheritedPages);
        AssertChainHolds(child.Path, p);
    }

    [Fact]
    public void UntrackedIsTheReadOnlyAndSharedMappingsAndWhatTheParentDoesNotCover()
    {
        const ulong P = 4096;
        MemoryMapping M(ulong start, ulong end, Protection prot, bool shared = false) => new() { Start = start * P, End = end * P, Protection = prot, Shared = shared };
        ImageMapping I(ulong start, ulong end) => new() { Start = start * P, End = end * P, Permissions = "rw-p", Path = "" };
        var rw = Protection.Read | Protection.Write;
        var mappings = new[] { M(0, 4, rw), M(4, 8, Protection.Read), M(10, 20, rw), M(20, 22, rw, shared: true), M(30, 40, rw) };
        var parent = new[] { I(0, 4), I(12, 14), I(16, 25), I(35, 50) };
        var untracked = ImageTracking.Untracked(mappings, null, parent);
        var expected = new[] { (4UL, 8UL), (10UL, 12UL), (14UL, 16UL), (20UL, 22UL), (30UL, 35UL) };
        Assert.Equal(expected.Select(e => new AddressRange(e.Item1 * P, e.Item2 * P)), untracked);
        // Outside the selection nothing is untracked: those pages are not saved at all.
        Assert.Empty(ImageTracking.Untracked(mappings, m => m.Start == 0, parent));
    }

    [Theory]
    [InlineData(10, 'a')]
    [InlineData(213, 'b')]    // the longest name whose private folder fitted before the fix
    [InlineData(214, 'c')]
    [InlineData(255, 'd')]    // NAME_MAX
    [InlineData(85, '\u4e2d')] // 255 bytes of UTF-8
    public void ThePrivateFolderOfAnyLegalNameIsALegalName(int length, char c)
    {
        var name = new string(c, length);
        var work = PrivateOutput.WorkName(name);
        Assert.InRange(Encoding.UTF8.GetByteCount(work), 1, 255);
        Assert.StartsWith(".", work, StringComparison.Ordinal);
        Assert.Matches(@"\.partial-[0-9a-f]{32}$", work);
        if (Encoding.UTF8.GetByteCount(name) <= 200) Assert.StartsWith("." + name + ".partial-", work, StringComparison.Ordinal);
        // And the whole save goes through under that name.
        var dest = Path.Combine(_dir, name);
        using var p = new FakeProcess(2, seed: 56);
        p.WriteRandom(0);
        ImageWriter.Save(p, dest, null, TrackingMethod.Hash, null);
        Assert.True(ImageVerifier.Test(dest).Valid);
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(_dir), e => e.Contains(".partial-", StringComparison.Ordinal));
    }

    [Fact]
    public void APrivateFolderNameNeverSplitsASurrogatePair()
    {
        var name = string.Concat(Enumerable.Repeat("\U0001F600", 60)); // 4 bytes each: 240 bytes
        var work = PrivateOutput.WorkName(name);
        Assert.InRange(Encoding.UTF8.GetByteCount(work), 1, 255);
        Assert.False(char.IsHighSurrogate(work[work.IndexOf(".partial-", StringComparison.Ordinal) - 1]));
        Assert.Equal(work, Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(work)));
    }
}
