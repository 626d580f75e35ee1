using System;
using System.IO;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Images;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Issue 13, eighteenth attack round, at the engine: memory that is unmapped after a save found it present and before it
/// read it (a thread's stack, unmapped by the C library once the thread exited) is gone, not unreadable; a page whose
/// mapping is still there and fails to read stays unreadable. The cmdlet cases are in
/// tests/Pester/Security.Round18.Spawn.Tests.ps1.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class SpawnRound18Tests : IDisposable
{
    private const int Pages = 8;
    private const ulong PageBytes = 4096;
    private readonly ScratchFolder _dir = new("sdround18s");

    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// An emulated process whose reads of [<see cref="Start"/>, <see cref="End"/>) fail once armed: with <see cref="Unmap"/> the
    /// range is unmapped first (the interleaving: found present, unmapped, then read), else it stays mapped and unreadable.
    /// </summary>
    private sealed class FailingReads(EmulatedProcess inner) : PageSourceWrapper(inner)
    {
        public ulong Start, End;
        public bool Armed, Unmap;

        public override int ReadMemory(ulong address, Span<byte> destination)
        {
            ulong end = address + (ulong)destination.Length;
            if (!Armed || end <= Start || address >= End) return inner.ReadMemory(address, destination);
            if (Unmap) { inner.Munmap(Start, End - Start); Armed = false; return inner.ReadMemory(address, destination); }
            return address >= Start ? 0 : inner.ReadMemory(address, destination[..(int)(Start - address)]);
        }
    }

    /// <summary>Two mappings of <see cref="Pages"/> written pages each (a guard page between them): the first's start and the second's.</summary>
    private static (EmulatedProcess Process, ulong Kept, ulong Gone) NewProcess()
    {
        var e = new EmulatedProcess("r18s", KernelProfile.Get(KernelProfile.DefaultName));
        ulong kept = e.Mmap(null, (Pages * 2 + 1) * PageBytes, Protection.Read | Protection.Write).Start;
        ulong gone = kept + (Pages + 1) * PageBytes;
        e.Munmap(kept + Pages * PageBytes, PageBytes);
        e.Write(kept, Pages * PageBytes, 1);
        e.Write(gone, Pages * PageBytes, 2);
        return (e, kept, gone);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void AFullImageCountsAsUnreadableOnlyPagesWhoseMappingIsStillThere(bool unmap)
    {
        var (e, _, gone) = NewProcess();
        var source = new FailingReads(e) { Start = gone, End = gone + Pages * PageBytes, Armed = true, Unmap = unmap };
        var result = ImageWriter.Save(source, Path.Combine(_dir.Path, "full"), null, TrackingMethod.Hash, null);
        Assert.Equal(unmap ? 0UL : Pages, result.Manifest.UnreadablePages);
        Assert.Equal((ulong)Pages, result.Manifest.DataPages); // the kept mapping's pages only
        Assert.Equal(!unmap, !ImageVerifier.Test(result.Path).Valid);
    }

    [Fact]
    public void AnIncrementGivesZeroForTheParentsPagesOfMemoryUnmappedBeforeItsRead()
    {
        var (e, _, gone) = NewProcess();
        var source = new FailingReads(e) { Start = gone, End = gone + Pages * PageBytes };
        var full = ImageWriter.Save(source, Path.Combine(_dir.Path, "full"), null, TrackingMethod.Hash, null);
        Assert.Equal(2UL * Pages, full.Manifest.DataPages);
        source.Armed = source.Unmap = true;
        var inc = ImageWriter.Save(source, Path.Combine(_dir.Path, "inc"), full.Path, TrackingMethod.Hash, null);
        Assert.Equal(0UL, inc.Manifest.UnreadablePages);
        Assert.Equal(0UL, inc.Manifest.DataPages);
        Assert.Equal((ulong)Pages, inc.Manifest.ZeroPages); // the parent's pages there are zero now, never inherited
        Assert.True(ImageVerifier.Test(inc.Path).Valid);
    }
}
