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
    /// The pages of the selected mappings of <paramref name="mappings"/> (maps) that are VM_PFNMAP, and the first
    /// such mapping's name. smaps costs a walk of every page table, so it is read only where maps shows a mapping that can
    /// be one (<see cref="MayBeDevice"/>); 0 for an emulated process.
    /// </summary>
    public static ulong Pages(IPageSource source, IReadOnlyList<MemoryMapping> mappings, Func<MemoryMapping, bool>? selector, out string? first)
    {
        first = null;
        if (!PageWalk.IsRealProcess(source)) return 0;
        bool any = false;
        foreach (var m in mappings)
            if (MayBeDevice(m) && (selector is null || selector(m))) { any = true; break; }
        if (!any) return 0;
        ulong pages = 0;
        foreach (var m in source.ReadMappings(true))
        {
            if (!MayBeDevice(m) || (selector is not null && !selector(m))) continue;
            if (!m.VmFlags.Contains(PfnMapFlag)) continue;
            pages += (m.End - m.Start) / (ulong)source.PageSize;
            first ??= $"0x{m.Start:x}-0x{m.End:x} {m.DisplayName}";
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
            if (MayBeDevice(m) && (selector is null || selector(m)))
                (key ??= new()).Append(m.Start).Append('-').Append(m.End).Append(' ').Append(m.Device).Append(' ').Append(m.Inode).Append(' ').Append(m.Path).Append('\n');
        return key?.ToString();
    }

    /// <summary>
    /// Whether maps alone allows <paramref name="m"/> to be VM_PFNMAP: a mapping of something other than a file
    /// of a path (anon_inode:[perf_event], a DRM or DMA buffer), or of a file under /dev, /sys or /proc (devices, PCI
    /// resources). Anonymous memory, regular files elsewhere and the kernel's bracketed mappings are not.
    /// </summary>
    internal static bool MayBeDevice(MemoryMapping m) =>
        m.Kind == MappingKind.File
        && (!m.Path.StartsWith('/')
            || m.Path.StartsWith("/dev/", StringComparison.Ordinal) || m.Path.StartsWith("/sys/", StringComparison.Ordinal)
            || m.Path.StartsWith("/proc/", StringComparison.Ordinal));
}
