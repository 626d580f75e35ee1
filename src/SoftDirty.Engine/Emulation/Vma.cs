namespace SoftDirty.Emulation;

/// <summary>One emulated VMA: [Start, End), protection, sharing, backing and flags.</summary>
internal sealed class Vma
{
    public ulong Start;
    public ulong End;
    public Protection Protection;
    public bool Shared;
    /// <summary>The file or shared anonymous object; null for private anonymous memory.</summary>
    public BackingObject? Backing;
    /// <summary>vm_pgoff: page index in <see cref="Backing"/> of <see cref="Start"/>; for private anonymous memory the
    /// address's page number at mmap (kept by a move once it has pages, so a moved VMA rarely merges).</summary>
    public ulong PageOffset;
    public VmaFlags Flags;
    /// <summary>The anon_vma (0 until the first anonymous page is faulted in); VMAs with different ones do not merge.</summary>
    public long AnonVma;
    /// <summary>The anon_vma was forked (its chain is not singular): no merge even with a VMA without one.</summary>
    public bool AnonVmaForked;

    private static long s_lastAnonVma;

    /// <summary>anon_vma_prepare: gives the VMA an anon_vma if it has none.</summary>
    public void PrepareAnonVma()
    {
        if (AnonVma == 0) AnonVma = System.Threading.Interlocked.Increment(ref s_lastAnonVma);
    }

    /// <summary>The anon_vma a forked child's copy gets: a new one, chained to the parent's.</summary>
    public void ForkAnonVma()
    {
        if (AnonVma == 0) return;
        AnonVma = 0;
        PrepareAnonVma();
        AnonVmaForked = true;
    }

    public bool IsAnonymous => Backing == null;
    public bool SoftDirty => (Flags & VmaFlags.SoftDirty) != 0;
    public bool UffdWriteProtect => (Flags & VmaFlags.UffdWriteProtect) != 0;
    public bool HugePage => (Flags & VmaFlags.HugePage) != 0;
    public bool NoHugePage => (Flags & VmaFlags.NoHugePage) != 0;
    public bool Writable => (Protection & Protection.Write) != 0;
    /// <summary>VM_SEALED (mseal).</summary>
    public bool Sealed => (Flags & VmaFlags.Sealed) != 0;

    public Vma Clone() => (Vma)MemberwiseClone();

    /// <summary>The backing page index of an address in this VMA.</summary>
    public ulong BackingPage(ulong address) => PageOffset + ((address - Start) >> EmulatedProcess.PageShift);

    /// <summary>Splits at <paramref name="address"/>: this keeps [Start, address), the result gets the rest.</summary>
    public Vma SplitAt(ulong address)
    {
        var tail = Clone();
        tail.Start = address;
        tail.PageOffset = BackingPage(address);
        End = address;
        return tail;
    }

    /// <summary>Whether <paramref name="next"/>, starting where this ends, may merge with it (VM_SOFTDIRTY is ignored).</summary>
    public bool CanMergeWith(Vma next) =>
        End == next.Start && Protection == next.Protection && Shared == next.Shared && Backing == next.Backing
        && (Flags & ~VmaFlags.SoftDirty) == (next.Flags & ~VmaFlags.SoftDirty)
        && BackingPage(End) == next.PageOffset
        && (AnonVma == 0 || next.AnonVma == 0 ? !(AnonVmaForked || next.AnonVmaForked) : AnonVma == next.AnonVma);

    /// <summary>Takes over <paramref name="other"/>'s anon_vma when this has none (after a merge).</summary>
    public void AbsorbAnonVma(Vma other)
    {
        if (AnonVma == 0) { AnonVma = other.AnonVma; AnonVmaForked = other.AnonVmaForked; }
    }

    public override string ToString() => $"0x{Start:x}-0x{End:x} {MemoryMapping.FormatPermissions(Protection, Shared)} {Flags}";
}
