using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using SoftDirty.Tracking;

namespace SoftDirty;

/// <summary>
/// Memory of a process that KSM merges or may merge (madvise MADV_MERGEABLE, prctl PR_SET_MEMORY_MERGE). When ksmd merges
/// a page into a KSM page it maps that page with a new page-table entry that has no soft-dirty bit (mm/ksm.c replace_page;
/// measured on Debian 6.1, 6.12, 7.2 and 7.3: every page of a merged group but the one merged in place). While the KSM page
/// is mapped more than once pagemap shows it not exclusive, which an increment reads by content anyway; once its other
/// mappings are gone (the partner page written, unmapped, or its process ended) or the pages are unmerged again
/// (MADV_UNMERGEABLE of any part, /sys/kernel/mm/ksm/run 2: 6.12 and later keep the entry's soft-dirty bit as it was) the
/// page reads as an exclusive page not written since the clear, though it was. So every mapping of a process KSM has
/// touched is compared by content: a part made unmergeable no longer says (smaps "mg") that it ever was mergeable. The
/// userfaultfd write-protect bit is dropped likewise, which reads as written: an over-count, never a miss.
/// </summary>
internal static class KsmMergeable
{
    /// <summary>
    /// <paramref name="ranges"/> with every mapping of <paramref name="source"/> (but [vsyscall]) where /proc/PID/ksm_stat
    /// says that KSM scanned or merged pages of the process, or may (a mergeable mapping, merging of all its memory); sorted
    /// by start. Unchanged otherwise.
    /// </summary>
    public static List<AddressRange> With(IPageSource source, List<AddressRange> ranges)
    {
        if (!Touched(source.ProcessId)) return ranges;
        var found = new List<AddressRange>(ranges);
        foreach (var m in source.ReadMappings(false))
            if (m.Kind != MappingKind.Vsyscall) found.Add(new AddressRange(m.Start, m.End));
        found.Sort((x, y) => x.Start.CompareTo(y.Start));
        return found;
    }

    /// <summary>
    /// Whether KSM has scanned or merged pages of <paramref name="pid"/>, or may (a mergeable mapping, merging of all its
    /// memory): /proc/PID/ksm_stat (ksm_rmap_items, ksm_merging_pages, ksm_mergeable, ksm_merge_any: each where the kernel
    /// has it) and /proc/PID/ksm_merging_pages. False where neither exists (no CONFIG_KSM) or can be read.
    /// </summary>
    internal static bool Touched(int pid)
    {
        string stat = $"/proc/{pid}/ksm_stat", merging = $"/proc/{pid}/ksm_merging_pages";
        try
        {
            if (TouchedBy(File.ReadLines(stat))) return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, stat); }
        try { return ulong.TryParse(File.ReadAllText(merging).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pages) && pages > 0; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            ProcReadFailure.ThrowIfLimit(ex, merging);
            return false;
        }
    }

    /// <summary>Whether ksm_stat's lines ("ksm_rmap_items 3" before 6.6, "ksm_merge_any: no" after) say KSM touched the process.</summary>
    internal static bool TouchedBy(IEnumerable<string> ksmStat)
    {
        foreach (var line in ksmStat)
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal), space = line.IndexOf(' ', StringComparison.Ordinal);
            int cut = colon >= 0 ? colon : space;
            if (cut < 0) continue;
            string name = line[..cut], value = line[(cut + 1)..].Trim();
            switch (name)
            {
                case "ksm_rmap_items" or "ksm_merging_pages" or "ksm_zero_pages" when ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0:
                case "ksm_mergeable" or "ksm_merge_any" when value == "yes":
                    return true;
            }
        }
        return false;
    }
}
