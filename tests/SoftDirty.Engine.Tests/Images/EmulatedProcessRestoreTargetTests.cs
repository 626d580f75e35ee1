using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using SoftDirty.Emulation;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Round 29 (la57): images of a process on a kernel with 5-level paging, whose mappings lie across 2^47, at 2^52 and up to
/// the 5-level task size (2^56 - 4 KiB), made by the engine's own writer from a source at those addresses: a full image
/// and an increment test valid and restore to files byte for byte, and a restore into the emulator (4-level: its task
/// size is 2^47 - 4 KiB) is refused with PlatformNotSupported before anything is mapped, where it was the emulated mmap's
/// EmulatorNotMapped ("mmap: ... (ENOMEM)") after the mappings below had been mapped and were unmapped again.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class EmulatedProcessRestoreTargetTests : IDisposable
{
    private const int Pages = 16;
    private readonly ScratchFolder _scratch = new("sdround29la57");
    private string Dir => _scratch.Path;

    public void Dispose() => _scratch.Dispose();

    /// <summary>A <see cref="FakeProcess"/> whose one mapping is shown at <paramref name="start"/> instead of its own base.</summary>
    private sealed class MovedSource(FakeProcess inner, ulong start) : IPageSource
    {
        private ulong Shift => start - FakeProcess.Base;
        public int ProcessId => inner.ProcessId;
        public string Name => inner.Name;
        public int PageSize => inner.PageSize;
        public KernelFeatures Features => inner.Features;
        public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => inner.ReadMappings(withCounters)
            .Select(m => new MemoryMapping { ProcessId = m.ProcessId, Start = m.Start + Shift, End = m.End + Shift, Protection = m.Protection, Kind = m.Kind })
            .ToList();
        public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination)
        {
            ulong shiftPages = Shift / (ulong)PageSize;
            if (firstPage < shiftPages) { destination.Clear(); return destination.Length; }
            return inner.ReadPagemap(firstPage - shiftPages, destination);
        }
        public int ReadMemory(ulong address, Span<byte> destination) => address < Shift ? 0 : inner.ReadMemory(address - Shift, destination);
        public int WriteClearRefs(ReadOnlySpan<byte> text) => inner.WriteClearRefs(text);
        public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) =>
            throw new EngineException(EngineError.PagemapScanNotSupported, "not in this test", null);
        public void Dispose() { }
    }

    private static byte[] Memory(FakeProcess p) => Enumerable.Range(0, Pages).SelectMany(p.Content).ToArray();

    private static (FakeProcess Process, MovedSource Source) NewProcess(ulong start)
    {
        var p = new FakeProcess(Pages, softDirty: true, seed: 29);
        for (int i = 0; i < Pages; i++) if (i % 3 != 1) p.WriteRandom(i); // some pages never written
        return (p, new MovedSource(p, start));
    }

    /// <summary>Across 2^47 (the top page of a 4-level space and the first above it), at 2^52, and the last pages below 2^56 - 4 KiB.</summary>
    public static TheoryData<ulong> AboveTheEmulatedSpace => new()
    {
        EmulatedProcess.TaskSize - 8 * 4096UL,
        1UL << 52,
        (1UL << 56) - 4096 - Pages * 4096UL,
    };

    private string RestoreToFile(string image, ulong start)
    {
        var into = Path.Combine(Dir, "restored-" + Guid.NewGuid().ToString("n"));
        using (var target = new FlatFileRestoreTarget(into)) ImageRestorer.Restore(image, target);
        var file = Assert.Single(Directory.GetFiles(into, "*.bin"));
        Assert.Equal($"{start:x12}-{start + Pages * 4096UL:x12}.bin", Path.GetFileName(file));
        return file;
    }

    [Theory]
    [MemberData(nameof(AboveTheEmulatedSpace))]
    public void AnImageAboveTheEmulatedSpace_RestoresToFilesAndIsRefusedByTheEmulatorWithNothingMapped(ulong start)
    {
        var (p, source) = NewProcess(start);
        string parent = Path.Combine(Dir, $"full-{start:x}"), child = Path.Combine(Dir, $"inc-{start:x}");
        ImageWriter.Save(source, parent, null, TrackingMethod.Hash, null);
        Assert.True(ImageVerifier.Test(parent).Valid);
        Assert.True(File.ReadAllBytes(RestoreToFile(parent, start)).AsSpan().SequenceEqual(Memory(p)));

        var tracker = new SoftDirtyTracker(source);
        tracker.Reset();
        p.WriteRandom(Pages - 1); // the last page: at 2^56 - 8 KiB for the top mapping
        p.WriteRandom(1);         // a page never written before
        var dirty = tracker.Collect(rearm: false);
        Assert.Equal(new[] { new AddressRange(start + 4096, start + 2 * 4096), new AddressRange(start + (Pages - 1) * 4096UL, start + Pages * 4096UL) }, dirty.Ranges);
        ImageWriter.Save(source, child, parent, TrackingMethod.SoftDirty, dirty);
        Assert.True(ImageVerifier.Test(child).Valid);
        Assert.True(File.ReadAllBytes(RestoreToFile(child, start)).AsSpan().SequenceEqual(Memory(p)));

        // The emulator: a mapping of its own below, then the restore, refused before anything is mapped.
        var e = new EmulatedProcess("r29la57", KernelProfile.Get(KernelProfile.DefaultName));
        e.Mmap(0x10000000, 4096, Protection.Read | Protection.Write, MmapFlags.Fixed);
        var before = e.ReadMappings(false).Select(m => (m.Start, m.End)).ToList();
        var error = Assert.Throws<EngineException>(() =>
        {
            using var target = new EmulatedProcessRestoreTarget(e);
            ImageRestorer.Restore(child, target);
        });
        Assert.Equal(EngineError.PlatformNotSupported, error.Error);
        Assert.Contains($"0x{start:x}-0x{start + Pages * 4096UL:x}", error.Message, StringComparison.Ordinal);
        Assert.Contains("5-level", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, e.ReadMappings(false).Select(m => (m.Start, m.End)).ToList());
    }

    [Fact]
    public void AnImageEndingAtTheEmulatedTaskSize_RestoresIntoTheEmulator()
    {
        ulong start = EmulatedProcess.TaskSize - Pages * 4096UL;
        var (p, source) = NewProcess(start);
        string path = Path.Combine(Dir, "top47");
        ImageWriter.Save(source, path, null, TrackingMethod.Hash, null);
        var e = new EmulatedProcess("r29la57top", KernelProfile.Get(KernelProfile.DefaultName));
        using (var target = new EmulatedProcessRestoreTarget(e)) { ImageRestorer.Restore(path, target); }
        var got = new byte[Pages * 4096];
        Assert.Equal(got.Length, new EmulatedTarget(e).ReadMemory(start, got));
        Assert.True(got.AsSpan().SequenceEqual(Memory(p)));
    }
}
