using System;
using System.Collections.Generic;
using System.Globalization;

namespace SoftDirty;

/// <summary>Parses the text of /proc/PID/maps and /proc/PID/smaps (fs/proc/task_mmu.c show_map_vma).</summary>
internal static class MapsParser
{
    private const string DeletedSuffix = " (deleted)";

    /// <summary>Parses maps or smaps text; smaps counter lines and VmFlags fill the mapping above them.</summary>
    public static List<MemoryMapping> Parse(string text, int processId = 0)
    {
        var result = new List<MemoryMapping>();
        MemoryMapping? current = null;
        int lineNo = 0;
        // Lines end at '\n' only: the kernel escapes a newline in a path (\012) and nothing else, so a path may hold
        // '\r', '\f', U+0085 or U+2028, which EnumerateLines would take as line ends (a file name could then add a
        // mapping line of its own choosing, or cut the real one short).
        var rest = text.AsSpan();
        while (!rest.IsEmpty)
        {
            int nl = rest.IndexOf('\n');
            var rawLine = nl < 0 ? rest : rest[..nl];
            rest = nl < 0 ? default : rest[(nl + 1)..];
            lineNo++;
            if (rawLine.IsEmpty) continue;
            if (TryParseHeader(rawLine, out var m))
            {
                m.ProcessId = processId;
                result.Add(m);
                current = m;
                continue;
            }
            if (current is null)
                throw new FormatException($"line {lineNo}: expected a mapping line 'start-end perms offset dev inode [path]', got '{rawLine.ToString()}'");
            ParseSmapsField(rawLine, current, lineNo);
        }
        return result;
    }

    /// <summary>A header line is "start-end perms offset major:minor inode [path]".</summary>
    private static bool TryParseHeader(ReadOnlySpan<char> line, out MemoryMapping mapping)
    {
        mapping = null!;
        int dash = line.IndexOf('-');
        if (dash <= 0) return false;
        int sp = line.IndexOf(' ');
        if (sp < dash) return false;
        if (!ulong.TryParse(line[..dash], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var start)) return false;
        if (!ulong.TryParse(line[(dash + 1)..sp], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var end)) return false;
        var rest = line[(sp + 1)..];
        if (!NextField(ref rest, out var perms) || perms.Length != 4) return false;
        if (!NextField(ref rest, out var offsetText) || !ulong.TryParse(offsetText, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var offset)) return false;
        if (!NextField(ref rest, out var dev) || dev.IndexOf(':') < 0) return false;
        if (!NextField(ref rest, out var inodeText) || !ulong.TryParse(inodeText, NumberStyles.None, CultureInfo.InvariantCulture, out var inode)) return false;
        // The path is the rest after the padding; it may itself hold spaces.
        var path = rest.TrimStart(' ').ToString();
        bool deleted = false;
        if (path.EndsWith(DeletedSuffix, StringComparison.Ordinal))
        {
            deleted = true;
            path = path[..^DeletedSuffix.Length];
        }
        var (protection, shared) = MemoryMapping.ParsePermissions(perms);
        mapping = new MemoryMapping
        {
            Start = start,
            End = end,
            Protection = protection,
            Shared = shared,
            Offset = offset,
            Device = dev.ToString(),
            Inode = inode,
            Path = path,
            Deleted = deleted,
            Kind = MemoryMapping.Classify(path, inode, shared),
        };
        return true;
    }

    private static bool NextField(ref ReadOnlySpan<char> rest, out ReadOnlySpan<char> field)
    {
        rest = rest.TrimStart(' ');
        if (rest.IsEmpty) { field = default; return false; }
        int sp = rest.IndexOf(' ');
        if (sp < 0) { field = rest; rest = default; return true; }
        field = rest[..sp];
        rest = rest[(sp + 1)..];
        return true;
    }

    private static void ParseSmapsField(ReadOnlySpan<char> line, MemoryMapping m, int lineNo)
    {
        int colon = line.IndexOf(':');
        // A field name is one word ("Rss", "Shared_Clean", "VmFlags"); anything else is a header line that did not parse.
        if (colon <= 0 || line[..colon].IndexOfAny(' ', '\t') >= 0)
            throw new FormatException($"line {lineNo}: expected a mapping line 'start-end perms offset dev inode [path]' or an smaps 'Name: value' line, got '{line.ToString()}'");
        var name = line[..colon];
        var value = line[(colon + 1)..].Trim();
        if (name.SequenceEqual("VmFlags"))
        {
            var flags = value.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            m.VmFlags = flags;
            m.SoftDirty = Array.IndexOf(flags, "sd") >= 0;
            return;
        }
        // Counters are "<n> kB"; others (THPeligible, ProtectionKey) are plain numbers we do not keep.
        if (!value.EndsWith(" kB")) return;
        if (!ulong.TryParse(value[..^3].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var kb))
            throw new FormatException($"line {lineNo}: bad counter value '{value.ToString()}'");
        ulong bytes = kb * 1024;
        switch (name)
        {
            case "Rss": m.Rss = bytes; break;
            case "Pss": m.Pss = bytes; break;
            case "Shared_Clean": m.SharedClean = bytes; break;
            case "Shared_Dirty": m.SharedDirty = bytes; break;
            case "Private_Clean": m.PrivateClean = bytes; break;
            case "Private_Dirty": m.PrivateDirty = bytes; break;
            case "Referenced": m.Referenced = bytes; break;
            case "Anonymous": m.Anonymous = bytes; break;
            case "AnonHugePages": m.AnonHugePages = bytes; break;
            case "Swap": m.Swap = bytes; break;
            case "Locked": m.Locked = bytes; break;
        }
    }
}
