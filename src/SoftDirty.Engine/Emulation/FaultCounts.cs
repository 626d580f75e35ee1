namespace SoftDirty.Emulation;

/// <summary>Fault counts of an emulated process: what write tracking costs it.</summary>
/// <param name="ReadFaults">Faults of reads (page not present, or swapped out).</param>
/// <param name="WriteFaults">Faults of writes (page not present or not writable).</param>
/// <param name="CowFaults">Write faults that copied a page (copy-on-write) or reused one fork had protected.</param>
/// <param name="SoftDirtyWriteProtectFaults">Write faults taken only because clear_refs write-protected the page.</param>
/// <param name="UffdWriteProtectFaults">Write faults resolved by userfaultfd async write-protect.</param>
/// <param name="SwapIns">Pages brought back from swap.</param>
public readonly record struct FaultCounts(
    long ReadFaults, long WriteFaults, long CowFaults, long SoftDirtyWriteProtectFaults, long UffdWriteProtectFaults, long SwapIns)
{
    /// <summary>Every fault taken (read and write faults; swap-ins are counted among them).</summary>
    public long Total => ReadFaults + WriteFaults;

    /// <summary>The faults taken between two readings.</summary>
    public static FaultCounts operator -(FaultCounts a, FaultCounts b) => new(
        a.ReadFaults - b.ReadFaults, a.WriteFaults - b.WriteFaults, a.CowFaults - b.CowFaults,
        a.SoftDirtyWriteProtectFaults - b.SoftDirtyWriteProtectFaults, a.UffdWriteProtectFaults - b.UffdWriteProtectFaults,
        a.SwapIns - b.SwapIns);
}
