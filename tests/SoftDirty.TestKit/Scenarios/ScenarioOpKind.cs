namespace SoftDirty.TestKit.Scenarios;

/// <summary>What a scenario step does (the verbs of tests/native/sdscenario.c).</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum ScenarioOpKind
{
    /// <summary>The window of pages the scenario works in, reserved PROT_NONE.</summary>
    Reserve,
    /// <summary>mmap MAP_FIXED of Count pages at Page.</summary>
    Map,
    /// <summary>munmap.</summary>
    Unmap,
    /// <summary>mremap MAYMOVE|FIXED of Count pages from Page to Target, same size.</summary>
    Mremap,
    /// <summary>mprotect.</summary>
    Mprotect,
    /// <summary>Read one byte of each page.</summary>
    Read,
    /// <summary>Increment one byte of each page (a read, then a write).</summary>
    Write,
    /// <summary>clear_refs of type Count (1-5).</summary>
    Clear,
    /// <summary>madvise MADV_DONTNEED.</summary>
    DontNeed,
    /// <summary>fork; the child becomes the current process.</summary>
    Fork,
    /// <summary>Make the other process (parent or child) current.</summary>
    Switch,
    /// <summary>Print the window's pagemap entries of the current process.</summary>
    Check,
    /// <summary>PAGEMAP_SCAN of the window, no masks, every category returned: print the regions.</summary>
    Scan,
    /// <summary>userfaultfd (WP_ASYNC|WP_UNPOPULATED) UFFDIO_REGISTER MODE_WP, then UFFDIO_WRITEPROTECT, of Count pages at Page.</summary>
    UffdWp,
    /// <summary>PAGEMAP_SCAN get-and-reset of WRITTEN over the window (WP_MATCHING|CHECK_WPASYNC): print the regions.</summary>
    Written,
    /// <summary>
    /// Map, write and unmap the last page of the window's last 2 MiB range (outside the window): a page table
    /// shared with the window's pages, which changes what PAGEMAP_SCAN reports for never-touched ones.
    /// </summary>
    Neighbour,
    /// <summary>Print the pages the current process really wrote since its last clear_refs 4 (the runner's own record).</summary>
    Truth,
    /// <summary>Set every byte of Count pages at Page to Target (a write of whole pages).</summary>
    Fill,
    /// <summary>madvise MADV_MERGEABLE of Count pages at Page, then ksmd's full scans until it has merged what it can.</summary>
    Ksm,
    /// <summary>madvise MADV_UNMERGEABLE of Count pages at Page.</summary>
    Unmerge,
    /// <summary>Split the THPs of Count pages at Page (the folio split: debugfs split_huge_pages on a kernel).</summary>
    Split,
    /// <summary>move_pages of Count pages at Page to NUMA node Target (a guest booted with two nodes).</summary>
    Migrate,
    /// <summary>madvise MADV_PAGEOUT of Count pages at Page (a guest with swap: anonymous pages go to swap).</summary>
    PageOut,
    /// <summary>madvise MADV_FREE of Count pages at Page.</summary>
    Free,
    /// <summary>madvise MADV_COLD of Count pages at Page (deactivation: no page table change).</summary>
    Cold,
    /// <summary>swapoff of the guest's swap: every swapped page of every process comes back.</summary>
    SwapOff,
    /// <summary>swapon of the guest's swap again.</summary>
    SwapOn,
    /// <summary>madvise MADV_WIPEONFORK of Count pages at Page: a later fork's child gets them empty.</summary>
    WipeOnFork,
    /// <summary>madvise MADV_KEEPONFORK of Count pages at Page.</summary>
    KeepOnFork,
    /// <summary>madvise MADV_DONTFORK of Count pages at Page: a later fork's child does not get them.</summary>
    DontFork,
    /// <summary>madvise MADV_DOFORK of Count pages at Page.</summary>
    DoFork,
    /// <summary>mseal(2) of Count pages at Page.</summary>
    Seal,
    /// <summary>ftruncate of the file of "file"/"filepriv" mappings to Count pages.</summary>
    Truncate,
}
