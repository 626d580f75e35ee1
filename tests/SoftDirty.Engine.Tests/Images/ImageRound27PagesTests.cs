using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using SoftDirty.Images;
using SoftDirty.Emulation;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Round 27 (pages): images of a kernel whose base page is 16 KiB or 64 KiB (arm64-16k, arm64 64K, ppc64el), made by the
/// engine's own writer from a source of that page size, then tested, restored to files and into a 4 KiB emulated
/// process on this machine; an increment whose parent has another page size.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageRound27PagesTests : IDisposable
{
    private const int SmallPage = 4096, SmallPages = 64;
    private readonly ScratchFolder _scratch = new("sdround27p");
    private string Dir => _scratch.Path;

    public void Dispose() => _scratch.Dispose();

    /// <summary>
    /// A <see cref="FakeProcess"/> seen by a kernel of <paramref name="pageSize"/> pages: one pagemap entry per big page
    /// (present where any of its 4 KiB pieces is, soft-dirty where any is), memory and clear_refs passed through.
    /// </summary>
    private sealed class BigPageSource(FakeProcess inner, int pageSize) : IPageSource
    {
        private readonly int _ratio = pageSize / SmallPage;
        public int ProcessId => inner.ProcessId;
        public string Name => inner.Name;
        public int PageSize => pageSize;
        public KernelFeatures Features => inner.Features;
        public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => inner.ReadMappings(withCounters);
        public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination)
        {
            var small = new PagemapEntry[_ratio];
            for (int i = 0; i < destination.Length; i++)
            {
                inner.ReadPagemap((firstPage + (ulong)i) * (ulong)_ratio, small);
                destination[i] = small.Any(e => e.Present)
                    ? PagemapEntry.ForPresent(small.First(e => e.Present).Frame, PagemapFlags.Exclusive | (small.Any(e => e.SoftDirty) ? PagemapFlags.SoftDirty : PagemapFlags.None))
                    : default;
            }
            return destination.Length;
        }
        public int ReadMemory(ulong address, Span<byte> destination) => inner.ReadMemory(address, destination);
        public int WriteClearRefs(ReadOnlySpan<byte> text) => inner.WriteClearRefs(text);
        public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) => inner.ScanPagemap(ref request, regions);
        public void Dispose() { }
    }

    private static (FakeProcess Process, BigPageSource Source) NewProcess(int pageSize, int seed)
    {
        var p = new FakeProcess(SmallPages, softDirty: true, seed: seed);
        for (int i = 0; i < SmallPages; i++) if (i % 7 != 3) p.WriteRandom(i); // some 4 KiB pieces never written
        return (p, new BigPageSource(p, pageSize));
    }

    private static byte[] Memory(FakeProcess p) => Enumerable.Range(0, SmallPages).SelectMany(p.Content).ToArray();

    private string RestoreToFile(string image)
    {
        var into = Path.Combine(Dir, "restored-" + Guid.NewGuid().ToString("n"));
        using (var target = new FlatFileRestoreTarget(into)) ImageRestorer.Restore(image, target);
        return Assert.Single(Directory.GetFiles(into, "*.bin"));
    }

    [Theory]
    [InlineData(16384)]
    [InlineData(65536)]
    public void AnImageOfBigPages_TestsGetsAndRestoresTheSameBytesToFilesAndIntoTheEmulator(int pageSize)
    {
        var (p, source) = NewProcess(pageSize, 27);
        string path = Path.Combine(Dir, $"big-{pageSize}");
        var saved = ImageWriter.Save(source, path, null, TrackingMethod.Hash, null);
        Assert.Equal(pageSize, saved.Manifest.PageSize);
        Assert.True(ImageVerifier.Test(path).Valid);
        using (var opened = ImageReader.Open(path))
        {
            var info = MemoryImageInfo.From(opened);
            Assert.Equal(pageSize, info.PageSize);
            Assert.Equal((ulong)(SmallPages * SmallPage), info.DataBytes + info.ZeroPages * (ulong)pageSize);
        }
        Assert.True(File.ReadAllBytes(RestoreToFile(path)).AsSpan().SequenceEqual(Memory(p)));

        // Into a 4 KiB emulated process: each big page lands as its 4 KiB pieces, byte for byte.
        var e = new EmulatedProcess("r27big", KernelProfile.Get(KernelProfile.DefaultName));
        using (var target = new EmulatedProcessRestoreTarget(e)) { ImageRestorer.Restore(path, target); }
        var got = new byte[SmallPages * SmallPage];
        var emulated = new EmulatedTarget(e);
        Assert.Equal(got.Length, emulated.ReadMemory(FakeProcess.Base, got));
        Assert.True(got.AsSpan().SequenceEqual(Memory(p)));
    }

    [Fact]
    public void AnIncrementOfBigPages_HoldsEveryPieceOfAWrittenPage()
    {
        const int pageSize = 16384;
        var (p, source) = NewProcess(pageSize, 28);
        string parent = Path.Combine(Dir, "inc-0"), child = Path.Combine(Dir, "inc-1");
        ImageWriter.Save(source, parent, null, TrackingMethod.Hash, null);
        var tracker = new SoftDirtyTracker(source);
        tracker.Reset();
        p.WriteRandom(5); // one 4 KiB piece of big page 1: the whole 16 KiB page is saved again
        var dirty = tracker.Collect(rearm: false);
        Assert.Equal(new[] { new AddressRange(FakeProcess.Base + pageSize, FakeProcess.Base + 2 * pageSize) }, dirty.Ranges);
        ImageWriter.Save(source, child, parent, TrackingMethod.SoftDirty, dirty);
        Assert.True(ImageVerifier.Test(child).Valid);
        Assert.True(File.ReadAllBytes(RestoreToFile(child)).AsSpan().SequenceEqual(Memory(p)));
    }

    [Fact]
    public void AnIncrementOnAKernelOfAnotherPageSize_IsRefusedWithImageParentMismatch()
    {
        var (p, big) = NewProcess(16384, 29);
        string parent = Path.Combine(Dir, "mixed-0");
        ImageWriter.Save(big, parent, null, TrackingMethod.Hash, null);
        var e = Assert.Throws<EngineException>(() => ImageWriter.Save(p, Path.Combine(Dir, "mixed-1"), parent, TrackingMethod.Hash, null));
        Assert.Equal(EngineError.ImageParentMismatch, e.Error);
        Assert.Contains("16384", e.Message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(Dir, "mixed-1")));
    }
}
