using System;
using System.IO;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Images;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Issue 13, eighth attack round (memory images), at the engine: pages whose content changes between a parent and its
/// increment without a write (dropped and read again as the zero page), on a kernel without PAGEMAP_SCAN, where the
/// save finds present pages by walking pagemap (as it always does for a real process). The cmdlet and real-process
/// cases are in tests/Pester/Security.Round8.Images.Tests.ps1.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageRound8Tests : IDisposable
{
    private const int Pages = 16;
    private const ulong PageBytes = 4096;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdround8i-" + Guid.NewGuid().ToString("n"));

    public ImageRound8Tests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>One save as Save-MemoryImage makes it: the parent's manifest read, the tracking candidates, then the writer.</summary>
    private static ImageSaveResult Save(IPageSource source, TrackingMethod method, string path, string? parent, Func<MemoryMapping, bool>? selector = null)
    {
        var manifest = parent is null ? null : ImageReader.ReadManifest(parent);
        var candidates = ImageTracking.Candidates(source, method, manifest, selector, verify: false, out var armed, out var epoch, out var reset, warn: null, default);
        return ImageWriter.Save(source, path, parent, method, candidates, selector, armed: armed, armedEpoch: epoch, writeTrackingReset: reset, trackedAgainst: manifest);
    }

    /// <summary>The chain restored into files: the mapping's file equals the process's memory byte for byte.</summary>
    private void AssertRestoreIsTheProcess(string image, EmulatedTarget source, ulong start)
    {
        Assert.True(ImageVerifier.Test(image).Valid);
        var into = Path.Combine(_dir, "restored-" + Path.GetFileName(image));
        using (var target = new FlatFileRestoreTarget(into)) ImageRestorer.Restore(image, target);
        var file = Directory.GetFiles(into, $"{start:x12}-*.bin");
        Assert.Single(file);
        var restored = File.ReadAllBytes(file[0]);
        var expected = new byte[PageBytes];
        for (int i = 0; i < Pages; i++)
        {
            source.Process.ReadPageContent(start + (ulong)i * PageBytes, expected);
            Assert.True(restored.AsSpan(i * (int)PageBytes, (int)PageBytes).SequenceEqual(expected), $"page {i} restored from {Path.GetFileName(image)} is not the process's");
        }
    }

    [Theory]
    [InlineData("6.1", TrackingMethod.SoftDirty)]
    [InlineData("6.1", TrackingMethod.Hash)]
    [InlineData("6.12", TrackingMethod.SoftDirty)]
    [InlineData("6.18", TrackingMethod.WriteProtect)]
    public void PagesDroppedAndReadAgainAsTheZeroPage_TheIncrementHoldsZeros_NotTheParentsBytes(string kernel, TrackingMethod method)
    {
        // Before the fix, on profile 6.1 (no PAGEMAP_SCAN: the save walks pagemap, as it does for every real process)
        // with SoftDirty: the zero page a read maps after MADV_DONTNEED is present and not soft-dirty, so the increment
        // neither read it nor recorded it, and the chain restored the parent's bytes for 8 pages that are zeros.
        var e = new EmulatedProcess("r8i", KernelProfile.Get(kernel));
        Assert.True(e.Profile.SharedZeroPage); // the profile's read fault maps the zero page: the case under test
        ulong a = e.Mmap(null, Pages * PageBytes, Protection.Read | Protection.Write).Start;
        e.Write(a, Pages * PageBytes, 5);
        var source = new EmulatedTarget(e);
        string parent = Path.Combine(_dir, $"{kernel}-{method}-0"), child = Path.Combine(_dir, $"{kernel}-{method}-1");
        Save(source, method, parent, null);
        e.MadviseDontNeed(a, 8 * PageBytes);
        e.Read(a, 8 * PageBytes);
        e.Write(a + 12 * PageBytes, PageBytes, 6);
        var result = Save(source, method, child, parent);
        Assert.Equal(8UL, result.Manifest.ZeroPages);
        Assert.Equal(1UL, result.Manifest.DataPages);
        AssertRestoreIsTheProcess(child, source, a);
    }

    [Fact]
    public void AKeptWriteProtectTrackerArmedForASelection_ThenWholeIncrements_HoldWritesOutsideTheFirstSelection()
    {
        // One source object across saves (as a migration's rounds or a script holding the engine's source): the
        // tracker kept on it is made with the selection of the save that armed it. A later save of every mapping
        // continued it, seeing only the first selection's writes.
        var e = new EmulatedProcess("r8sel", KernelProfile.Get(KernelProfile.DefaultName));
        ulong a = e.Mmap(null, Pages * PageBytes, Protection.Read | Protection.Write).Start;
        ulong b = e.Mmap(null, Pages * PageBytes, Protection.Read | Protection.Write, path: "/r8/named").Start;
        e.Write(a, Pages * PageBytes, 1);
        e.Write(b, Pages * PageBytes, 2);
        var source = new EmulatedTarget(e);
        string p0 = Path.Combine(_dir, "sel0"), p1 = Path.Combine(_dir, "sel1"), p2 = Path.Combine(_dir, "sel2");
        Func<MemoryMapping, bool> named = m => m.Path == "/r8/named";
        Save(source, TrackingMethod.WriteProtect, p0, null, named);
        Save(source, TrackingMethod.WriteProtect, p1, p0);
        e.Write(a + 3 * PageBytes, PageBytes, 9);
        Save(source, TrackingMethod.WriteProtect, p2, p1);
        AssertRestoreIsTheProcess(p2, source, a);
    }
}
