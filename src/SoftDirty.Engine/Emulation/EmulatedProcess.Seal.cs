using System;

namespace SoftDirty.Emulation;

// mm/mseal.c, and the madvise flags that decide what fork gives a child (mm/madvise.c, kernel/fork.c dup_mmap).
public sealed partial class EmulatedProcess
{
    /// <summary>
    /// mseal(2) (6.10+; on an older profile InvalidArgument with ENOSYS): seals the VMAs of the
    /// range (VM_SEALED, splitting and merging them). The range must be mapped throughout, else EmulatorNotMapped (ENOMEM) with
    /// nothing sealed. A sealed VMA then refuses, with EmulatorMappingSealed (EPERM): munmap of any part, mremap from or onto it,
    /// mmap MAP_FIXED over it, mprotect (the VMAs before it in the range are changed first, as the kernel's per-VMA check does),
    /// and the discarding advice (MADV_DONTNEED, MADV_FREE, MADV_DONTFORK, MADV_WIPEONFORK) where it is private anonymous and
    /// not writable. The seal is inherited by a fork's child and cannot be removed.
    /// </summary>
    public void Mseal(ulong address, ulong length)
    {
        if (!Profile.HasMseal)
            throw new EngineException(EngineError.InvalidArgument, $"mseal is not available on kernel {Profile.Release} (ENOSYS).", address, Errno.ENOSYS);
        lock (_mem.Lock)
        {
            ulong end = CheckMappedRange("mseal", address, length);
            if (end == 0) return;
            UpdateVmaFlags("mseal", address, end - address, vma => vma.Flags | VmaFlags.Sealed);
        }
    }

    /// <summary>
    /// MADV_WIPEONFORK (<paramref name="wipe"/>) or MADV_KEEPONFORK: a fork's child gets the VMA empty (no pages, no page
    /// table, no anon_vma), the parent's pages left writable. Only private anonymous memory may be wiped: a shared or file
    /// VMA is InvalidArgument (EINVAL), the VMAs before it already changed (MADV_KEEPONFORK takes any VMA); holes are
    /// reported afterwards (EmulatorNotMapped).
    /// </summary>
    public void MadviseWipeOnFork(ulong address, ulong length, bool wipe)
    {
        string op = wipe ? "MadviseWipeOnFork" : "MadviseKeepOnFork";
        UpdateVmaFlags(op, address, length, vma =>
        {
            if (!wipe) return vma.Flags & ~VmaFlags.WipeOnFork;
            if (!vma.IsAnonymous) throw Invalid($"{op}: 0x{vma.Start:x} is not private anonymous memory");
            RefuseSealedDiscard(op, vma);
            return vma.Flags | VmaFlags.WipeOnFork;
        });
    }

    /// <summary>
    /// MADV_DONTFORK (<paramref name="dontFork"/>) or MADV_DOFORK: a fork's child does not get the VMA at all (a hole there),
    /// the parent's pages left writable. Any mapping may be marked; holes are reported afterwards (EmulatorNotMapped).
    /// </summary>
    public void MadviseDontFork(ulong address, ulong length, bool dontFork)
    {
        string op = dontFork ? "MadviseDontFork" : "MadviseDoFork";
        UpdateVmaFlags(op, address, length, vma =>
        {
            if (dontFork) RefuseSealedDiscard(op, vma);
            return dontFork ? vma.Flags | VmaFlags.DontCopy : vma.Flags & ~VmaFlags.DontCopy;
        });
    }

    /// <summary>
    /// The madvise walk over the VMAs of a range that changes their flags (madvise_update_vma): per VMA from the left,
    /// <paramref name="wanted"/> gives the new flags (or throws to stop there, the VMAs before it already changed); the
    /// part in range is split off, changed and merged with its neighbours. Holes are reported afterwards (EmulatorNotMapped).
    /// </summary>
    private void UpdateVmaFlags(string op, ulong address, ulong length, Func<Vma, VmaFlags> wanted)
    {
        lock (_mem.Lock)
        {
            ulong end = CheckAdviceRange(op, address, length);
            if (end == 0) return;
            for (ulong pos = address; pos < end;)
            {
                var vma = _vmas.FindVmaIntersection(pos, end);
                if (vma == null) break;
                ulong pieceStart = Math.Max(pos, vma.Start), pieceLimit = Math.Min(end, vma.End);
                var flags = wanted(vma);
                if (flags != vma.Flags)
                {
                    SplitAt(pieceStart);
                    SplitAt(pieceLimit);
                    int i = _vmas.FindVmaIndex(pieceStart);
                    _vmas[i].Flags = flags;
                    i = _vmas.Merge(i);
                    pieceLimit = Math.Max(pieceLimit, _vmas[i].End);
                }
                pos = pieceLimit;
            }
            if (_vmas.FirstHole(address, end) is { } hole) throw NotMapped(op, hole);
        }
    }

    /// <summary>munmap, mremap and MAP_FIXED refuse a range with any sealed VMA in it before changing anything.</summary>
    private void RefuseSealed(string op, ulong start, ulong end)
    {
        foreach (var vma in _vmas.Range(start, end))
            if (vma.Sealed) throw SealedAt(op, Math.Max(start, vma.Start));
    }

    /// <summary>
    /// The discarding advice (mm/madvise.c can_madvise_modify) is refused on a sealed VMA of private anonymous memory that is not
    /// writable: its contents could not be written back, so discarding them would change sealed memory. A file or shared
    /// VMA, or a writable one, may be discarded.
    /// </summary>
    private void RefuseSealedDiscard(string op, Vma vma)
    {
        if (vma.Sealed && vma.IsAnonymous && !vma.Writable) throw SealedAt(op, vma.Start);
    }
}
