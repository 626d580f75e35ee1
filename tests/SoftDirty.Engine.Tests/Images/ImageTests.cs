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

[Collection(WorkflowCollection.Name)]
public sealed class ImageTests : IDisposable
{
    // tmpfs where there is one: fsync costs nothing there, and these tests are about content, not durability
    // (the Pester suite kills a saving process to test that).
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdimg-" + Guid.NewGuid().ToString("n"));
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private static byte[] Restored(string leaf, string into)
    {
        var target = new FlatFileRestoreTarget(into);
        ImageRestorer.Restore(leaf, target);
        return File.ReadAllBytes(target.Results.Single().Path);
    }

    private static byte[] Memory(FakeProcess p) => Enumerable.Range(0, p.Pages).SelectMany(p.Content).ToArray();

    [Fact]
    public void AGatheredPageThenARunAsLargeAsAReadChunk_AreStoredInRecordOrder()
    {
        // The writer gathers small runs into its buffer and writes a run of half the buffer or more as it is: the
        // gathered page must reach the file first (a regression: the large run once overtook it).
        using var p = new FakeProcess(400, softDirty: false, seed: 3);
        p.WriteRandom(0);
        for (int i = 3; i < 400; i++) p.WriteRandom(i);
        var path = Path.Combine(_dir, "large-run");
        ImageWriter.Save(p, path, null, TrackingMethod.Hash, null);
        Assert.True(ImageVerifier.Test(path).Valid);
        Assert.Equal(Memory(p), Restored(path, Path.Combine(_dir, "large-run-out")));
    }

    [Fact]
    public void RandomWorkloadsOnATestDouble_FullPlusIncrements_RestoreToTheBytesOfAFullImage()
    {
        // 50 random workloads on the test double, chains of 1 to 6 images (EmulatorWorkflowTests runs 200 on the emulator).
        var rng = new Random(12345);
        for (int w = 0; w < 50; w++)
        {
            using var p = new FakeProcess(24, softDirty: w % 2 == 0, seed: w);
            for (int i = 0; i < 24; i++) if (rng.Next(3) > 0) p.WriteRandom(i);
            string root = Path.Combine(_dir, "w" + w);
            string? parent = null;
            int length = rng.Next(1, 7);
            for (int c = 0; c < length; c++)
            {
                if (c > 0)
                    for (int k = rng.Next(0, 10); k > 0; k--)
                        switch (rng.Next(4))
                        {
                            case 0: p.Discard(rng.Next(24)); break;
                            case 1: { int i = rng.Next(24); p.Write(i, p.Content(i)[0]); break; }
                            default: p.WriteRandom(rng.Next(24)); break;
                        }
                var method = ImageTracking.Resolve(p, TrackingMethod.Auto);
                var parentManifest = parent is null ? null : ImageReader.Open(parent).Manifest;
                var candidates = ImageTracking.Candidates(p, method, parentManifest, null, verify: false, out var armed, out var epoch, null, default);
                var path = Path.Combine(root, "i" + c);
                ImageWriter.Save(p, path, parent, method, candidates, armed: armed, armedEpoch: epoch);
                parent = path;
            }
            var full = Path.Combine(root, "full");
            ImageWriter.Save(p, full, null, TrackingMethod.Hash, null);
            var expected = Memory(p);
            Assert.Equal(expected, Restored(full, Path.Combine(root, "rf")));
            Assert.Equal(expected, Restored(parent!, Path.Combine(root, "rc")));
            Assert.True(ImageVerifier.Test(parent!).Valid);
        }
    }

    private (FakeProcess P, string Full, string Inc) Chain()
    {
        var p = new FakeProcess(16);
        for (int i = 0; i < 16; i++) p.WriteRandom(i);
        var full = Path.Combine(_dir, "full");
        ImageWriter.Save(p, full, null, TrackingMethod.Hash, null);
        p.WriteRandom(3); p.WriteRandom(7);
        var inc = Path.Combine(_dir, "inc");
        var r = ImageWriter.Save(p, inc, full, TrackingMethod.Hash, null);
        Assert.Equal(2UL, r.Manifest.DataPages);
        Assert.Equal(14UL, r.Manifest.InheritedPages);
        return (p, full, inc);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // Unix file modes are what the test checks
    public void FilesAre0600_DirectoriesAre0700()
    {
        var (_, full, _) = Chain();
        Assert.Equal(ImageFormat.DirectoryMode, File.GetUnixFileMode(full));
        foreach (var f in Directory.GetFiles(full)) Assert.Equal(ImageFormat.FileMode, File.GetUnixFileMode(f));
    }

    [Fact]
    public void CorruptPage_IsNamedByFileAndOffset()
    {
        var (_, full, inc) = Chain();
        var pages = Path.Combine(full, "pages.bin");
        using (var fs = new FileStream(pages, FileMode.Open)) { fs.Position = 5 * 4096 + 100; int b = fs.ReadByte(); fs.Position--; fs.WriteByte((byte)(b ^ 0xFF)); }
        var result = ImageVerifier.Test(inc);
        Assert.False(result.Valid);
        var problem = Assert.Single(result.Problems);
        Assert.Equal(EngineError.ImageCorrupt, problem.Error);
        Assert.Equal(pages, problem.File);
        Assert.Equal(5 * 4096L, problem.Offset);
        Assert.Contains("offset 20480", problem.Message);
        var ex = Assert.Throws<EngineException>(() => ImageRestorer.Restore(inc, new FlatFileRestoreTarget(Path.Combine(_dir, "r"))));
        Assert.Equal(EngineError.ImageCorrupt, ex.Error);
        Assert.Contains(pages + " at offset 20480", ex.Message);
    }

    [Fact]
    public void TruncatedPages_AreIncomplete_AtTheTruncationOffset()
    {
        var (_, full, inc) = Chain();
        var pages = Path.Combine(inc, "pages.bin");
        using (var fs = new FileStream(pages, FileMode.Open)) fs.SetLength(4096 + 17);
        var result = ImageVerifier.Test(inc);
        var problem = Assert.Single(result.Problems);
        Assert.Equal(EngineError.ImageIncomplete, problem.Error);
        Assert.Contains(pages + " at offset 4113", problem.Message);
        Assert.Contains("truncated", problem.Message);
    }

    [Fact]
    public void CorruptIndexAndManifest_AreNamed()
    {
        var (_, full, inc) = Chain();
        var index = Path.Combine(inc, "index.bin");
        var bytes = File.ReadAllBytes(index);
        bytes[ImageFormat.IndexHeaderSize + ImageFormat.RecordSize + 8] = 9; // record 1: unknown kind
        File.WriteAllBytes(index, bytes);
        var p = Assert.Single(ImageVerifier.Test(inc).Problems);
        Assert.Equal(EngineError.ImageCorrupt, p.Error);
        Assert.Contains(index + " at offset 56", p.Message);

        var manifest = Path.Combine(full, "manifest.json");
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"pageSize\"", "\"pageSize\" 7,"));
        var q = ImageVerifier.Test(full).Problems.Single();
        Assert.Equal(EngineError.ImageCorrupt, q.Error);
        Assert.StartsWith(manifest + " at offset", q.Message);
    }

    [Fact]
    public void ReplacedParent_IsAMismatch_AndAMissingManifestIsIncomplete()
    {
        var (p, full, inc) = Chain();
        Directory.Delete(full, true);
        ImageWriter.Save(p, full, null, TrackingMethod.Hash, null); // another image where the parent was
        var problem = ImageVerifier.Test(inc).Problems.Single();
        Assert.Equal(EngineError.ImageParentMismatch, problem.Error);
        Assert.Contains("not the image this one was taken against", problem.Message);

        File.Delete(Path.Combine(full, "manifest.json"));
        var ex = Assert.Throws<EngineException>(() => ImageReader.Open(full));
        Assert.Equal(EngineError.ImageIncomplete, ex.Error);
        Assert.Contains("incomplete", ex.Message);
        var again = Assert.Throws<EngineException>(() => ImageWriter.Save(p, full, null, TrackingMethod.Hash, null));
        Assert.Equal(EngineError.ImageExists, again.Error);
    }
}
