using System;
using System.IO;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>A full save streams: the managed memory it holds does not grow with the pages it stores.</summary>
[Collection(MemoryMeasurement.Name)]
public sealed class ImageMemoryTests : IDisposable
{
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdimgmem-" + Guid.NewGuid().ToString("n"));
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Fact]
    public void AFullSave_HoldsNoMemoryPerStoredPage()
    {
        // 40,000 pages, every other one written (20,000 separate runs: a record and a present region each). The
        // memory held after a full collection is measured when a tenth and when nine tenths of the pages were
        // walked; 16,000 pages were stored in between. Kept per page (a list of records or of regions), that is
        // at least 16,000 x 40 bytes; streamed, only what the runtime itself allocates on the way.
        const int pages = 40_000, perPageBytes = 40, stored = 16_000;
        using var p = new FakeProcess(pages, seed: 9);
        for (int i = 0; i < pages; i += 2) p.WriteRandom(i);
        long early = -1, late = -1;
        ImageWriter.Save(p, Path.Combine(_dir, "full"), null, TrackingMethod.Hash, null, progress: (done, total) =>
        {
            if (early < 0 && done >= total / 10) early = GC.GetTotalMemory(true);
            else if (late < 0 && done >= total * 9 / 10) late = GC.GetTotalMemory(true);
        });
        Assert.True(early > 0 && late > 0, "progress was reported");
        Assert.True(late - early < stored * perPageBytes / 4,
            $"the save held {late - early:N0} bytes more after storing {stored:N0} more pages");
        Assert.True(ImageVerifier.Test(Path.Combine(_dir, "full")).Valid);
    }

    [Fact]
    public void ReadingImages_LeavesNoDescriptorOpen()
    {
        // Each image of a chain is read through its folder's descriptor: Test, Get (Describe), Restore, a save of an
        // increment and a chain that fails its checks close them all when they are done, not when the GC runs.
        using var p = new FakeProcess(8, seed: 4);
        for (int i = 0; i < 8; i++) p.WriteRandom(i);
        string full = Path.Combine(_dir, "c0"), inc = Path.Combine(_dir, "c1");
        ImageWriter.Save(p, full, null, TrackingMethod.Hash, null);
        p.WriteRandom(3);
        ImageWriter.Save(p, inc, full, TrackingMethod.Hash, null);
        static int Descriptors() => Directory.GetFileSystemEntries("/proc/self/fd").Length;
        GC.Collect();
        GC.WaitForPendingFinalizers();
        int before = Descriptors();
        for (int i = 0; i < 20; i++)
        {
            Assert.True(ImageVerifier.Test(inc).Valid);
            Assert.Equal(2, ImageReader.Describe(inc).Depth + 1);
            using (var target = new FlatFileRestoreTarget(Path.Combine(_dir, "out" + i))) ImageRestorer.Restore(inc, target);
            ImageWriter.Save(p, Path.Combine(_dir, "more" + i), inc, TrackingMethod.Hash, null);
            Assert.ThrowsAny<EngineException>(() => ImageReader.Chain(Path.Combine(_dir, "more" + i, "..", "nothing-here")));
        }
        Assert.True(Descriptors() - before < 10, $"{Descriptors() - before} more descriptors open after 20 rounds");
    }
}
