using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using SoftDirty.Tracking;

namespace SoftDirty.TestKit.Benchmarks;

/// <summary>
/// The measurements of tests/BenchWorkflows.ps1 that need C#: plain reads of a process's memory, a Hash
/// snapshot, a plain file write, each tracking method on one workload of this process, and this
/// process's own userfaultfd write fault.
/// </summary>
public static class WorkflowBenchmarks
{
    private const int PageBytes = 4096;
    private const int PlainWriteBytes = 2 << 20;
    // The Methods workload: pages of its region, pages written, of those the ones written with the bytes they hold.
    private const int MethodPages = 16384, MethodWrites = 1000, MethodSameBytes = 100, MethodSeed = 5;

    /// <summary>Bytes per read of <see cref="ReadSeconds"/>: the engine's chunk size.</summary>
    public static int ReadChunkBytes => PageWalk.ChunkBytes;

    /// <summary>Seconds to read <paramref name="length"/> bytes at <paramref name="start"/> in reads of the engine's chunk size.</summary>
    public static double ReadSeconds(int processId, ulong start, ulong length)
    {
        using var source = ProcPageSource.Open(processId);
        var buffer = GC.AllocateUninitializedArray<byte>(PageWalk.ChunkBytes);
        var clock = Stopwatch.StartNew();
        for (ulong a = start; a < start + length; a += (ulong)buffer.Length) source.ReadMemory(a, buffer);
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// Seconds for the engine's page reader (<see cref="PageWalk.ReadChunks"/>: process_vm_readv where allowed)
    /// to read the range, with nothing done to the bytes; throws when a page could not be read. The time includes
    /// the pagemap read that finds the copy-on-write shared pages (read through /proc/PID/mem), as a save does.
    /// </summary>
    public static double WalkSeconds(int processId, ulong start, ulong length)
    {
        using var source = ProcPageSource.Open(processId);
        ulong bytes = 0;
        var clock = Stopwatch.StartNew();
        var shared = new List<AddressRange>();
        foreach (var _ in PageWalk.PresentRegions(source, new[] { new PageSpan(start, start + length, null) }, shared)) { }
        ulong unreadable = PageWalk.ReadChunks(source, new[] { new AddressRange(start, start + length) }, (_, data) => bytes += (ulong)data.Length, sharedAnonymous: shared);
        double seconds = clock.Elapsed.TotalSeconds;
        if (unreadable > 0 || bytes != length) throw new InvalidOperationException($"read {bytes} bytes of {length}, {unreadable} pages unreadable");
        return seconds;
    }

    /// <summary>Seconds of a Hash tracker's first snapshot of the range; throws when it hashed fewer pages than the range holds.</summary>
    public static double HashSeconds(int processId, ulong start, ulong length)
    {
        using var source = ProcPageSource.Open(processId);
        using var tracker = new HashTracker(source, PageHashAlgorithm.Fast128, m => m.Start < start + length && m.End > start);
        var clock = Stopwatch.StartNew();
        tracker.Reset();
        double seconds = clock.Elapsed.TotalSeconds;
        if (tracker.Snapshot!.PageCount < length / PageBytes)
            throw new InvalidOperationException($"hashed {tracker.Snapshot.PageCount} pages of {length / PageBytes}");
        return seconds;
    }

    /// <summary>The bytes of the range (at most 2 GiB less a page), read in 2 MiB reads.</summary>
    public static byte[] ReadAll(int processId, ulong start, ulong length)
    {
        using var source = ProcPageSource.Open(processId);
        var all = GC.AllocateUninitializedArray<byte>((int)Math.Min(length, int.MaxValue - PageBytes));
        for (ulong a = 0; a < (ulong)all.Length; a += PlainWriteBytes)
            source.ReadMemory(start + a, all.AsSpan((int)a, (int)Math.Min(PlainWriteBytes, (ulong)all.Length - a)));
        return all;
    }

    /// <summary>Seconds to write <paramref name="data"/> to a new file in 2 MiB writes, unbuffered, and flush it to disk.</summary>
    public static double WriteSeconds(byte[] data, string path)
    {
        ArgumentNullException.ThrowIfNull(data);
        var clock = Stopwatch.StartNew();
        using (var file = new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, BufferSize = 0 }))
        {
            for (int o = 0; o < data.Length; o += PlainWriteBytes) file.Write(data, o, Math.Min(PlainWriteBytes, data.Length - o));
            file.Flush(true);
        }
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// One workload on this process (1,000 of 16,384 pages written, 100 with the bytes they already hold),
    /// collected with each tracking method: per method whether it is supported (else why), the pages it
    /// reported, the milliseconds to collect and of the workload under it, and of the bare workload.
    /// </summary>
    public static unsafe object[] Methods()
    {
        var memory = (byte*)NativeMemory.AlignedAlloc(MethodPages * PageBytes, PageBytes);
        try
        {
            for (int i = 0; i < MethodPages; i++) memory[i * PageBytes] = (byte)(i | 1);
            var rows = new List<object>();
            using var self = ProcPageSource.Open(Environment.ProcessId);
            ulong lo = (ulong)memory, hi = lo + (ulong)MethodPages * PageBytes;
            Func<MemoryMapping, bool> selector = m => m.Start < hi && m.End > lo;
            var random = new Random(MethodSeed);
            var targets = Enumerable.Range(0, MethodPages).OrderBy(_ => random.Next()).Take(MethodWrites).ToArray();
            double Workload()
            {
                var clock = Stopwatch.StartNew();
                for (int k = 0; k < targets.Length; k++)
                {
                    byte* p = memory + (long)targets[k] * PageBytes;
                    *p = k < MethodSameBytes ? *p : (byte)(*p + 2);
                }
                return clock.Elapsed.TotalMilliseconds;
            }
            Workload(); // warm: every page present and written once
            double bare = Workload();
            foreach (var method in new[] { TrackingMethod.SoftDirty, TrackingMethod.WriteProtect, TrackingMethod.Hash })
            {
                IDirtyTracker tracker;
                try { tracker = DirtyTracker.Create(self, method, PageHashAlgorithm.Fast128, selector); }
                catch (EngineException ex)
                {
                    rows.Add(new { Method = method.ToString(), Supported = false, Reason = ex.Message });
                    continue;
                }
                using (tracker)
                {
                    tracker.Reset();
                    double work = Workload();
                    var clock = Stopwatch.StartNew();
                    var set = tracker.Collect();
                    double collect = clock.Elapsed.TotalMilliseconds;
                    ulong mine = 0;
                    foreach (var r in set.Ranges)
                    {
                        ulong s = Math.Max(r.Start, lo), e = Math.Min(r.End, hi);
                        if (e > s) mine += (e - s) / PageBytes;
                    }
                    rows.Add(new
                    {
                        Method = method.ToString(), Supported = true, PagesReported = mine, CollectMs = Math.Round(collect, 2),
                        WorkloadMs = Math.Round(work, 3), BareWorkloadMs = Math.Round(bare, 3),
                    });
                }
            }
            return rows.ToArray();
        }
        finally { NativeMemory.AlignedFree(memory); }
    }

    /// <summary>This process's own userfaultfd write-protect fault: nanoseconds per first write to a protected page.</summary>
    public static unsafe double SelfWriteNs(int pages)
    {
        var memory = (byte*)NativeMemory.AlignedAlloc((nuint)pages * PageBytes, PageBytes);
        for (int i = 0; i < pages; i++) memory[i * (long)PageBytes] = 1;
        ulong lo = (ulong)memory, hi = lo + (ulong)pages * PageBytes;
        try
        {
            using var self = ProcPageSource.Open(Environment.ProcessId);
            using var tracker = new WriteProtectTracker(self, m => m.Start < hi && m.End > lo);
            tracker.Reset();
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < pages; i++) memory[i * (long)PageBytes] = 2;
            return clock.Elapsed.TotalMilliseconds * 1e6 / pages;
        }
        finally { NativeMemory.AlignedFree(memory); }
    }
}
