namespace SoftDirty.Commands;

/// <summary>What Invoke-EmulatedMadvise does to a range.</summary>
public enum EmulatedAdvice
{
    /// <summary>MADV_DONTNEED: drop the pages; they read as soft-dirty only through VM_SOFTDIRTY.</summary>
    DontNeed,
    /// <summary>MADV_PAGEOUT: swap the pages out; private anonymous pages keep soft-dirty in the swap entry.</summary>
    PageOut,
    /// <summary>MADV_WILLNEED: swap the pages back in.</summary>
    WillNeed,
    /// <summary>MADV_COLLAPSE: collapse each 2 MiB into a transparent huge page (the new PMD is soft-dirty).</summary>
    Collapse,
    /// <summary>Split each transparent huge page into 512 PTEs, each inheriting the PMD's soft-dirty (as the kernel does under memory pressure).</summary>
    Split,
    /// <summary>MADV_GUARD_INSTALL: install guard markers (6.15+ profiles).</summary>
    GuardInstall,
    /// <summary>MADV_GUARD_REMOVE: remove guard markers.</summary>
    GuardRemove,
    /// <summary>MADV_FREE: free private anonymous pages lazily; reclaim (PageOut) discards those not written since.</summary>
    Free,
    /// <summary>MADV_HUGEPAGE: mark the range VM_HUGEPAGE (THPs fault in under the madvise mode; khugepaged may collapse it).</summary>
    HugePage,
    /// <summary>MADV_NOHUGEPAGE: mark the range VM_NOHUGEPAGE (no THP faults in under any mode; MADV_COLLAPSE refuses it).</summary>
    NoHugePage,
    /// <summary>MADV_WIPEONFORK: a later fork's child gets the range empty (private anonymous memory only).</summary>
    WipeOnFork,
    /// <summary>MADV_KEEPONFORK: undo WipeOnFork.</summary>
    KeepOnFork,
    /// <summary>MADV_DONTFORK: a later fork's child does not get the range at all.</summary>
    DontFork,
    /// <summary>MADV_DOFORK: undo DontFork.</summary>
    DoFork,
    /// <summary>mseal(2): seal the range (6.12 and later profiles); its mappings can then not be unmapped, moved or reprotected.</summary>
    Seal,
}
