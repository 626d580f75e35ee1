using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// PageWalk.ReadChunks on this process's real memory: scattered ranges in batches of process_vm_readv, and
/// the /proc/PID/mem fallback for a page process_vm_readv cannot read (no read permission).
/// </summary>
public unsafe class PageWalkTests
{
    private static readonly int Ps = Environment.SystemPageSize;

    /// <summary>
    /// Runs <paramref name="body"/> on a fresh private anonymous region of <paramref name="length"/> bytes (no
    /// transparent huge pages, whatever the machine's mode), unmapped afterwards.
    /// </summary>
    private static void WithPrivateRegion(nuint length, Action<nint> body)
    {
        nint mem = Native.Mmap(0, length, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_PRIVATE | Native.MAP_ANONYMOUS, -1, 0);
        Assert.NotEqual(Native.MAP_FAILED, mem);
        try
        {
            if (Directory.Exists("/sys/kernel/mm/transparent_hugepage")) Native.Madvise(mem, length, Native.MADV_NOHUGEPAGE);
            body(mem);
        }
        finally { Native.Munmap(mem, length); }
    }

    [HostFact]
    public void ScatteredRangesAcrossBatchesAndAnUnreadablePageReadExactly()
    {
        // More single-page ranges than one process_vm_readv takes, every page with its own bytes.
        const int Pages = Native.IovMax * 2 + 100, Stride = 2, Protected = 777;
        nuint length = (nuint)(Pages * Stride * Ps);
        WithPrivateRegion(length, mem =>
        {
            var ranges = new List<AddressRange>();
            for (int i = 0; i < Pages; i++)
            {
                ulong a = (ulong)mem + (ulong)(i * Stride * Ps);
                new Span<byte>((void*)a, Ps).Fill((byte)(i * 7 + 1));
                ranges.Add(new AddressRange(a, a + (ulong)Ps));
            }
            // A written page left without read permission: process_vm_readv stops there, /proc/PID/mem reads it.
            Assert.Equal(0, Native.Mprotect((nint)ranges[Protected].Start, (nuint)Ps, Native.PROT_NONE));
            var seen = new Dictionary<ulong, byte>();
            using var source = ProcPageSource.Open(Environment.ProcessId);
            ulong unreadable = PageWalk.ReadChunks(source, ranges, (address, data) =>
            {
                Assert.Equal(0, data.Length % Ps);
                for (int off = 0; off < data.Length; off += Ps)
                {
                    var page = data.Slice(off, Ps);
                    Assert.True(page.IndexOfAnyExcept(page[0]) < 0, $"page 0x{address + (ulong)off:x} is not uniform");
                    Assert.True(seen.TryAdd(address + (ulong)off, page[0]), $"page 0x{address + (ulong)off:x} handed over twice");
                }
            }, sharedAnonymous: Array.Empty<AddressRange>());
            Assert.Equal(0UL, unreadable);
            Assert.Equal(Pages, seen.Count);
            for (int i = 0; i < Pages; i++) Assert.Equal((byte)(i * 7 + 1), seen[ranges[i].Start]);
        });
    }

    [HostFact]
    public void AnUnmappedPageIsSkippedAndCounted()
    {
        nuint length = (nuint)(8 * Ps);
        WithPrivateRegion(length, mem =>
        {
            new Span<byte>((void*)mem, (int)length).Fill(5);
            Assert.Equal(0, Native.Munmap(mem + 3 * Ps, (nuint)Ps));
            using var source = ProcPageSource.Open(Environment.ProcessId);
            ulong bytes = 0;
            ulong unreadable = PageWalk.ReadChunks(source, new[] { new AddressRange((ulong)mem, (ulong)mem + length) }, (_, data) => bytes += (ulong)data.Length, sharedAnonymous: Array.Empty<AddressRange>());
            Assert.Equal(1UL, unreadable);
            Assert.Equal(7UL * (ulong)Ps, bytes);
        });
    }

    [HostFact]
    public void ChunksTouchingSharedPagesGoThroughProcMemAndTheHandlerSeesAddressesInOrder()
    {
        // Every other chunk declared shared: the handler must still see ascending addresses, every page once.
        const int Pages = 64;
        nuint length = (nuint)(Pages * Ps);
        WithPrivateRegion(length, mem =>
        {
            for (int i = 0; i < Pages; i++) new Span<byte>((void*)(mem + i * Ps), Ps).Fill((byte)(i + 1));
            var ranges = new List<AddressRange>();
            var shared = new List<AddressRange>();
            for (int i = 0; i < Pages; i += 4)
            {
                ulong a = (ulong)mem + (ulong)(i * Ps);
                ranges.Add(new AddressRange(a, a + 4UL * (ulong)Ps));
                if (i % 8 == 4) shared.Add(new AddressRange(a + (ulong)Ps, a + 2UL * (ulong)Ps));
            }
            using var source = ProcPageSource.Open(Environment.ProcessId);
            ulong last = 0;
            int pages = 0;
            ulong unreadable = PageWalk.ReadChunks(source, ranges, (address, data) =>
            {
                Assert.True(address >= last, $"0x{address:x} after 0x{last:x}");
                for (int off = 0; off < data.Length; off += Ps, pages++)
                    Assert.Equal((byte)((address + (ulong)off - (ulong)mem) / (ulong)Ps + 1), data[off]);
                last = address + (ulong)data.Length;
            }, chunkBytes: 4 * Ps, sharedAnonymous: shared);
            Assert.Equal(0UL, unreadable);
            Assert.Equal(Pages, pages);
        });
    }

    [HostFact]
    public void HashSnapshotOfTwoAdjacentMappingsHashesEveryPageOnce()
    {
        // Two VMAs that touch (one mprotect'ed read-only): their present regions touch, ReadChunks hands both
        // over as one run, and the snapshot must put each page's hash in its own region.
        const int Pages = 8;
        nuint length = (nuint)(Pages * Ps);
        WithPrivateRegion(length, mem =>
        {
            for (int i = 0; i < Pages; i++) new Span<byte>((void*)(mem + i * Ps), Ps).Fill((byte)(i + 1));
            Assert.Equal(0, Native.Mprotect(mem + Pages / 2 * Ps, (nuint)(Pages / 2 * Ps), Native.PROT_READ));
            ulong start = (ulong)mem, end = start + (ulong)length;
            using var source = ProcPageSource.Open(Environment.ProcessId);
            var spans = PageWalk.DataSpans(source.ReadMappings(false), m => m.Start < end && m.End > start)
                .ConvertAll(s => new PageSpan(Math.Max(s.Start, start), Math.Min(s.End, end), s.Mapping));
            Assert.Equal(2, spans.Count);
            var key = PageHashKey.NewRandom();
            var snap = PageHashSnapshot.Take(source, spans, PageHashAlgorithm.Fast128, key);
            Assert.Equal((ulong)Pages, snap.PageCount);
            for (int i = 0; i < Pages; i++)
            {
                Assert.True(snap.TryGet(start + (ulong)(i * Ps), out var h));
                Assert.Equal(PageHash.Compute(PageHashAlgorithm.Fast128, new ReadOnlySpan<byte>((void*)(mem + i * Ps), Ps), key), h);
            }
        });
    }
}
