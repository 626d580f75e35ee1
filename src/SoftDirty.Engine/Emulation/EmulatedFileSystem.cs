namespace SoftDirty.Emulation;

/// <summary>
/// What an emulated file lives on, as far as a read fault's fault-around can tell (do_fault_around maps only the
/// pages of its window that are already in the page cache, filemap_map_pages).
/// </summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum EmulatedFileSystem
{
    /// <summary>
    /// A disk file system with readahead of at least 128 KiB: the first read fault of an uncached page reads the pages
    /// around it in (do_sync_mmap_readahead) and retries, so fault-around maps the whole window (the default).
    /// </summary>
    Disk,
    /// <summary>tmpfs (shmem_fault): a fault allocates its one page and nothing reads ahead, so fault-around maps only the pages cached before.</summary>
    Tmpfs,
}
