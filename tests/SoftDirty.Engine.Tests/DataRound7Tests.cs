using System;
using System.IO;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Images;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Issue 13, seventh attack round (data side), at the engine: chains of one emulated source object saved with
/// WriteProtect, whose tracker <see cref="ImageTracking"/> keeps on the source between saves. The cmdlet cases are in
/// tests/Pester/Security.Round7.Data.Tests.ps1.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class DataRound7Tests : IDisposable
{
    private const int Pages = 16;
    private const ulong PageBytes = 4096;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdround7d-" + Guid.NewGuid().ToString("n"));

    public DataRound7Tests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    private static (EmulatedTarget Source, ulong Start) NewSource()
    {
        var e = new EmulatedProcess("r7d", KernelProfile.Get(KernelProfile.DefaultName));
        ulong a = e.Mmap(null, Pages * PageBytes, Protection.Read | Protection.Write).Start;
        e.Write(a, Pages * PageBytes, 1);
        return (new EmulatedTarget(e), a);
    }

    /// <summary>One save as Save-MemoryImage makes it: the parent's manifest read, the tracking candidates, then the writer.</summary>
    private static ImageSaveResult Save(IPageSource source, string path, string? parent, out string? warning)
    {
        string? said = null;
        var manifest = parent is null ? null : ImageReader.ReadManifest(parent);
        var candidates = ImageTracking.Candidates(source, TrackingMethod.WriteProtect, manifest, null, verify: false, out var armed, out var epoch, out var reset,
            w => said = w, default);
        var result = ImageWriter.Save(source, path, parent, TrackingMethod.WriteProtect, candidates, armed: armed, armedEpoch: epoch, writeTrackingReset: reset, trackedAgainst: manifest);
        warning = said;
        return result;
    }

    /// <summary>The chain's hash of each page of the mapping equals the process's content now.</summary>
    private static void AssertChainIsTheProcess(string image, EmulatedTarget source, ulong start)
    {
        Assert.True(ImageVerifier.Test(image).Valid);
        using var chain = ImageReader.Chain(image);
        var pages = ChainPages.Of(chain);
        var content = new byte[PageBytes];
        for (int i = 0; i < Pages; i++)
        {
            ulong at = start + (ulong)i * PageBytes;
            source.Process.ReadPageContent(at, content);
            Assert.True(pages.TryGet(at, out var h) && h == PageHash.Fast128(content, chain[0].PageKey), $"page {i} of {Path.GetFileName(image)} is not the process's");
        }
    }

    [Fact]
    public void TwoIncrementsOfOneParent_KeptTracker_TheSecondHoldsThePagesWrittenBeforeItsSibling()
    {
        // Before the fix the tracker kept on the source was used whenever the parent had armed WriteProtect, whatever
        // image it had last been re-armed at: the second increment of a branch got the writes since its sibling only,
        // inherited the parent's bytes for the page written before the sibling, and was called valid.
        var (p, a) = NewSource();
        string root = Path.Combine(_dir, "0"), first = Path.Combine(_dir, "a"), second = Path.Combine(_dir, "b");
        Save(p, root, null, out _);
        p.Process.Write(a + 1 * PageBytes, PageBytes, 7);
        Save(p, first, root, out _);
        p.Process.Write(a + 10 * PageBytes, PageBytes, 9);
        Save(p, second, root, out var warning);
        Assert.NotNull(warning);
        AssertChainIsTheProcess(second, p, a);
    }

    [Fact]
    public void AnIncrementOfAnOlderImageInTheChain_KeptTracker_IsExact()
    {
        // The chain 0 <- 1 <- 2, then an increment of 1 (not the newest): the tracker was re-armed at 2.
        var (p, a) = NewSource();
        string[] images = { Path.Combine(_dir, "0"), Path.Combine(_dir, "1"), Path.Combine(_dir, "2"), Path.Combine(_dir, "1b") };
        Save(p, images[0], null, out _);
        p.Process.Write(a + 2 * PageBytes, PageBytes, 3);
        Save(p, images[1], images[0], out _);
        p.Process.Write(a + 4 * PageBytes, PageBytes, 4);
        Save(p, images[2], images[1], out _);
        p.Process.Write(a + 6 * PageBytes, PageBytes, 5);
        Save(p, images[3], images[1], out _);
        AssertChainIsTheProcess(images[3], p, a);
    }

    [Fact]
    public void ASaveThatFailsAfterTheTrackerWasCollected_TheNextIncrementOfThatParentIsExact()
    {
        // Before the fix the failed save (its destination taken) had collected and re-armed the kept tracker; the retry
        // from the same parent got only the writes since that failure and missed the page written before it.
        var (p, a) = NewSource();
        string root = Path.Combine(_dir, "f0"), taken = Path.Combine(_dir, "taken"), retry = Path.Combine(_dir, "f1");
        Save(p, root, null, out _);
        Directory.CreateDirectory(Path.Combine(taken, "something"));
        p.Process.Write(a + 5 * PageBytes, PageBytes, 6);
        var ex = Assert.Throws<EngineException>(() => Save(p, taken, root, out _));
        Assert.Equal(EngineError.ImageExists, ex.Error);
        p.Process.Write(a + 12 * PageBytes, PageBytes, 2);
        Save(p, retry, root, out _);
        AssertChainIsTheProcess(retry, p, a);
    }

    [Fact]
    public void AStraightChain_KeptTracker_UsesTheTrackerAndIsExact()
    {
        var (p, a) = NewSource();
        string root = Path.Combine(_dir, "s0"), next = Path.Combine(_dir, "s1");
        Save(p, root, null, out _);
        p.Process.Write(a + 3 * PageBytes, PageBytes, 8);
        var result = Save(p, next, root, out var warning);
        Assert.Null(warning);
        Assert.Equal(1UL, result.Manifest.DataPages); // the tracker's answer, not every page compared
        AssertChainIsTheProcess(next, p, a);
    }
}
