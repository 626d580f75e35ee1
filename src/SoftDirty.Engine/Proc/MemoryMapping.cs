using System;
using System.Collections.Generic;

namespace SoftDirty;

/// <summary>What a mapping is, from its path column in /proc/PID/maps.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum MappingKind
{
    /// <summary>Private anonymous memory (no path).</summary>
    Anonymous,
    /// <summary>A named anonymous mapping ([anon:name], PR_SET_VMA_ANON_NAME).</summary>
    NamedAnonymous,
    /// <summary>Shared anonymous memory or System V / POSIX shared memory (/dev/zero, SYSV*, memfd:, [anon_shmem:*]).</summary>
    SharedAnonymous,
    /// <summary>A mapped file.</summary>
    File,
    Heap,
    Stack,
    Vdso,
    Vvar,
    Vsyscall,
    /// <summary>Any other bracketed kernel mapping.</summary>
    Other,
}

/// <summary>One VMA, as /proc/PID/maps and smaps describe it, or as the emulator holds it.</summary>
public sealed class MemoryMapping
{
    public int ProcessId { get; set; }
    public ulong Start { get; set; }
    /// <summary>Exclusive end address.</summary>
    public ulong End { get; set; }
    public ulong Size => End - Start;
    /// <summary>The four-letter permission column, such as "rw-p".</summary>
    public string Permissions { get; set; } = "---p";
    public Protection Protection { get; set; }
    /// <summary>MAP_SHARED ("s" in the permission column) rather than private ("p").</summary>
    public bool Shared { get; set; }
    public ulong Offset { get; set; }
    /// <summary>major:minor of the backing device, in hex as maps prints it.</summary>
    public string Device { get; set; } = "00:00";
    public ulong Inode { get; set; }
    /// <summary>The path or pseudo-name ("[heap]"), without a trailing " (deleted)"; empty for anonymous memory.</summary>
    public string Path { get => _path; set { _path = value; _displayName = null; } }
    private string _path = string.Empty;
    /// <summary>The mapped file was deleted (maps appends " (deleted)").</summary>
    public bool Deleted { get; set; }
    public MappingKind Kind { get => _kind; set { _kind = value; _displayName = null; } }
    private MappingKind _kind;

    /// <summary>smaps counters in bytes; null when only maps was read.</summary>
    public ulong? Rss { get; set; }
    public ulong? Pss { get; set; }
    public ulong? SharedClean { get; set; }
    public ulong? SharedDirty { get; set; }
    public ulong? PrivateClean { get; set; }
    public ulong? PrivateDirty { get; set; }
    public ulong? Referenced { get; set; }
    public ulong? Anonymous { get; set; }
    public ulong? AnonHugePages { get; set; }
    public ulong? Swap { get; set; }
    public ulong? Locked { get; set; }
    /// <summary>The two-letter VmFlags mnemonics of smaps ("rd", "wr", "sd", ...); empty when only maps was read.</summary>
    public JoinedList<string> VmFlags { get; set; } = JoinedList<string>.Empty;
    /// <summary>VM_SOFTDIRTY ("sd" in VmFlags): every page of the VMA reads soft-dirty. Null when VmFlags was not read.</summary>
    public bool? SoftDirty { get; set; }

    /// <summary>A short name for output: the path, or the kind for anonymous memory.</summary>
    public string DisplayName => _displayName ??= Path.Length != 0 ? Path : Kind == MappingKind.Anonymous ? "[anon]" : "[" + Kind.ToString().ToLowerInvariant() + "]";
    private string? _displayName;

    public bool Contains(ulong address) => address >= Start && address < End;

    public override string ToString() => $"0x{Start:x}-0x{End:x} {Permissions} {DisplayName}";

    /// <summary>Classifies a mapping from its path, inode and sharing, as maps shows them.</summary>
    public static MappingKind Classify(string path, ulong inode, bool shared)
    {
        if (path.Length == 0) return shared ? MappingKind.SharedAnonymous : MappingKind.Anonymous;
        switch (path)
        {
            case "[heap]": return MappingKind.Heap;
            case "[stack]": return MappingKind.Stack;
            case "[vdso]": return MappingKind.Vdso;
            case "[vvar]": case "[vvar_vclock]": return MappingKind.Vvar;
            case "[vsyscall]": return MappingKind.Vsyscall;
        }
        if (path.StartsWith("[stack:", StringComparison.Ordinal)) return MappingKind.Stack;
        if (path.StartsWith("[anon:", StringComparison.Ordinal)) return MappingKind.NamedAnonymous;
        if (path.StartsWith("[anon_shmem:", StringComparison.Ordinal)) return MappingKind.SharedAnonymous;
        if (path.StartsWith("[", StringComparison.Ordinal)) return MappingKind.Other;
        if (path == "/dev/zero" || path.StartsWith("/SYSV", StringComparison.Ordinal)
            || path.StartsWith("/memfd:", StringComparison.Ordinal) || path.StartsWith("/dev/shm/", StringComparison.Ordinal) && shared)
            return MappingKind.SharedAnonymous;
        return MappingKind.File;
    }

    /// <summary>The permission column for a protection and sharing.</summary>
    public static string FormatPermissions(Protection p, bool shared) => string.Create(4, (p, shared), static (s, st) =>
    {
        s[0] = (st.p & Protection.Read) != 0 ? 'r' : '-';
        s[1] = (st.p & Protection.Write) != 0 ? 'w' : '-';
        s[2] = (st.p & Protection.Execute) != 0 ? 'x' : '-';
        s[3] = st.shared ? 's' : 'p';
    });
}
