using System;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>The mappings a workflow cmdlet works on: -Mapping names (wildcards) and/or those overlapping [Address, Address + Length).</summary>
internal static class WorkflowSelector
{
    /// <summary>Null: every mapping. The range must not wrap (checked by the caller).</summary>
    public static Func<MemoryMapping, bool>? Create(string[]? names, ulong? address, ulong? length)
    {
        var byName = names is { Length: > 0 } ? new MappingSelector(names) : null;
        ulong start = address ?? 0, end = address is null ? ulong.MaxValue : start + (length ?? 1);
        if (byName is null && address is null) return null;
        return m => (byName is null || byName.IsMatch(m)) && m.End > start && m.Start < end;
    }
}
