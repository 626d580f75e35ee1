using System;
using System.Collections.Concurrent;
using System.Globalization;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>The mappings a workflow cmdlet works on: -Mapping names (wildcards) and/or those overlapping [Address, Address + Length).</summary>
internal static class WorkflowSelector
{
    // One selector object per selection: the WriteProtect tracker an emulated process keeps between saves is used only
    // by a save of the very selection it was made with (compared by reference), which a later command gives anew.
    private static readonly ConcurrentDictionary<string, Func<MemoryMapping, bool>> Made = new(StringComparer.Ordinal);

    /// <summary>Null: every mapping; the same selection gives the same object. The range must not wrap (checked by the caller).</summary>
    public static Func<MemoryMapping, bool>? Create(string[]? names, ulong? address, ulong? length)
    {
        if (names is not { Length: > 0 } && address is null) return null;
        // Each name length-prefixed: no two selections share a key whatever characters the names hold.
        var key = string.Concat(Array.ConvertAll(names ?? Array.Empty<string>(), n => n.Length.ToString(CultureInfo.InvariantCulture) + ":" + n))
            + "|" + address?.ToString(CultureInfo.InvariantCulture) + "|" + length?.ToString(CultureInfo.InvariantCulture);
        return Made.GetOrAdd(key, _ =>
        {
            var byName = names is { Length: > 0 } ? new MappingSelector(names) : null;
            ulong start = address ?? 0, end = address is null ? ulong.MaxValue : start + (length ?? 1);
            return m => (byName is null || byName.IsMatch(m)) && m.End > start && m.Start < end;
        });
    }

    /// <summary>
    /// The mapping selector of a workflow cmdlet (-Mapping, and -Address/-Length where it has them), checked as
    /// Get-PageMap checks it: a wrapping range is InvalidArgument, names that match no mapping MappingNotFound,
    /// a range that overlaps no mapping InvalidArgument. Null: every mapping.
    /// </summary>
    public static Func<MemoryMapping, bool>? Checked(IPageSource source, string[]? mapping, ulong? address = null, ulong? length = null)
    {
        if (address is { } a) RangeCheck.CheckNoWrap(a, length ?? 1, 1);
        var selector = Create(mapping, address, length);
        if (selector is null) return null;
        var mappings = source.ReadMappings(false);
        bool any = false;
        foreach (var m in mappings) if (m.Kind != MappingKind.Vsyscall && selector(m)) { any = true; break; }
        if (any) return selector;
        if (mapping is { Length: > 0 })
            throw new EngineException(EngineError.MappingNotFound,
                $"No mapping of process {source.ProcessId} ({source.Name}) matches '{string.Join("', '", mapping)}'{(address is null ? "" : $" in 0x{address:x}-0x{address + (length ?? 1):x}")}; {MappingHint.For(source)}.", source.ProcessId);
        throw new EngineException(EngineError.InvalidArgument,
            $"0x{address:x}-0x{address + (length ?? 1):x} lies outside every mapping of process {source.ProcessId} ({source.Name}); {MappingHint.For(source)}.", address);
    }
}
