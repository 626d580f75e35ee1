using System;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using SoftDirty.Tracking;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Round 24: the live counts of memory that ends with the process (here a memfd of this process) where it does not map it:
/// a write(2) into pages of the memfd that its mapping never touched changes what the process reads there, and the Hash
/// tracker counted none of it (the pages were in no snapshot); it now hashes them from the object (PageHashSnapshot).
/// </summary>
public sealed class CountsRound24Tests : IDisposable
{
    private const int Pages = 8;
    private static readonly int Ps = Environment.SystemPageSize;
    private readonly SafeFileHandle _memfd;
    private readonly nint _address;

    [DllImport("libc", SetLastError = true, EntryPoint = "memfd_create", CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int MemfdCreate(string name, uint flags);

    public CountsRound24Tests()
    {
        int fd = MemfdCreate("counts-round24", 1 /* MFD_CLOEXEC */);
        Assert.True(fd >= 0, "memfd_create: errno " + Marshal.GetLastPInvokeError());
        _memfd = new SafeFileHandle(fd, ownsHandle: true);
        RandomAccess.Write(_memfd, Filled(Pages, 1), 0);
        _address = Native.Mmap(0, (nuint)(Pages * Ps), Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, fd, 0);
        Assert.NotEqual((nint)(-1), _address);
    }

    public void Dispose()
    {
        Native.Munmap(_address, (nuint)(Pages * Ps));
        _memfd.Dispose();
    }

    private static byte[] Filled(int pages, int seed)
    {
        var b = new byte[pages * Ps];
        new Random(seed).NextBytes(b);
        for (int i = 0; i < pages; i++) b[i * Ps] |= 1; // never an all-zero page
        return b;
    }

    [HostFact(HostNeeds.Linux)]
    public void HashTracker_CountsWritesIntoAMemfdWhereTheProcessDoesNotMapIt()
    {
        using var src = ProcPageSource.Open(Environment.ProcessId);
        ulong start = (ulong)_address;
        using var tracker = new HashTracker(src, selector: m => m.Start == start);
        tracker.Reset();
        RandomAccess.Write(_memfd, Filled(3, 2), 2L * Ps);
        var set = tracker.Collect();
        Assert.Equal(new[] { new AddressRange(start + 2 * (ulong)Ps, start + 5 * (ulong)Ps) }, set.Ranges.ToArray());
        Assert.Equal(0UL, set.UnopenedObjectPages);
        Assert.Empty(tracker.Collect().Ranges); // nothing since
    }

    [Fact]
    public void CutAt_SplitsRangesAtTheBoundsOfOthers()
    {
        var ranges = new[] { new AddressRange(0x1000, 0x9000), new AddressRange(0xa000, 0xb000) };
        var at = new[] { new AddressRange(0x0000, 0x2000), new AddressRange(0x4000, 0x6000), new AddressRange(0xa800, 0xc000) };
        Assert.Equal(new[]
        {
            new AddressRange(0x1000, 0x2000), new AddressRange(0x2000, 0x4000), new AddressRange(0x4000, 0x6000), new AddressRange(0x6000, 0x9000),
            new AddressRange(0xa000, 0xa800), new AddressRange(0xa800, 0xb000),
        }, PreCopyMigration.CutAt(ranges, at).ToArray());
    }
}
