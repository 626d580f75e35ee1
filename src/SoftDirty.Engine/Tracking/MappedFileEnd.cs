using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using SoftDirty.Images;

namespace SoftDirty.Tracking;

/// <summary>
/// Where the files a real process maps end now, to leave out of a save the pagemap entries past a file's end. A file
/// (a memfd too) truncated while the process's mapping of it was write-protected by a userfaultfd keeps, past its new
/// end, the uffd-wp markers of the pages it lost (the kernel keeps them on truncation): pagemap shows them as swapped
/// pages, and a read of one faults (SIGBUS, past the end), so every later image would count them unreadable and be
/// invalid. They hold nothing: the process itself would get SIGBUS there, and an image of that moment without write
/// tracking has no page there either.
/// The file is found, and matched by device and inode with the mapping (never another file of the same name), through
/// /proc/PID/map_files (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE), else a descriptor of the process that is open on it,
/// else its path when it was not deleted; where none is found the entries stay (and count unreadable, as before).
/// </summary>
internal sealed class MappedFileEnd
{
    private readonly int _pid;
    private readonly Dictionary<(string Device, ulong Inode), ulong?> _sizes = [];
    // The path that found each file (its map_files entry, a descriptor of the process, its own path), to look at it again.
    private readonly Dictionary<(string Device, ulong Inode), string> _found = [];
    private List<(string Path, FileNative.PathStatus Status)>? _descriptors;

    public MappedFileEnd(int pid) => _pid = pid;

    /// <summary>
    /// The first address of <paramref name="mapping"/> past the end of its file (rounded up to a page), or null where
    /// it maps no file, the file reaches past the mapping, or the file cannot be found.
    /// </summary>
    public ulong? EndAddress(MemoryMapping mapping, ulong pageSize) => EndOf(mapping, Size(mapping), pageSize);

    /// <summary>
    /// As <see cref="EndAddress"/>, with the file's size looked up now (its path found before looked at again, else found
    /// anew): where a page that was present failed to read because the file was truncated meanwhile (round 32: a truncation
    /// during a save made the pages it took count as unreadable, and the image incomplete).
    /// </summary>
    public ulong? EndAddressNow(MemoryMapping mapping, ulong pageSize)
    {
        if (mapping.Inode == 0 || mapping.Kind is not (MappingKind.File or MappingKind.SharedAnonymous)) return null;
        var key = (mapping.Device, mapping.Inode);
        FileNative.PathStatus? now = _found.TryGetValue(key, out var path) ? Matching(FileNative.Stat(path, out _), mapping) : null;
        if (now is null)
        {
            _descriptors = null; // what the descriptors said before is not now
            now = Find(mapping);
        }
        _sizes[key] = now?.Size;
        return EndOf(mapping, now?.Size, pageSize);
    }

    private static ulong? EndOf(MemoryMapping mapping, ulong? size, ulong pageSize)
    {
        if (size is not { } bytes) return null;
        ulong end = (bytes + pageSize - 1) / pageSize * pageSize;
        if (end <= mapping.Offset) return mapping.Start;
        ulong within = end - mapping.Offset;
        return within >= mapping.End - mapping.Start ? null : mapping.Start + within;
    }

    /// <summary>Whether the file <paramref name="mapping"/> maps was found, so that where it ends now is known.</summary>
    public bool Knows(MemoryMapping mapping) => Size(mapping) is not null;

    /// <summary>The size of the file <paramref name="mapping"/> maps now, looked up once per file; null where it maps none or it cannot be found.</summary>
    private ulong? Size(MemoryMapping mapping)
    {
        if (mapping.Inode == 0 || mapping.Kind is not (MappingKind.File or MappingKind.SharedAnonymous)) return null;
        var key = (mapping.Device, mapping.Inode);
        if (!_sizes.TryGetValue(key, out ulong? size)) _sizes[key] = size = Find(mapping)?.Size;
        return size;
    }

    private FileNative.PathStatus? Find(MemoryMapping mapping)
    {
        var key = (mapping.Device, mapping.Inode);
        string mapFile = string.Create(CultureInfo.InvariantCulture, $"/proc/{_pid}/map_files/{mapping.Start:x}-{mapping.End:x}");
        var viaMapFiles = Matching(FileNative.Stat(mapFile, out _), mapping);
        if (viaMapFiles is not null) { _found[key] = mapFile; return viaMapFiles; }
        _descriptors ??= Descriptors();
        foreach (var d in _descriptors)
            if (Matching(d.Status, mapping) is { } found) { _found[key] = d.Path; return found; }
        if (mapping.Deleted || !mapping.Path.StartsWith('/')) return null;
        var byPath = Matching(FileNative.Stat(mapping.Path, out _), mapping);
        if (byPath is not null) _found[key] = mapping.Path;
        return byPath;
    }

    private static FileNative.PathStatus? Matching(FileNative.PathStatus? status, MemoryMapping mapping) =>
        status is { } s && s.Type == FileNative.S_IFREG && s.Inode == mapping.Inode && string.Equals(s.Device, mapping.Device, StringComparison.OrdinalIgnoreCase) ? s : null;

    /// <summary>What each descriptor of the process is open on (the ones that cannot be looked at are left out).</summary>
    private List<(string Path, FileNative.PathStatus Status)> Descriptors()
    {
        var found = new List<(string Path, FileNative.PathStatus Status)>();
        IEnumerable<string> entries;
        try { entries = Directory.EnumerateFileSystemEntries(string.Create(CultureInfo.InvariantCulture, $"/proc/{_pid}/fd")); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return found; }
        try
        {
            foreach (var entry in entries)
                if (FileNative.Stat(entry, out _) is { } s && s.Type == FileNative.S_IFREG) found.Add((entry, s));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return found;
    }
}
