using System;
using System.IO;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Tests.Tracking;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Issue 13, sixth attack round, at the engine: an increment's parent replaced between the moment Save-MemoryImage
/// reads its manifest (to decide which pages soft-dirty vouches for) and the moment the writer reads its chain (to
/// compare and link). The real-process and cmdlet cases are in tests/Pester/Security.Round6.Images.Tests.ps1.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageRound6Tests : IDisposable
{
    private const int Pages = 16;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdround6-" + Guid.NewGuid().ToString("n"));

    public ImageRound6Tests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>One save as Save-MemoryImage makes it: the parent's manifest read, the tracking candidates, then the writer.</summary>
    private static ImageSaveResult SaveAsTheCmdletDoes(FakeProcess p, string path, string? parent, Action? betweenManifestAndChain = null)
    {
        var manifest = parent is null ? null : ImageReader.ReadManifest(parent);
        var candidates = ImageTracking.Candidates(p, TrackingMethod.SoftDirty, manifest, null, verify: false, out var armed, out var epoch, warn: null, default);
        betweenManifestAndChain?.Invoke();
        return ImageWriter.Save(p, path, parent, TrackingMethod.SoftDirty, candidates, armed: armed, armedEpoch: epoch, trackedAgainst: manifest);
    }

    [Fact]
    public void AParentSwappedForAnOlderImageAfterItsManifestWasReadIsRefused_NotAnIncrementMissingTheWritesBetween()
    {
        // Before the fix: the candidates came from the newer image's manifest (soft-dirty since it, still current),
        // the chain from the older one now under that name; the increment linked to the older image and kept its bytes
        // for the pages written between the two. Test-MemoryImage called it valid; the restore was stale.
        var p = new FakeProcess(Pages, softDirty: true, seed: 61);
        for (int i = 0; i < Pages; i++) p.WriteRandom(i);
        string older = Path.Combine(_dir, "older"), latest = Path.Combine(_dir, "latest"), aside = Path.Combine(_dir, "aside");
        SaveAsTheCmdletDoes(p, older, null);
        p.WriteRandom(1);
        p.WriteRandom(2);
        SaveAsTheCmdletDoes(p, latest, older);
        p.WriteRandom(5);
        var child = Path.Combine(_dir, "child");
        void Swap()
        {
            // As a "latest" folder or link moved back to an older image while the save runs.
            Directory.Move(latest, aside);
            Directory.Move(older, latest);
        }
        var ex = Assert.Throws<EngineException>(() => SaveAsTheCmdletDoes(p, child, latest, Swap));
        Assert.Equal(EngineError.ImageParentMismatch, ex.Error);
        Assert.False(Directory.Exists(child));
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(_dir), e => e.Contains(".partial-", StringComparison.Ordinal));
    }

    [Fact]
    public void AParentLeftInPlaceStillGivesAnExactIncrement()
    {
        var p = new FakeProcess(Pages, softDirty: true, seed: 62);
        for (int i = 0; i < Pages; i++) p.WriteRandom(i);
        string parent = Path.Combine(_dir, "p0"), child = Path.Combine(_dir, "p1");
        SaveAsTheCmdletDoes(p, parent, null);
        p.WriteRandom(3);
        var result = SaveAsTheCmdletDoes(p, child, parent);
        Assert.Equal(1UL, result.Manifest.DataPages);
        Assert.True(ImageVerifier.Test(child).Valid);
        using var chain = ImageReader.Chain(child);
        var pages = ChainPages.Of(chain);
        for (int i = 0; i < Pages; i++)
            Assert.True(pages.TryGet(p.Address(i), out var h) && h == PageHash.Fast128(p.Content(i), chain[0].PageKey), $"page {i} of the chain is not the process's");
    }
}
