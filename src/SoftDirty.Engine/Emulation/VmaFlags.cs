using System;

namespace SoftDirty.Emulation;

/// <summary>The vm_flags the emulator models beyond protection and sharing.</summary>
[Flags]
internal enum VmaFlags
{
    None = 0,
    /// <summary>VM_SOFTDIRTY: every page of the VMA reads soft-dirty.</summary>
    SoftDirty = 1,
    /// <summary>VM_HUGEPAGE (MADV_HUGEPAGE): anonymous faults may map transparent huge pages.</summary>
    HugePage = 2,
    /// <summary>VM_UFFD_WP with UFFD_FEATURE_WP_ASYNC | WP_UNPOPULATED.</summary>
    UffdWriteProtect = 4,
    /// <summary>VM_ACCOUNT: private writable memory charged at mmap or mprotect.</summary>
    Account = 8,
    /// <summary>VM_MERGEABLE (MADV_MERGEABLE): KSM may merge the VMA's identical private pages.</summary>
    Mergeable = 16,
    /// <summary>VM_NOHUGEPAGE (MADV_NOHUGEPAGE): no transparent huge page faults in, and MADV_COLLAPSE is EINVAL.</summary>
    NoHugePage = 32,
    /// <summary>VM_WIPEONFORK (MADV_WIPEONFORK): a fork's child gets the VMA empty, as if freshly mapped.</summary>
    WipeOnFork = 64,
    /// <summary>VM_DONTCOPY (MADV_DONTFORK): a fork's child does not get the VMA at all.</summary>
    DontCopy = 128,
    /// <summary>VM_SEALED (mseal): munmap, mremap, mprotect, MAP_FIXED over it and discarding madvise of read-only private anonymous memory are EPERM.</summary>
    Sealed = 256,
}
