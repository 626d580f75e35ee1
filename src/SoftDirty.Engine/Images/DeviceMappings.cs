using System;
using System.Collections.Generic;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// Mappings of a real process whose pages neither pagemap nor /proc/PID/mem can show: VM_PFNMAP (smaps VmFlags pf, with
/// io), which a driver maps with remap_pfn_range or the like (device memory; a perf_event ring buffer on Linux 6.18). The
/// kernel's page walk skips such a VMA, so pagemap reports holes there and a save found no page,
/// though the process held data (perf's header page at least): the restore gave zeros and Test-MemoryImage called the
/// image valid (round 21). Every page of such a mapping now counts as unreadable, since which ones hold data cannot be
/// known. The kernel's own mappings ([vvar], [vdso], ...: not the process's data) are left out. Trackers count them too, so
/// that Watch-DirtyPage and a migration's live rounds say that writes there are not seen (round 22). (A VM_IO mapping that is
/// not VM_PFNMAP shows its present pages in pagemap, and a failed read of one counts as unreadable already.)
/// </summary>
internal static class DeviceMappings
{
    /// <summary>smaps VmFlags of VM_PFNMAP.</summary>
    private const string PfnMapFlag = "pf";

    /// <summary>
    /// The pages of the selected mappings of <paramref name="mappings"/> (maps) that are VM_PFNMAP. smaps costs a walk of every page table, so it is read only where maps shows a mapping that can
    /// be one (<see cref="MayBeDevice"/>); 0 for an emulated process.
    /// </summary>
    public static ulong Pages(IPageSource source, IReadOnlyList<MemoryMapping> mappings, Func<MemoryMapping, bool>? selector)
    {
        if (!PageWalk.IsRealProcess(source)) return 0;
        bool any = false;
        foreach (var m in mappings)
            if ((selector is null || selector(m)) && MayBeDevice(m)) { any = true; break; }
        if (!any) return 0;
        ulong pages = 0;
        foreach (var m in source.ReadMappings(true))
        {
            if ((selector is not null && !selector(m)) || !MayBeDevice(m)) continue;
            if (!m.VmFlags.Contains(PfnMapFlag)) continue;
            pages += (m.End - m.Start) / (ulong)source.PageSize;
        }
        return pages;
    }

    /// <summary>
    /// The selected mappings of <paramref name="mappings"/> that may be VM_PFNMAP (<see cref="MayBeDevice"/>), as one string
    /// (range, device, inode, path each): null where there is none. A mapping keeps its VM_PFNMAP flag for its life, so a
    /// tracker that looks at every sample reads smaps again only when this changes (an io_uring's rings, a perf ring).
    /// </summary>
    public static string? CandidateKey(IReadOnlyList<MemoryMapping> mappings, Func<MemoryMapping, bool>? selector)
    {
        System.Text.StringBuilder? key = null;
        foreach (var m in mappings)
            if ((selector is null || selector(m)) && MayBeDevice(m))
                (key ??= new()).Append(m.Start).Append('-').Append(m.End).Append(' ').Append(m.Device).Append(' ').Append(m.Inode).Append(' ').Append(m.Path).Append('\n');
        return key?.ToString();
    }

    /// <summary>
    /// Whether <paramref name="m"/> can be VM_PFNMAP: a mapping of something other than a file of a path
    /// (anon_inode:[perf_event], a DRM or DMA buffer, /dmabuf:), of a file under /dev, /sys or /proc (devices, PCI
    /// resources), or of any other path that is not the regular file the mapping maps (round 23: a device node elsewhere,
    /// as mknod or a container's bind mount puts one, was never looked at, so its pages were saved as none and the image
    /// called valid). The last is asked of the file itself, through the process's root (/proc/PID/root/PATH: its own view of
    /// the path): a regular file with the mapping's inode is no device; a deleted file, one that cannot be looked at, one
    /// replaced since, or one on a file system whose stat can wait on a server (<see cref="LocalFileSystems"/>) is a candidate
    /// (smaps decides). Anonymous memory, memfds and the kernel's bracketed mappings are not;
    /// nor is a regular file of a mapping with no live process (a parsed listing: judged by its path alone).
    /// </summary>
    internal static bool MayBeDevice(MemoryMapping m)
    {
        if (m.Kind != MappingKind.File) return false;
        if (!m.Path.StartsWith('/')
            || m.Path.StartsWith("/dev/", StringComparison.Ordinal) || m.Path.StartsWith("/sys/", StringComparison.Ordinal)
            || m.Path.StartsWith("/proc/", StringComparison.Ordinal))
            return true;
        // A memfd (mapped private here; shared ones are SharedAnonymous) is shmem or hugetlbfs, never a device.
        if (m.Path.StartsWith(MemfdPrefix, StringComparison.Ordinal)) return false;
        if (m.ProcessId <= 0) return false;
        if (m.Deleted || !LocalFileSystems.IsLocal(m.ProcessId, m.Device)) return true;
        return !IsMappedRegularFile(m);
    }

    /// <summary>The name maps gives a memfd ("/memfd:NAME (deleted)").</summary>
    private const string MemfdPrefix = "/memfd:";

    /// <summary>How many answers <see cref="RegularFiles"/> keeps before it starts over.</summary>
    private const int RegularFileCacheLimit = 4096;

    /// <summary>
    /// Paths found to be the regular file a mapping maps, by process, path and inode: a watch asks each sample
    /// (<see cref="CandidateKey"/>), and a file stays regular for its life.
    /// </summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(int Pid, string Path, ulong Inode), bool> RegularFiles = new();

    private static bool IsMappedRegularFile(MemoryMapping m)
    {
        var key = (m.ProcessId, m.Path, m.Inode);
        if (RegularFiles.ContainsKey(key)) return true;
        string path = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"/proc/{m.ProcessId}/root{m.Path}");
        if (FileNative.Stat(path, out _) is not { } st || st.Type != FileNative.S_IFREG || st.Inode != m.Inode) return false;
        if (RegularFiles.Count >= RegularFileCacheLimit) RegularFiles.Clear();
        RegularFiles[key] = true;
        return true;
    }
}
