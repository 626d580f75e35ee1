using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading;

namespace SoftDirty.Emulation;

public sealed partial class EmulatedProcess
{
    /// <summary>How often (accesses - 1) a workload looks for cancellation: rarely enough to cost nothing.</summary>
    private const long CancelCheckMask = (1 << 16) - 1;

    /// <summary>The workload hot loop: dense leaves are accessed in place, everything else takes <see cref="TouchPage"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]

    internal WorkloadResult RunAccesses<T>(ref T stream, ulong firstPage, ulong endPage, long count, bool needWrite, bool needRead, CancellationToken cancel = default)
        where T : struct, IPageAccessStream
    {
        lock (_mem.Lock)
        {
            ulong address = firstPage << PageShift, length = (endPage - firstPage) << PageShift;
            if (needWrite) CheckAccess(address, length, write: true);
            if (needRead) CheckAccess(address, length, write: false);
            var before = new FaultCounts(_readFaults, _writeFaults, _cowFaults, _sdFaults, _uffdFaults, _swapIns);
            long writes = 0;
            ulong cachedLeaf = ulong.MaxValue;
            ulong[]? cached = null;
            var clock = Stopwatch.StartNew();
            for (long n = 0; n < count; n++)
            {
                if ((n & CancelCheckMask) == 0) cancel.ThrowIfCancellationRequested(); // -Count up to 2^63: Ctrl+C must reach it
                stream.Next(out ulong index, out bool write);
                ulong page = firstPage + index;
                ulong leaf = page >> PageTable.LeafShift;
                if (write) writes++;
                if (leaf != cachedLeaf) { cached = _pt.TryGetDense(leaf); cachedLeaf = leaf; }
                if (cached != null)
                {
                    ref ulong entry = ref cached[page & PageTable.LeafIndexMask];
                    ulong v = entry;
                    if (write)
                    {
                        if ((v & (Pte.Present | Pte.Writable)) == (Pte.Present | Pte.Writable))
                        {
                            entry = v | Pte.Dirty | Pte.Accessed;
                            _mem.SetContent(v & Pte.FrameMask, _mem.NewContentVersion());
                            continue;
                        }
                    }
                    else if ((v & Pte.Present) != 0)
                    {
                        entry = v | Pte.Accessed;
                        continue;
                    }
                }
                ulong frame = TouchPage(page, write);
                if (write) _mem.SetContent(frame, _mem.NewContentVersion());
                cachedLeaf = ulong.MaxValue;
            }
            clock.Stop();
            var after = new FaultCounts(_readFaults, _writeFaults, _cowFaults, _sdFaults, _uffdFaults, _swapIns);
            return new WorkloadResult { Accesses = count, Reads = count - writes, Writes = writes, Faults = after - before, Elapsed = clock.Elapsed };
        }
    }
}
