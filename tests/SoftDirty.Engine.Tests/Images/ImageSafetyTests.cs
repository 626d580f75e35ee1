using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>Saves that lose pages or fail midway: the image says so, or nothing is left behind.</summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageSafetyTests : IDisposable
{
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdsafe-" + Guid.NewGuid().ToString("n"));
    public ImageSafetyTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>A source whose memory reads stop at one page (unmapped meanwhile), or throw after some reads (a full disk, an I/O error).</summary>
    private sealed class Faulty : IPageSource
    {
        private readonly FakeProcess _inner;
        public ulong? Unreadable { get; init; }
        public int FailAfterReads { get; init; } = int.MaxValue;
        private int _reads;
        public Faulty(FakeProcess inner) => _inner = inner;
        public int ProcessId => _inner.ProcessId;
        public string Name => _inner.Name;
        public int PageSize => _inner.PageSize;
        public KernelFeatures Features => _inner.Features;
        public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => _inner.ReadMappings(withCounters);
        public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination) => _inner.ReadPagemap(firstPage, destination);
        public int ReadMemory(ulong address, Span<byte> destination)
        {
            if (++_reads > FailAfterReads) throw new IOException("No space left on device (simulated)");
            if (Unreadable is { } u && address <= u && u < address + (ulong)destination.Length)
                return _inner.ReadMemory(address, destination[..(int)(u - address)]);
            return _inner.ReadMemory(address, destination);
        }
        public int WriteClearRefs(ReadOnlySpan<byte> text) => _inner.WriteClearRefs(text);
        public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) => _inner.ScanPagemap(ref request, regions);
        public void Dispose() { }
    }

    [Fact]
    public void ASaveThatCannotReadAPage_CountsIt_AndTheImageIsNotValid()
    {
        using var p = new FakeProcess(16, seed: 3);
        for (int i = 0; i < 16; i++) p.WriteRandom(i);
        var source = new Faulty(p) { Unreadable = p.Address(5) };
        var path = Path.Combine(_dir, "holes");
        var result = ImageWriter.Save(source, path, null, TrackingMethod.Hash, null);
        Assert.Equal(1UL, result.Manifest.UnreadablePages);
        Assert.Equal(15UL, result.Manifest.DataPages);
        var verdict = ImageVerifier.Test(path);
        Assert.False(verdict.Valid);
        Assert.Contains(verdict.Problems, q => q.Error == EngineError.ImageIncomplete && q.Message.Contains("could not be read"));
    }

    [Fact]
    public void ASaveThatFailsMidway_LeavesNoDirectoryAndNoPartialFiles()
    {
        using var p = new FakeProcess(16, seed: 4);
        for (int i = 0; i < 16; i++) p.WriteRandom(i);
        var path = Path.Combine(_dir, "failed");
        var ex = Assert.Throws<EngineException>(() => ImageWriter.Save(new Faulty(p) { FailAfterReads = 0 }, path, null, TrackingMethod.Hash, null));
        Assert.Equal(EngineError.ImageWriteError, ex.Error);
        Assert.False(Directory.Exists(path));
        Assert.Empty(Directory.EnumerateFileSystemEntries(_dir)); // no .failed.partial-* with pages.bin.tmp of process memory
        // The next save to the same path succeeds.
        ImageWriter.Save(p, path, null, TrackingMethod.Hash, null);
        Assert.True(ImageVerifier.Test(path).Valid);
    }
}
