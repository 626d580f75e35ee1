using System;
using System.Buffers.Binary;
using System.IO;
using System.Linq;
using System.Text.Json;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Issue 13, second attack round: counts and offsets near 2^31, 2^61, 2^63 and 2^64 in manifests and index files,
/// edited by someone who knows the format (checksums recomputed). Each must be a clean ImageCorrupt from Open (what
/// Get-MemoryImage reads), from Test and from a restore, in work bounded by the files' real sizes.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageAttackTests : IDisposable
{
    /// <summary>The most a rejected image may make the reader allocate: the image's files are a few KiB.</summary>
    private const long AllocationBound = 64L << 20;
    private const int Pages = 8;
    /// <summary>Stands for "the size of pages.bin" in the offset cases (1 is no page offset).</summary>
    private const ulong EndOfData = 1;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdattack-" + Guid.NewGuid().ToString("n"));
    private readonly string _image;

    public ImageAttackTests()
    {
        Directory.CreateDirectory(_dir);
        using var p = new FakeProcess(Pages, seed: 13);
        for (int i = 0; i < Pages; i++) if (i != 3) p.WriteRandom(i);
        _image = Path.Combine(_dir, "img");
        ImageWriter.Save(p, _image, null, TrackingMethod.Hash, null);
    }

    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private string Copy(string name)
    {
        var d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        foreach (var f in Directory.GetFiles(_image)) File.Copy(f, Path.Combine(d, Path.GetFileName(f)));
        return d;
    }

    private static ImageManifest ReadManifest(string d) =>
        JsonSerializer.Deserialize<ImageManifest>(File.ReadAllBytes(Path.Combine(d, ImageFormat.ManifestFile)), ImageFormat.Json)!;

    private static void WriteManifest(string d, ImageManifest m)
    {
        m.Checksum = ImageFormat.ManifestChecksum(m);
        File.WriteAllBytes(Path.Combine(d, ImageFormat.ManifestFile), JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json));
    }

    /// <summary>Edits one index record (its offset into pages.bin) and recomputes the index hash and the manifest checksum.</summary>
    private static void EditRecordOffset(string d, int record, ulong offset)
    {
        var path = Path.Combine(d, ImageFormat.IndexFile);
        var bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(ImageFormat.IndexHeaderSize + record * ImageFormat.RecordSize + 16), offset);
        File.WriteAllBytes(path, bytes);
        var m = ReadManifest(d);
        m.Files.First(f => f.Name == ImageFormat.IndexFile).Hash = PageHash.Fast128(bytes).ToString();
        WriteManifest(d, m);
    }

    /// <summary>Open, Test and a flat-file restore each answer ImageCorrupt, allocating little.</summary>
    private static void AssertCorruptEverywhere(string d, bool openFinds)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        if (openFinds)
            Assert.Equal(EngineError.ImageCorrupt, Assert.ThrowsAny<EngineException>(() => ImageReader.Open(d)).Error);
        var verdict = ImageVerifier.Test(d);
        Assert.False(verdict.Valid);
        Assert.Equal(EngineError.ImageCorrupt, verdict.Problems[0].Error);
        var dest = d + "-restored";
        using (var target = new FlatFileRestoreTarget(dest))
            Assert.Equal(EngineError.ImageCorrupt, Assert.ThrowsAny<EngineException>(() => ImageRestorer.Restore(d, target)).Error);
        Assert.False(Directory.Exists(dest));
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, AllocationBound);
    }

    [Fact]
    public void AZeroCountThatWrapsTheIndexSize_IsCorrupt_NotAnImageOf2To61Pages()
    {
        // Before the fix: (data + zero) * 40 wrapped to the real index size, so Open (Get-MemoryImage) accepted
        // an image claiming 2^61 zero pages; only the index read caught it.
        var d = Copy("wrap");
        var m = ReadManifest(d);
        m.ZeroPages += 1UL << 61;
        WriteManifest(d, m);
        AssertCorruptEverywhere(d, openFinds: true);
    }

    [Theory]
    [InlineData(0UL, 0xFFFF_FFFF_FFFF_F000UL)]           // the whole 64-bit space
    [InlineData(0x1000UL, 0x8000_0000_0000_1000UL)]      // 2^63 bytes
    [InlineData(0x7000_0000_0000UL, 0xFFFF_FFFF_FFFF_F000UL)]
    public void AMappingLongerThanAnyFile_IsCorrupt_NotAnArgumentOutOfRange(ulong start, ulong end)
    {
        // Before the fix: Test said valid and the flat-file restore threw ArgumentOutOfRangeException (a System.* id).
        var d = Copy($"long-{start:x}");
        var m = ReadManifest(d);
        m.Mappings = new() { new ImageMapping { Start = start, End = end, Permissions = "rw-p", Path = "" } };
        WriteManifest(d, m);
        AssertCorruptEverywhere(d, openFinds: true);
    }

    [Theory]
    [InlineData(ulong.MaxValue, 1UL)]       // data + zero wraps
    [InlineData(1UL << 52, 0UL)]            // data * 4096 wraps to 0, matching an empty pages.bin
    [InlineData(1UL << 63, 1UL << 63)]
    [InlineData((ulong)int.MaxValue + 1, 0UL)]
    public void HugePageCounts_AreCorrupt(ulong data, ulong zero)
    {
        var d = Copy($"count-{data:x}-{zero:x}");
        var m = ReadManifest(d);
        m.DataPages = data;
        m.ZeroPages = zero;
        WriteManifest(d, m);
        AssertCorruptEverywhere(d, openFinds: true);
    }

    [Theory]
    [InlineData(int.MaxValue)]
    [InlineData(int.MinValue)]
    public void AHugeOrNegativeDepth_IsCorrupt(int depth)
    {
        var d = Copy($"depth-{depth}");
        var m = ReadManifest(d);
        m.Depth = depth;
        WriteManifest(d, m);
        AssertCorruptEverywhere(d, openFinds: true);
    }

    [Theory]
    [InlineData(EndOfData)]                      // the data file's end exactly
    [InlineData(1UL << 63)]
    [InlineData(0xFFFF_FFFF_FFFF_F000UL)]        // offset + page size wraps to 0
    [InlineData(4097UL)]                         // unaligned
    public void AnIndexRecordPointingPastTheDataFile_IsCorrupt(ulong offset)
    {
        var d = Copy($"offset-{offset:x}");
        if (offset == EndOfData) offset = (ulong)new FileInfo(Path.Combine(d, ImageFormat.PagesFile)).Length;
        EditRecordOffset(d, 2, offset);
        AssertCorruptEverywhere(d, openFinds: false); // the manifest is intact: the index read finds it
    }

    [Fact]
    public void ListedFileSizesNear2To63_AreCleanErrors_WithoutReadingOrAllocatingThem()
    {
        // index.bin listed as 16 + 40 * 2^57 bytes with counts to match (no wrap): the real file is shorter,
        // so it is truncated (ImageIncomplete), and nothing of that size is allocated.
        var d = Copy("bigindex");
        var m = ReadManifest(d);
        m.DataPages = 0;
        m.ZeroPages = 1UL << 57;
        m.Files.First(f => f.Name == ImageFormat.PagesFile).Size = 0;
        m.Files.First(f => f.Name == ImageFormat.IndexFile).Size = ImageFormat.IndexHeaderSize + (long)(1UL << 57) * ImageFormat.RecordSize;
        WriteManifest(d, m);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var verdict = ImageVerifier.Test(d);
        Assert.False(verdict.Valid);
        Assert.Contains(verdict.Problems[0].Error, new[] { EngineError.ImageCorrupt, EngineError.ImageIncomplete });
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, AllocationBound);
    }
}
