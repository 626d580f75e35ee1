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
/// Issue 13, thirtieth attack round (open), at the engine: a save reads a uffd-wp marker of a shared or file mapping (a page
/// dropped under write tracking, which the memory reads from its object again), and that read fails. The writer took every
/// such failure for a page past the end of its file (a truncation the caller could not see): not unreadable, and zero in an
/// increment whose parent had the page. A read that fails for another reason (EIO of the file system) made the chain say
/// zeros there, silently. Only a real process's file can end before its mapping, and only where its end cannot be found.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ImageWriterMarkerTests : IDisposable
{
    private const int Pages = 8;
    private const ulong PageBytes = 4096;
    /// <summary>The page dropped to a marker whose read then fails.</summary>
    private const int Dropped = 3;
    private readonly string _dir = Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath(), "sdround30m-" + Guid.NewGuid().ToString("n"));

    public ImageWriterMarkerTests() => Directory.CreateDirectory(_dir);
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    /// <summary>Reads of one page fail (as a file system's EIO does), the rest as the emulated process reads them.</summary>
    private sealed class FailingPage : PageSourceWrapper
    {
        private readonly ulong _page;
        public FailingPage(IPageSource inner, ulong page) : base(inner) => _page = page;
        public override int ReadMemory(ulong address, Span<byte> destination)
        {
            if (address <= _page && _page < address + (ulong)destination.Length) return address == _page ? -1 : Inner.ReadMemory(address, destination[..(int)(_page - address)]);
            return Inner.ReadMemory(address, destination);
        }
    }

    [Fact]
    public void AMarkerWhoseReadFails_IsUnreadable_NeverZeroInTheIncrement()
    {
        var e = new EmulatedProcess("r30m", KernelProfile.Get(KernelProfile.DefaultName));
        ulong a = e.Mmap(null, Pages * PageBytes, Protection.Read | Protection.Write, MmapFlags.Shared).Start;
        e.Write(a, Pages * PageBytes, 5);
        var source = new EmulatedTarget(e);
        string full = Path.Combine(_dir, "0"), inc = Path.Combine(_dir, "1");
        ImageWriter.Save(source, full, null, TrackingMethod.Hash, null);
        // Write tracking of the shared mapping, then the page dropped: a uffd-wp marker, which pagemap shows as swapped.
        e.RegisterUffdWriteProtectAsync(a, Pages * PageBytes);
        ulong page = a + Dropped * PageBytes;
        e.MadviseDontNeed(page, PageBytes);
        Assert.True(e.ReadEntry(page).Swapped, "the dropped page is a marker (the setting is what the case needs)");
        var result = ImageWriter.Save(new FailingPage(source, page), inc, full, TrackingMethod.Hash, null);
        // Before: 0 unreadable, and a zero record for the page (the chain said zeros where the memory holds 5s).
        Assert.Equal(1UL, result.Manifest.UnreadablePages);
        using var chain = ImageReader.Chain(inc);
        var pages = ChainPages.Of(chain);
        Assert.True(pages.TryGet(page, out var h) && h != chain[0].PageKey.ZeroPage((int)PageBytes), "the page is not said to be zero");
    }
}
