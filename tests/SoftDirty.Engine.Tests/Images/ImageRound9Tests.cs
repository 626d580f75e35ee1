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
/// Issue 13, ninth attack round (memory images), at the engine: the WriteProtect tracker an emulated process keeps
/// between saves is found again through a new wrapper (each cmdlet wraps the process anew), and a parent of another
/// process is refused before anything of the process's tracking is touched. The cmdlet and real-process cases are in
/// tests/Pester/Security.Round9.Images.Tests.ps1.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageRound9Tests : IDisposable
{
    private const int Pages = 64;
    private const ulong PageBytes = 4096;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdround9i-" + Guid.NewGuid().ToString("n"));

    public ImageRound9Tests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>One save as Save-MemoryImage makes it, through a wrapper of its own: the parent checked, the candidates, the writer.</summary>
    private static ImageSaveResult Save(EmulatedProcess process, string path, string? parent, out DirtyPageSet? candidates)
    {
        var source = new EmulatedTarget(process);
        var manifest = parent is null ? null : ImageReader.ReadManifest(parent);
        if (manifest is not null) ImageWriter.CheckParentProcess(manifest, source, Path.Combine(parent!, ImageFormat.ManifestFile), parent!);
        candidates = ImageTracking.Candidates(source, TrackingMethod.WriteProtect, manifest, null, verify: false, out var armed, out var epoch, out var reset, warn: null, default);
        return ImageWriter.Save(source, path, parent, TrackingMethod.WriteProtect, candidates, null, armed: armed, armedEpoch: epoch, writeTrackingReset: reset, trackedAgainst: manifest);
    }

    [Fact]
    public void KeptWriteProtectTracker_IsFoundThroughANewWrapper_AndTheIncrementReadsOnlyTheWrittenPages()
    {
        // Before the fix the tracker was kept on the wrapper, which the next command never passes again: every
        // increment compared every page.
        var e = new EmulatedProcess("r9kept", KernelProfile.Get(KernelProfile.Linux618));
        ulong a = e.Mmap(null, Pages * PageBytes, Protection.Read | Protection.Write).Start;
        e.Write(a, Pages * PageBytes, 1);
        string p0 = Path.Combine(_dir, "k0"), p1 = Path.Combine(_dir, "k1");
        Save(e, p0, null, out _);
        e.Write(a + 5 * PageBytes, 2 * PageBytes, 2);
        var result = Save(e, p1, p0, out var candidates);
        Assert.NotNull(candidates);
        Assert.Equal(2UL, result.Manifest.ScannedPages);
        Assert.Equal(2UL, result.Manifest.DataPages);
        Assert.True(ImageVerifier.Test(p1).Valid);
    }

    [Fact]
    public void AParentOfAnotherProcess_IsRefused_AndTheProcessesOwnChainContinuesItsTracking()
    {
        var e = new EmulatedProcess("r9own", KernelProfile.Get(KernelProfile.Linux618));
        var other = new EmulatedProcess("r9other", KernelProfile.Get(KernelProfile.Linux618));
        ulong a = e.Mmap(null, Pages * PageBytes, Protection.Read | Protection.Write).Start;
        ulong b = other.Mmap(null, Pages * PageBytes, Protection.Read | Protection.Write).Start;
        e.Write(a, Pages * PageBytes, 1);
        other.Write(b, Pages * PageBytes, 3);
        string p0 = Path.Combine(_dir, "o0"), foreign = Path.Combine(_dir, "foreign"), refused = Path.Combine(_dir, "refused"), p1 = Path.Combine(_dir, "o1");
        Save(e, p0, null, out _);
        Save(other, foreign, null, out _);
        e.Write(a + 9 * PageBytes, PageBytes, 4);
        var ex = Assert.Throws<EngineException>(() => Save(e, refused, foreign, out _));
        Assert.Equal(EngineError.ImageParentMismatch, ex.Error);
        Assert.False(Directory.Exists(refused));
        var result = Save(e, p1, p0, out var candidates);
        Assert.NotNull(candidates);
        Assert.Equal(1UL, result.Manifest.DataPages);
        Assert.Equal(1UL, result.Manifest.ScannedPages);
    }
}
