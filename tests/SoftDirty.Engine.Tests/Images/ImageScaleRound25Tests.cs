using System;
using System.IO;
using System.Text.Json;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Issue 13, round 25 (Scale): what reading an image allocates as it grows, counted with the thread's allocation counter
/// (no clock). Test-MemoryImage read each index whole into a buffer and then into an array of records (80 bytes a record)
/// and a restore also sorted every page into a dictionary (about 300 bytes a page in all); an index.bin that claimed a huge
/// size (a sparse file) was read whole into memory before its header was looked at. Each case failed before.
/// </summary>
[Collection(MemoryMeasurement.Name)]
public sealed class ImageScaleRound25Tests : IDisposable
{
    private const int Small = 2_048, Large = 16_384;
    private readonly ScratchFolder _scratch = new("sdscale25");
    private string Dir => _scratch.Path;
    public void Dispose() => _scratch.Dispose();

    // A full image of a process whose every page holds data: one data record a page.
    private string SaveFull(int pages)
    {
        using var p = new FakeProcess(pages, seed: pages);
        for (int i = 0; i < pages; i++) p.Write(i, (byte)(i | 1), i % 4096);
        var path = Path.Combine(Dir, "full" + pages);
        ImageWriter.Save(p, path, null, TrackingMethod.Hash, null);
        return path;
    }

    // The bytes this thread allocated running action (with warm, its second run: the first loads and compiles what it calls).
    private static long Allocated(Action action, bool warm = true)
    {
        if (warm) action();
        long before = GC.GetAllocatedBytesForCurrentThread();
        action();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void TestingAnImage_AllocatesNothingPerRecord()
    {
        string small = SaveFull(Small), large = SaveFull(Large);
        long a = Allocated(() => Assert.True(ImageVerifier.Test(small).Valid));
        long b = Allocated(() => Assert.True(ImageVerifier.Test(large).Valid));
        // Streamed: the same chunks whatever the size. Kept, 14,336 more records are at least 573,440 bytes.
        Assert.True(b - a < (Large - Small) * 8L, $"Test of {Large:N0} pages allocated {b:N0} bytes, of {Small:N0} pages {a:N0}");
    }

    [Fact]
    public void RestoringAnImage_HoldsItsIndexOnly()
    {
        string small = SaveFull(Small), large = SaveFull(Large);
        int n = 0;
        long Restore(string image) => Allocated(() =>
        {
            using var target = new FlatFileRestoreTarget(Path.Combine(Dir, "out" + n++));
            ImageRestorer.Restore(image, target);
        });
        long a = Restore(small), b = Restore(large);
        // The records of the chain's indexes (40 bytes each, as in index.bin) and nothing else per page.
        Assert.True(b - a < (Large - Small) * 64L, $"a restore of {Large:N0} pages allocated {b:N0} bytes, of {Small:N0} pages {a:N0}: {(double)(b - a) / (Large - Small):N0} a page");
        // What it restores is every page, in place.
        var restored = File.ReadAllBytes(Path.Combine(Dir, "out" + (n - 1), $"{FakeProcess.Base:x12}-{FakeProcess.Base + Large * 4096UL:x12}.bin"));
        for (int i = 0; i < Large; i += 997) Assert.Equal((byte)(i | 1), restored[i * 4096 + i % 4096]);
    }

    // An image whose index.bin is a sparse file of `records` records (its owner spends nothing on it), listed with that size
    // in a manifest that checks out; with a real header and the file's true hash when `header`.
    private string SparseIndexImage(bool header, long records)
    {
        string image = SaveFull(4);
        string index = Path.Combine(image, ImageFormat.IndexFile);
        var head = File.ReadAllBytes(index).AsSpan(0, ImageFormat.IndexHeaderSize).ToArray();
        File.Delete(index);
        var hasher = new Fast128Hasher();
        using (var f = new FileStream(index, FileMode.CreateNew, FileAccess.Write))
        {
            if (header) f.Write(head);
            f.SetLength(ImageFormat.IndexHeaderSize + records * ImageFormat.RecordSize);
        }
        if (header)
        {
            hasher.Append(head);
            var zeros = new byte[1 << 20];
            for (long left = records * ImageFormat.RecordSize; left > 0; left -= zeros.Length) hasher.Append(zeros.AsSpan(0, (int)Math.Min(left, zeros.Length)));
        }
        var m = JsonSerializer.Deserialize<ImageManifest>(File.ReadAllBytes(Path.Combine(image, ImageFormat.ManifestFile)), ImageFormat.Json)!;
        m.ZeroPages = (ulong)records - m.DataPages;
        var info = m.Files.Find(f => f.Name == ImageFormat.IndexFile)!;
        info.Size = ImageFormat.IndexHeaderSize + records * ImageFormat.RecordSize;
        if (header) info.Hash = hasher.Finish().ToString();
        m.Checksum = ImageFormat.ManifestChecksum(m);
        File.WriteAllBytes(Path.Combine(image, ImageFormat.ManifestFile), JsonSerializer.SerializeToUtf8Bytes(m, ImageFormat.Json));
        return image;
    }

    // The sizes differ (268,800,016 and 268,400,016 bytes), so that the arrays the code before made for each (rented from the
    // shared pool, which kept them: 512 and 256 MiB held by the session after the call) are not taken from the pool; each
    // count is of the first call.
    [Theory]
    [InlineData(false, 6_720_000, "no SDIMGIDX header")]
    [InlineData(true, 6_710_000, "lies outside every mapping")]
    public void AnIndexClaimingAHugeSize_IsRefusedBeforeAnythingIsMadeForIt(bool header, long records, string why)
    {
        string image = SparseIndexImage(header, records);
        MemoryImageTestResult? result = null;
        long tested = Allocated(() => result = ImageVerifier.Test(image), warm: false);
        Assert.False(result!.Valid);
        Assert.Equal(EngineError.ImageCorrupt, result.Problems[0].Error);
        Assert.Contains(why, result.Problems[0].Message);
        EngineException? refused = null;
        long restored = Allocated(() =>
        {
            using var target = new FlatFileRestoreTarget(Path.Combine(Dir, "out-" + Guid.NewGuid().ToString("n")));
            refused = Assert.ThrowsAny<EngineException>(() => ImageRestorer.Restore(image, target));
        }, warm: false);
        Assert.Equal(EngineError.ImageCorrupt, refused!.Error);
        // Before: the whole 268 MB file in a buffer, and with a good header and hash an array of 6.7 million records too.
        Assert.True(tested < 16L << 20, $"Test-MemoryImage allocated {tested:N0} bytes");
        Assert.True(restored < 16L << 20, $"Restore-MemoryImage allocated {restored:N0} bytes");
    }
}
