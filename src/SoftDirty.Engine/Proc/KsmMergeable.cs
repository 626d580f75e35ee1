using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using SoftDirty.Tracking;

namespace SoftDirty;

/// <summary>
/// Memory of a process that KSM may merge (madvise MADV_MERGEABLE, prctl PR_SET_MEMORY_MERGE: "mg" in smaps VmFlags). When
/// ksmd merges a page into a KSM page it maps that page with a new page-table entry that has no soft-dirty bit (mm/ksm.c
/// replace_page; measured on Debian 6.1, 6.12, 7.2 and 7.3: every page of a merged group but the one merged in place). While
/// the KSM page is mapped more than once pagemap shows it not exclusive, which an increment reads by content anyway; once its
/// other mappings are gone (the partner page written, unmapped, or its process ended) or the pages are unmerged again
/// (MADV_UNMERGEABLE, /sys/kernel/mm/ksm/run 2: 6.12 and later keep the entry's soft-dirty bit as it was) the page reads as
/// an exclusive page not written since the clear, though it was. Such memory is compared by content. The userfaultfd
/// write-protect bit is dropped likewise, which reads as written: an over-count, never a miss.
/// </summary>
internal static class KsmMergeable
{
    /// <summary>VM_MERGEABLE as smaps VmFlags prints it.</summary>
    public const string MergeableFlag = "mg";

    /// <summary>
    /// <paramref name="ranges"/> with the mappings of <paramref name="source"/> that KSM may merge or has merged pages of,
    /// sorted by start. Nothing is added (and smaps, a walk of every page table, is not read) where /proc/PID/ksm_stat says
    /// KSM never scanned nor merged a page of the process and no mapping of it is mergeable. Where KSM did but no mapping is
    /// mergeable now (unmerged since: the unshared copies keep the merge's missing bit), every mapping is added.
    /// </summary>
    public static List<AddressRange> With(IPageSource source, List<AddressRange> ranges)
    {
        if (!Touched(source.ProcessId)) return ranges;
        var mappings = source.ReadMappings(true);
        var found = new List<AddressRange>(ranges);
        int before = found.Count;
        foreach (var m in mappings)
            if (m.VmFlags.Contains(MergeableFlag)) found.Add(new AddressRange(m.Start, m.End));
        if (found.Count == before)
            foreach (var m in mappings)
                if (m.Kind != MappingKind.Vsyscall) found.Add(new AddressRange(m.Start, m.End));
        found.Sort((x, y) => x.Start.CompareTo(y.Start));
        return found;
    }

    /// <summary>
    /// Whether KSM has scanned or merged pages of <paramref name="pid"/>, or may (a mergeable mapping, merging of all its
    /// memory): /proc/PID/ksm_stat (ksm_rmap_items, ksm_merging_pages, ksm_mergeable, ksm_merge_any: each where the kernel
    /// has it) and /proc/PID/ksm_merging_pages. False where neither exists (no CONFIG_KSM) or can be read.
    /// </summary>
    private static bool Touched(int pid)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/ksm_stat"))
            {
                int colon = line.IndexOf(':', StringComparison.Ordinal);
                var (name, value) = colon >= 0 ? (line[..colon], line[(colon + 1)..].Trim()) : SplitAtSpace(line);
                switch (name)
                {
                    case "ksm_rmap_items" or "ksm_merging_pages" when ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0:
                    case "ksm_mergeable" or "ksm_merge_any" when value == "yes":
                        return true;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        try { return ulong.TryParse(File.ReadAllText($"/proc/{pid}/ksm_merging_pages").Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var merging) && merging > 0; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return false; }
    }

    private static (string, string) SplitAtSpace(string line)
    {
        int space = line.IndexOf(' ', StringComparison.Ordinal);
        return space < 0 ? (line, "") : (line[..space], line[(space + 1)..].Trim());
    }
}
