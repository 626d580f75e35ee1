namespace SoftDirty.Emulation;

/// <summary>Fault counts of an emulated process: what write tracking costs it.</summary>
public readonly record struct FaultCounts(
    long ReadFaults, long WriteFaults, long CowFaults, long SoftDirtyWriteProtectFaults, long UffdWriteProtectFaults, long SwapIns)
{
    /// <summary>Every fault taken (read and write faults; swap-ins are counted among them).</summary>
    public long Total => ReadFaults + WriteFaults;

    public static FaultCounts operator -(FaultCounts a, FaultCounts b) => new(
        a.ReadFaults - b.ReadFaults, a.WriteFaults - b.WriteFaults, a.CowFaults - b.CowFaults,
        a.SoftDirtyWriteProtectFaults - b.SoftDirtyWriteProtectFaults, a.UffdWriteProtectFaults - b.UffdWriteProtectFaults,
        a.SwapIns - b.SwapIns);
}
