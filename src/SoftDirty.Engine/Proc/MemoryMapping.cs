using System;

namespace SoftDirty;

/// <summary>
/// One VMA, as /proc/PID/maps and smaps describe it, or as the emulator holds it. Read-only to its users; the
/// engine fills it. <see cref="Permissions"/> is derived from <see cref="Protection"/> and <see cref="Shared"/>,
/// so the three cannot disagree.
/// </summary>
public sealed class MemoryMapping
{
    internal MemoryMapping() { }

    /// <summary>The process the mapping belongs to.</summary>
    public int ProcessId { get; internal set; }
    /// <summary>The first address of the mapping.</summary>
    public ulong Start { get; internal set; }
    /// <summary>Exclusive end address.</summary>
    public ulong End { get; internal set; }
    /// <summary>End - Start, in bytes.</summary>
    public ulong Size => End - Start;
    /// <summary>The four-letter permission column, such as "rw-p": <see cref="Protection"/> and <see cref="Shared"/> as maps prints them.</summary>
    public string Permissions => _permissions ??= FormatPermissions(Protection, Shared);
    private string? _permissions;
    /// <summary>Read, write and execute permission (PROT_*).</summary>
    public Protection Protection { get => _protection; internal set { _protection = value; _permissions = null; } }
    private Protection _protection;
    /// <summary>MAP_SHARED ("s" in the permission column) rather than private ("p").</summary>
    public bool Shared { get => _shared; internal set { _shared = value; _permissions = null; } }
    private bool _shared;
    /// <summary>The file offset of Start, in bytes (0 for anonymous memory).</summary>
    public ulong Offset { get; internal set; }
    /// <summary>major:minor of the backing device, in hex as maps prints it.</summary>
    public string Device { get; internal set; } = "00:00";
    /// <summary>The inode of the backing file, 0 for anonymous memory.</summary>
    public ulong Inode { get; internal set; }
    /// <summary>The path or pseudo-name ("[heap]"), without a trailing " (deleted)"; empty for anonymous memory.</summary>
    public string Path { get => _path; internal set { _path = value; _displayName = null; } }
    private string _path = string.Empty;
    /// <summary>The mapped file was deleted (maps appends " (deleted)").</summary>
    public bool Deleted { get; internal set; }
    /// <summary>What the mapping is, from its path (<see cref="MappingKind"/>).</summary>
    public MappingKind Kind { get => _kind; internal set { _kind = value; _displayName = null; } }
    private MappingKind _kind;

    /// <summary>Resident bytes (smaps Rss); null when only maps was read, as for the other counters.</summary>
    public ulong? Rss { get; internal set; }
    /// <summary>Proportional set size in bytes (smaps Pss).</summary>
    public ulong? Pss { get; internal set; }
    /// <summary>Clean bytes shared with another process (smaps Shared_Clean).</summary>
    public ulong? SharedClean { get; internal set; }
    /// <summary>Dirty bytes shared with another process (smaps Shared_Dirty).</summary>
    public ulong? SharedDirty { get; internal set; }
    /// <summary>Clean bytes of this process alone (smaps Private_Clean).</summary>
    public ulong? PrivateClean { get; internal set; }
    /// <summary>Dirty bytes of this process alone (smaps Private_Dirty).</summary>
    public ulong? PrivateDirty { get; internal set; }
    /// <summary>Bytes marked referenced or accessed (smaps Referenced).</summary>
    public ulong? Referenced { get; internal set; }
    /// <summary>Anonymous bytes (smaps Anonymous).</summary>
    public ulong? Anonymous { get; internal set; }
    /// <summary>Bytes in transparent huge pages (smaps AnonHugePages).</summary>
    public ulong? AnonHugePages { get; internal set; }
    /// <summary>Swapped-out bytes (smaps Swap).</summary>
    public ulong? Swap { get; internal set; }
    /// <summary>Locked bytes (smaps Locked).</summary>
    public ulong? Locked { get; internal set; }
    /// <summary>The two-letter VmFlags mnemonics of smaps ("rd", "wr", "sd", ...); empty when only maps was read.</summary>
    public JoinedList<string> VmFlags { get; internal set; } = JoinedList<string>.Empty;
    /// <summary>VM_SOFTDIRTY ("sd" in VmFlags): every page of the VMA reads soft-dirty. Null when VmFlags was not read.</summary>
    public bool? SoftDirty { get; internal set; }

    /// <summary>A short name for output: the path, or the kind for anonymous memory.</summary>
    public string DisplayName => _displayName ??= Path.Length != 0 ? Path : Kind == MappingKind.Anonymous ? "[anon]" : "[" + Kind.ToString().ToLowerInvariant() + "]";
    private string? _displayName;

    /// <summary>Whether <paramref name="address"/> lies in [Start, End).</summary>
    public bool Contains(ulong address) => address >= Start && address < End;

    /// <summary>The maps line's essentials: range, permissions and name.</summary>
    public override string ToString() => $"0x{Start:x}-0x{End:x} {Permissions} {DisplayName}";

    /// <summary>
    /// Whether <paramref name="other"/> maps the same memory at the same addresses, so that a page reported under this
    /// mapping's name belongs to it: the same file (device, inode, path, deleted or not) at the same file offset for
    /// each address, or anonymous memory of the same name; shared or private alike. The range and the protection may
    /// differ (mprotect splits a VMA, a heap grows) without a page changing owner.
    /// </summary>
    internal bool SameMemory(MemoryMapping other) =>
        Shared == other.Shared && Inode == other.Inode && Deleted == other.Deleted
        && string.Equals(Device, other.Device, StringComparison.Ordinal) && string.Equals(Path, other.Path, StringComparison.Ordinal)
        && (Inode == 0 || unchecked(Offset - Start) == unchecked(other.Offset - other.Start));

    /// <summary>Classifies a mapping from its path, inode and sharing, as maps shows them.</summary>
    /// <remarks>
    /// The kernel's pseudo-names ([heap], [stack], [vdso], [vvar], [vsyscall]) name memory without a file (inode 0); a
    /// mapping of a file is a file mapping whatever its name. An emulated file named '[vvar]' or '[vsyscall]' was taken for
    /// the kernel's page of that name, which images leave out, so its written pages were in no image that Test-MemoryImage
    /// called valid (round 20).
    /// </remarks>
    internal static MappingKind Classify(string path, ulong inode, bool shared)
    {
        if (path.Length == 0) return shared ? MappingKind.SharedAnonymous : MappingKind.Anonymous;
        if (inode == 0)
        {
            switch (path)
            {
                case "[heap]": return MappingKind.Heap;
                case "[stack]": return MappingKind.Stack;
                case "[vdso]": return MappingKind.Vdso;
                case "[vvar]": case "[vvar_vclock]": return MappingKind.Vvar;
                case "[vsyscall]": return MappingKind.Vsyscall;
            }
            if (path.StartsWith("[stack:", StringComparison.Ordinal)) return MappingKind.Stack;
        }
        if (path.StartsWith("[anon:", StringComparison.Ordinal)) return MappingKind.NamedAnonymous;
        if (path.StartsWith("[anon_shmem:", StringComparison.Ordinal)) return MappingKind.SharedAnonymous;
        if (inode == 0 && path.StartsWith('[')) return MappingKind.Other;
        // A private mapping of /dev/zero is private anonymous memory (the kernel's mmap_zero makes it so, keeping the device
        // as its file: maps names it, not deleted, with the device's inode); only a shared one is shared memory (round 32: a
        // private one was SharedAnonymous).
        if (path == "/dev/zero" && !shared) return MappingKind.Anonymous;
        if (path == "/dev/zero" || path.StartsWith("/SYSV", StringComparison.Ordinal)
            || path.StartsWith("/memfd:", StringComparison.Ordinal) || path.StartsWith("/dev/shm/", StringComparison.Ordinal) && shared)
            return MappingKind.SharedAnonymous;
        return MappingKind.File;
    }

    /// <summary>The permission column for a protection and sharing: the inverse of <see cref="ParsePermissions"/>.</summary>
    internal static string FormatPermissions(Protection p, bool shared) => string.Create(4, (p, shared), static (s, st) =>
    {
        s[0] = (st.p & Protection.Read) != 0 ? 'r' : '-';
        s[1] = (st.p & Protection.Write) != 0 ? 'w' : '-';
        s[2] = (st.p & Protection.Execute) != 0 ? 'x' : '-';
        s[3] = st.shared ? 's' : 'p';
    });

    /// <summary>
    /// The protection and sharing of a permission column ("rw-p", "r-xs"): the one parse of it. A letter in
    /// its place sets the permission; a missing or other character leaves it clear.
    /// </summary>
    internal static (Protection Protection, bool Shared) ParsePermissions(ReadOnlySpan<char> permissions)
    {
        var protection = Protection.None;
        if (permissions.Length > 0 && permissions[0] == 'r') protection |= Protection.Read;
        if (permissions.Length > 1 && permissions[1] == 'w') protection |= Protection.Write;
        if (permissions.Length > 2 && permissions[2] == 'x') protection |= Protection.Execute;
        return (protection, permissions.Length > 3 && permissions[3] == 's');
    }
}
