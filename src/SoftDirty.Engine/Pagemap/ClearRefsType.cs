using System;

namespace SoftDirty;

/// <summary>The values /proc/PID/clear_refs accepts (fs/proc/task_mmu.c, enum clear_refs_types).</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum ClearRefsType
{
    /// <summary>Clear the accessed/young bits and PG_referenced of all pages (CLEAR_REFS_ALL).</summary>
    All = 1,
    /// <summary>The same for anonymous mappings only (CLEAR_REFS_ANON).</summary>
    Anonymous = 2,
    /// <summary>The same for file-backed mappings only (CLEAR_REFS_MAPPED).</summary>
    Mapped = 3,
    /// <summary>Clear soft-dirty bits and VM_SOFTDIRTY, write-protecting every present page (CLEAR_REFS_SOFT_DIRTY).</summary>
    SoftDirty = 4,
    /// <summary>Reset the peak resident set size to the current one (CLEAR_REFS_MM_HIWATER_RSS).</summary>
    PeakRss = 5,
}
