using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>The mappings a workflow cmdlet works on: -Mapping names (wildcards) and/or those overlapping [Address, Address + Length).</summary>
internal static class WorkflowSelector
{
    // One selector object per selection: the WriteProtect tracker an emulated process keeps between saves is used only
    // by a save of the very selection it was made with (compared by reference), which a later command gives anew.
    // Held weakly: a selector no kept tracker holds any more is made anew, so a session that selects a new address each
    // time does not keep every selection it ever made (entries of collected selectors are dropped as the table grows).
    private static readonly Dictionary<string, WeakReference<Func<MemoryMapping, bool>>> Made = new(StringComparer.Ordinal);

    /// <summary>Past this many entries, each new selection first drops the entries whose selector was collected.</summary>
    private const int PruneAbove = 64;

    /// <summary>Null: every mapping; the same selection gives the same object. The range must not wrap (checked by the caller).</summary>
    public static Func<MemoryMapping, bool>? Create(string[]? names, ulong? address, ulong? length)
    {
        if (names is not { Length: > 0 } && address is null) return null;
        // A copy of the names: the caller's array (a variable the user changes later) must not change a selection kept under this key.
        names = names is null ? null : (string[])names.Clone();
        // Each name length-prefixed: no two selections share a key whatever characters the names hold.
        var key = string.Concat(Array.ConvertAll(names ?? Array.Empty<string>(), n => n.Length.ToString(CultureInfo.InvariantCulture) + ":" + n))
            + "|" + address?.ToString(CultureInfo.InvariantCulture) + "|" + length?.ToString(CultureInfo.InvariantCulture);
        lock (Made)
        {
            if (Made.TryGetValue(key, out var weak) && weak.TryGetTarget(out var kept)) return kept;
            if (Made.Count >= PruneAbove)
                foreach (var gone in Made.Where(p => !p.Value.TryGetTarget(out _)).Select(p => p.Key).ToList()) Made.Remove(gone);
            var byName = names is { Length: > 0 } ? new MappingSelector(names) : null;
            ulong start = address ?? 0, end = address is null ? ulong.MaxValue : start + (length ?? 1);
            Func<MemoryMapping, bool> made = m => (byName is null || byName.IsMatch(m)) && m.End > start && m.Start < end;
            Made[key] = new WeakReference<Func<MemoryMapping, bool>>(made);
            return made;
        }
    }

    /// <summary>
    /// <paramref name="selector"/> for a command that selects again and again over its course (a migration's rounds, a
    /// watch's samples): it also keeps every mapping of the files it selects now, found by device and inode. A name
    /// selects by the file's name, which another process changes with no change to the memory (a rename, as a log
    /// rotation does): the rounds after it then selected nothing, and a migration converged at once on a final image
    /// without the mapping, the writes since lost. Null (every mapping) stays null. A file's other mappings are kept
    /// only inside [<paramref name="address"/>, + <paramref name="length"/>) where the selection has that range too.
    /// </summary>
    public static Func<MemoryMapping, bool>? FollowingFiles(IPageSource source, Func<MemoryMapping, bool>? selector, ulong? address = null, ulong? length = null)
    {
        if (selector is null) return null;
        var files = new HashSet<(string Device, ulong Inode)>();
        foreach (var m in source.ReadMappings(false))
            if (m.Inode != 0 && m.Kind != MappingKind.Vsyscall && selector(m)) files.Add((m.Device, m.Inode));
        ulong start = address ?? 0, end = address is null ? ulong.MaxValue : start + (length ?? 1);
        return files.Count == 0 ? selector : m => selector(m) || m.Inode != 0 && files.Contains((m.Device, m.Inode)) && m.End > start && m.Start < end;
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
