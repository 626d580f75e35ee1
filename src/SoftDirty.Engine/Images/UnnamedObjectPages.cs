using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.Win32.SafeHandles;
using SoftDirty.Tracking;

namespace SoftDirty.Images;

/// <summary>
/// The pages a save takes from the object a mapping maps, not from the process: pages of memory whose object has no name
/// that outlives the process (<see cref="IsUnnamed"/>: a memfd, shared anonymous memory, a System V segment, a file deleted
/// while mapped) that the process does not map now. pagemap and /proc/PID/mem see only the pages in the process's page
/// tables; a page of such an object that the process never touched, that another process or write(2) put there, or that
/// MADV_DONTNEED or reclaim unmapped, is in the object only, and the object ends with the last process that holds it. Left
/// to "the file's", such a page was in no image, the image was valid and the restore gave zeros (round 23: 8 of 8 pages, in
/// each of 9 cases, root and unprivileged). A named file's page not present stays the file's, as before.
/// The object is opened through /proc/PID/map_files (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE), else through a descriptor
/// the process holds on it (/proc/PID/fd) or its executable (/proc/PID/exe), matched by device and inode, and read with pread(2): its holes (SEEK_HOLE) are
/// zeros and are not read, and nothing in the process changes (a read through /proc/PID/mem would fault every hole in, a new
/// page of the object each). Where it cannot be opened (another user's map_files, no descriptor: a System V segment, shared
/// anonymous memory, a memfd or deleted file the process closed) or lies on a file system whose reads may never answer
/// (<see cref="MayOpen"/>), its pages not present count as unreadable: the image is incomplete and says so. Out of descriptors
/// or memory on the way is ResourceLimit, never "cannot be opened".
/// </summary>
internal sealed class UnnamedObjectPages : IDisposable
{
    /// <summary>One mapping of such an object in the save: its span, and the object opened (null: no way to read it).</summary>
    private sealed class Entry
    {
        public required PageSpan Span;
        public SafeFileHandle? File;
        public ulong Size;
        /// <summary>The addresses of the span whose object pages hold data (not holes), ascending; found when first needed.</summary>
        public List<AddressRange>? Data;
        /// <summary>The first range of <see cref="Data"/> that may still meet a gap.</summary>
        public int DataAt;
    }

    private readonly IPageSource _source;
    // An emulated process: its objects' pages (a shared mapping's that a fork's other half wrote) are read from the emulator,
    // which holds them (EmulatedProcess.ObjectPages), without a fault; such pages were in no image of it (round 24).
    private Emulation.EmulatedProcess? _emulated;
    private readonly ulong _pageSize;
    private readonly List<Entry> _entries = [];
    private readonly Dictionary<(string Device, ulong Inode), SafeFileHandle?> _opened = [];
    // The gaps found so far end here; the entry the next gap is looked for in.
    private ulong _covered;
    private int _entryAt;
    // The ranges handed out to read from the objects (ascending), with a cursor for Owns.
    private readonly List<(AddressRange Range, Entry Entry)> _toRead = [];
    private int _readAt;
    private PagemapEntry[]? _pagemap;

    /// <summary>Pages not present of such mappings that no route could read: counted unreadable by the save.</summary>
    public ulong UnopenedPages { get; private set; }

    /// <summary>The first mapping whose pages counted in <see cref="UnopenedPages"/>, for the save's warning.</summary>
    public string? FirstUnopened { get; private set; }

    /// <summary>
    /// Where not null (<c>keepUnopened</c>), the ranges of the pages counted in <see cref="UnopenedPages"/>, in the order found: a
    /// watch's page hashes hold them as unknown, so a page there is never counted as changed or gone (that cannot be told).
    /// Guard markers are not looked for in them then (a watch looks at every interval; it needs only where they are).
    /// </summary>
    public List<AddressRange>? UnopenedRanges { get; }

    private UnnamedObjectPages(IPageSource source, IReadOnlyList<PageSpan> spans, bool keepUnopened)
    {
        if (keepUnopened) UnopenedRanges = [];
        _source = source;
        _pageSize = (ulong)source.PageSize;
        foreach (var s in spans)
            if (s.Mapping is { } m && IsUnnamed(m)) _entries.Add(new Entry { Span = s });
    }

    /// <summary>
    /// For a save or page hashes of <paramref name="spans"/> (ascending): null where none is such a mapping.
    /// <paramref name="keepUnopened"/>: <see cref="UnopenedRanges"/> are kept.
    /// </summary>
    public static UnnamedObjectPages? For(IPageSource source, IReadOnlyList<PageSpan> spans, bool keepUnopened = false)
    {
        var root = PageWalk.Root(source);
        if (root is not ProcPageSource && root is not Emulation.EmulatedProcess) return null;
        var pages = new UnnamedObjectPages(source, spans, keepUnopened) { _emulated = root as Emulation.EmulatedProcess };
        return pages._entries.Count == 0 ? null : pages;
    }

    /// <summary>
    /// Whether the object <paramref name="m"/> maps has no name that outlives the process: maps says "(deleted)" (a memfd,
    /// shared anonymous memory as /dev/zero, a System V segment, a file unlinked while mapped) or [anon_shmem:NAME].
    /// A file with a name, a file of /dev/shm with its name included, is the file's. Private anonymous huge pages
    /// (MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB, "/anon_hugepage (deleted)") are not: the kernel's object behind them is never
    /// written (every page the process has is its own copy), so a page not mapped reads as zeros, as anonymous memory's does.
    /// </summary>
    public static bool IsUnnamed(MemoryMapping m) =>
        m.Inode != 0 && m.Kind is MappingKind.File or MappingKind.SharedAnonymous
        && (m.Deleted || m.Path.StartsWith("[anon_shmem:", StringComparison.Ordinal))
        && !(m.Path == AnonHugePage && !m.Shared);

    /// <summary>The name maps gives anonymous memory of huge pages (MAP_ANONYMOUS|MAP_HUGETLB), on the kernel's own hugetlbfs.</summary>
    private const string AnonHugePage = "/anon_hugepage";

    /// <summary>
    /// The ranges below <paramref name="until"/> of such mappings that no region of the process's pages covered (the regions
    /// come in ascending order; each is passed to <see cref="Covered"/> after this), cut to the object's data: to read from the
    /// object (<see cref="Owns"/>, <see cref="Read"/>). Pages there that cannot be read from the object count in <see cref="UnopenedPages"/>.
    /// </summary>
    public IEnumerable<AddressRange> GapsBelow(ulong until)
    {
        while (_entryAt < _entries.Count)
        {
            var e = _entries[_entryAt];
            ulong start = Math.Max(_covered, e.Span.Start), end = Math.Min(until, e.Span.End);
            if (start < end)
                foreach (var r in Gap(e, start, end)) yield return r;
            if (e.Span.End > until) break;
            _entryAt++;
        }
        _covered = Math.Max(_covered, until);
    }

    /// <summary>Says that the process's pages up to <paramref name="end"/> were covered by a region.</summary>
    public void Covered(ulong end) => _covered = Math.Max(_covered, end);

    private IEnumerable<AddressRange> Gap(Entry e, ulong start, ulong end)
    {
        if (_emulated is not null)
        {
            e.Data ??= _emulated.ObjectPages(e.Span.Start, e.Span.End);
            foreach (var part in DataIn(e, start, end)) yield return part;
            yield break;
        }
        var file = Open(e);
        if (file is null)
        {
            // Guard markers (MADV_GUARD_INSTALL) hold nothing: the process faults there. Every other page not in a region is the object's.
            foreach (var part in UnopenedRanges is null ? WithoutGuards(start, end) : new[] { new AddressRange(start, end) })
            {
                UnopenedPages += part.Size / _pageSize;
                UnopenedRanges?.Add(part);
                FirstUnopened ??= $"0x{e.Span.Start:x}-0x{e.Span.End:x} {e.Span.Mapping!.DisplayName}";
            }
            yield break;
        }
        e.Data ??= DataRanges(e, file);
        foreach (var part in DataIn(e, start, end)) yield return part;
    }

    /// <summary>The object's data in the gap [<paramref name="start"/>, <paramref name="end"/>) of <paramref name="e"/> (its holes are zeros), without guard markers, each handed out to read.</summary>
    private IEnumerable<AddressRange> DataIn(Entry e, ulong start, ulong end)
    {
        // Gaps of a span ascend: a cursor in its data.
        var data = e.Data!;
        while (e.DataAt < data.Count && data[e.DataAt].End <= start) e.DataAt++;
        for (int i = e.DataAt; i < data.Count && data[i].Start < end; i++)
        {
            ulong s = Math.Max(data[i].Start, start), t = Math.Min(data[i].End, end);
            foreach (var part in WithoutGuards(s, t))
            {
                _toRead.Add((part, e));
                yield return part;
            }
        }
    }

    private IEnumerable<AddressRange> WithoutGuards(ulong start, ulong end)
    {
        _pagemap ??= new PagemapEntry[PageMapReader.DefaultChunkEntries];
        ulong page = start / _pageSize, last = end / _pageSize, runStart = start;
        bool open = false;
        while (page < last)
        {
            int want = (int)Math.Min((ulong)_pagemap.Length, last - page);
            int got = _source.ReadPagemap(page, _pagemap.AsSpan(0, want));
            for (int i = 0; i < got; i++)
            {
                ulong at = (page + (ulong)i) * _pageSize;
                bool guard = _pagemap[i].Guard;
                if (!guard && !open) { runStart = at; open = true; }
                else if (guard && open) { yield return new AddressRange(runStart, at); open = false; }
            }
            if (got < want) { if (open) yield return new AddressRange(runStart, (page + (ulong)got) * _pageSize); yield break; }
            page += (ulong)got;
        }
        if (open) yield return new AddressRange(runStart, end);
    }

    /// <summary>Whether the piece at <paramref name="address"/> (pieces come in ascending order) is one to read from an object.</summary>
    public bool Owns(ulong address)
    {
        while (_readAt < _toRead.Count && _toRead[_readAt].Range.End <= address) _readAt++;
        return _readAt < _toRead.Count && _toRead[_readAt].Range.Start <= address;
    }

    /// <summary>
    /// Reads <paramref name="piece"/> (inside the range <see cref="Owns"/> found) from its object into <paramref name="buffer"/> and
    /// hands the pages read to <paramref name="handler"/>. Pages past the object's end now (truncated since) hold nothing (the
    /// process would get SIGBUS there); pages whose read fails count as unreadable (returned).
    /// </summary>
    public ulong Read(AddressRange piece, byte[] buffer, PageWalk.ChunkHandler handler)
    {
        var e = _toRead[_readAt].Entry;
        if (_emulated is not null)
        {
            // (EmulatedProcess.ReadMemory renders a page its object holds without faulting it in.)
            int read = _emulated.ReadMemory(piece.Start, buffer.AsSpan(0, (int)piece.Size));
            int whole = read - read % (int)_pageSize;
            if (whole > 0) handler(piece.Start, buffer.AsSpan(0, whole));
            return (piece.Size - (ulong)whole) / _pageSize;
        }
        var m = e.Span.Mapping!;
        long offset = (long)(m.Offset + (piece.Start - m.Start));
        int length = (int)piece.Size, got = 0;
        ulong unreadable = 0;
        while (got < length)
        {
            int n;
            try { n = RandomAccess.Read(e.File!, buffer.AsSpan(got, length - got), offset + got); }
            catch (IOException) { n = -1; }
            catch (UnauthorizedAccessException) { n = -1; }
            if (n == 0) break; // the end of the object: nothing past it
            if (n < 0)
            {
                // The page at got fails: unreadable; go on after it.
                int whole = got - got % (int)_pageSize;
                if (whole > 0) handler(piece.Start, buffer.AsSpan(0, whole));
                unreadable++;
                int next = whole + (int)_pageSize;
                if (next < length) unreadable += Read(new AddressRange(piece.Start + (ulong)next, piece.End), buffer, handler);
                return unreadable;
            }
            got += n;
        }
        int pages = got - got % (int)_pageSize;
        if (got > pages && got < length)
        {
            // A last page cut by the object's end: the rest of it reads zeros in the process.
            Array.Clear(buffer, got, (int)_pageSize - got % (int)_pageSize);
            pages += (int)_pageSize;
        }
        if (pages > 0) handler(piece.Start, buffer.AsSpan(0, pages));
        // The pages past the object's end (it was truncated since its data was listed): gone, as memory unmapped is.
        for (int past = pages; past < length && PastEnd is { } ended; past += (int)_pageSize) ended(piece.Start + (ulong)past);
        return unreadable;
    }

    /// <summary>
    /// Called with each page <see cref="Read"/> found past the end of its object: listed where the object held data, and gone
    /// by the read (the file or memfd truncated meanwhile; the process gets SIGBUS there). An increment records it as zero
    /// where its chain has data: before, it kept the parent's bytes, and the chain restored memory the process no longer had
    /// (round 32).
    /// </summary>
    public Action<ulong>? PastEnd { get; set; }

    /// <summary>The addresses of <paramref name="e"/>'s span where the object holds data (SEEK_DATA, SEEK_HOLE), within its size.</summary>
    private List<AddressRange> DataRanges(Entry e, SafeFileHandle file)
    {
        var m = e.Span.Mapping!;
        var ranges = new List<AddressRange>();
        ulong first = m.Offset + (e.Span.Start - m.Start), last = Math.Min(m.Offset + (e.Span.End - m.Start), (e.Size + _pageSize - 1) / _pageSize * _pageSize);
        ulong at = first;
        while (at < last)
        {
            long data = Native.Lseek(file, (long)at, Native.SEEK_DATA);
            if (data < 0)
            {
                // ENXIO: no data past here. Any other error (a file system without SEEK_DATA answers EINVAL or ESPIPE): all data.
                if (System.Runtime.InteropServices.Marshal.GetLastPInvokeError() != Errno.ENXIO) ranges.Add(Addresses(m, at, last));
                break;
            }
            if ((ulong)data >= last) break;
            long hole = Native.Lseek(file, data, Native.SEEK_HOLE);
            ulong dataStart = (ulong)data / _pageSize * _pageSize;
            ulong holeAt = hole < 0 ? last : Math.Min(last, ((ulong)hole + _pageSize - 1) / _pageSize * _pageSize);
            if (holeAt <= dataStart) holeAt = Math.Min(last, dataStart + _pageSize);
            ranges.Add(Addresses(m, dataStart, holeAt));
            at = holeAt;
        }
        return ranges;
    }

    private static AddressRange Addresses(MemoryMapping m, ulong from, ulong to) => new(m.Start + (from - m.Offset), m.Start + (to - m.Offset));

    /// <summary>
    /// Whether the object of <paramref name="m"/> may be looked at: shared memory of the kernel's own mounts (a memfd, a System V
    /// segment, shared anonymous memory, of small or huge pages: no server behind them), or a file on a local file system (<see cref="LocalFileSystems"/>).
    /// A stat or read of a file on FUSE, NFS or CIFS can wait on a server for ever (a FUSE server of the process's owner holding
    /// it: Ctrl+C does not end that wait), so such an object is never opened, and its pages not mapped count as unreadable.
    /// </summary>
    private bool MayOpen(MemoryMapping m) =>
        m.Kind == MappingKind.SharedAnonymous && !m.Path.StartsWith("/dev/shm/", StringComparison.Ordinal)
        || m.Path == AnonHugePage
        || LocalFileSystems.IsLocal(_source.ProcessId, m.Device);

    /// <summary>The object <paramref name="e"/> maps, opened for reading (one descriptor per object), or null.</summary>
    private SafeFileHandle? Open(Entry e)
    {
        if (e.File is not null) return e.File;
        var m = e.Span.Mapping!;
        var key = (m.Device.ToLowerInvariant(), m.Inode);
        if (!_opened.TryGetValue(key, out var file))
        {
            file = null;
            if (MayOpen(m))
            {
                file = OpenPath(string.Create(CultureInfo.InvariantCulture, $"/proc/{_source.ProcessId}/map_files/{m.Start:x}-{m.End:x}"), m);
                if (file is null)
                    foreach (var path in Candidates(m))
                        if ((file = OpenPath(path, m)) is not null) break;
            }
            _opened[key] = file;
        }
        if (file is not null && FileNative.Fstat((int)file.DangerousGetHandle(), out _) is { } s) { e.File = file; e.Size = s.Size; }
        return e.File;
    }

    /// <summary>
    /// <paramref name="path"/> (a /proc link to the object) opened read-only, where it is a regular file of <paramref name="m"/>'s
    /// device and inode; else null. It is first opened O_PATH, which runs no driver's open, and checked; only then is that very
    /// file opened for reading (through /proc/self/fd), so a mapping or descriptor the process replaces meanwhile with a device
    /// or FIFO is never opened for real.
    /// </summary>
    private SafeFileHandle? OpenPath(string path, MemoryMapping m)
    {
        int at = Native.Open(path, Native.O_PATH | Native.O_CLOEXEC);
        if (at < 0) { ThrowIfLimit(path); return null; }
        try
        {
            if (!Matches(at, m)) return null;
            int fd = Native.Open(string.Create(CultureInfo.InvariantCulture, $"/proc/self/fd/{at}"), Native.O_RDONLY | Native.O_CLOEXEC | Native.O_NONBLOCK | Native.O_NOCTTY);
            if (fd < 0) { ThrowIfLimit(path); return null; }
            var handle = new SafeFileHandle(fd, ownsHandle: true);
            if (!Matches(fd, m))
            {
                handle.Dispose();
                return null;
            }
            return handle;
        }
        finally { Native.Close(at); }
    }

    /// <summary>
    /// Whether this command's descriptor <paramref name="fd"/> is open on a regular file that is <paramref name="m"/>'s object:
    /// the device and inode maps names (the inode the kernel holds: its superblock's device and i_ino). A stat says the same on
    /// most file systems, not on all: btrfs answers with the subvolume's own device, overlayfs with a layer's device and inode
    /// (round 26: a deleted file mapped on btrfs, or on an overlay whose upper layer is another file system, matched no
    /// descriptor, and its pages not mapped counted as unreadable: 240 of 256). There the descriptor's own fdinfo decides: the
    /// inode it names (i_ino) and the device of its mount (mountinfo, the process's or this command's: mount ids are global).
    /// </summary>
    private bool Matches(int fd, MemoryMapping m)
    {
        if (FileNative.Fstat(fd, out _) is not { } s || s.Type != FileNative.S_IFREG) return false;
        if (s.Inode == m.Inode && string.Equals(s.Device, m.Device, StringComparison.OrdinalIgnoreCase)) return true;
        string info, infoPath = string.Create(CultureInfo.InvariantCulture, $"/proc/self/fdinfo/{fd}");
        try { info = File.ReadAllText(infoPath); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, infoPath); return false; }
        if (Field(info, "ino:") != m.Inode || Field(info, "mnt_id:") is not { } mount) return false;
        _mounts ??= MountDevices(_source.ProcessId.ToString(CultureInfo.InvariantCulture));
        _ownMounts ??= MountDevices("self");
        return (_mounts.TryGetValue(mount, out var device) || _ownMounts.TryGetValue(mount, out device))
            && string.Equals(device, m.Device, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The process's descriptors (/proc/PID/fd/N) that may be open on <paramref name="m"/>'s object, and its executable
    /// (/proc/PID/exe: a program replaced on disk while it runs maps a deleted file). Told from /proc/PID/fdinfo (its inode, and
    /// its mount: one the process's mountinfo lists must be local) and from readlink, never by a stat of what a descriptor is open
    /// on, which could be a file of a FUSE server that never answers.
    /// </summary>
    private IEnumerable<string> Candidates(MemoryMapping m)
    {
        int pid = _source.ProcessId;
        string exe = string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/exe");
        if (m.Deleted && ReadLink(exe) == m.Path + " (deleted)") yield return exe;
        _mounts ??= MountDevices(pid.ToString(CultureInfo.InvariantCulture));
        IEnumerable<string> entries;
        string fdinfo = string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/fdinfo");
        try { entries = Directory.EnumerateFiles(fdinfo).ToList(); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, fdinfo); yield break; }
        foreach (var info in entries)
        {
            string text;
            try { text = File.ReadAllText(info); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, info); continue; }
            ulong? inode = Field(text, "ino:");
            if (inode is { } ino && ino != m.Inode) continue;
            // A mount the process's mountinfo lists is named there with its device; the kernel's own (memfds, System V) are not listed.
            if (Field(text, "mnt_id:") is not { } mount || _mounts.TryGetValue(mount, out var device) && (!string.Equals(device, m.Device, StringComparison.OrdinalIgnoreCase) || !LocalFileSystems.IsLocal(pid, device))) continue;
            if (!_mounts.ContainsKey(mount) && !(m.Kind == MappingKind.SharedAnonymous && !m.Path.StartsWith("/dev/shm/", StringComparison.Ordinal))) continue;
            yield return string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/fd/{Path.GetFileName(info)}");
        }
    }

    private Dictionary<ulong, string>? _mounts, _ownMounts;

    /// <summary>Mount id to device (hex major:minor, lower case) of each mount in /proc/PID/mountinfo (PID a pid or "self").</summary>
    private static Dictionary<ulong, string> MountDevices(string pid)
    {
        var mounts = new Dictionary<ulong, string>();
        string path = string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/mountinfo");
        try
        {
            foreach (var line in File.ReadAllLines(path))
                if (MountInfoLine.Parse(line) is { } mount) mounts[mount.Id] = mount.Device;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, path); }
        return mounts;
    }

    /// <summary>The decimal number after <paramref name="name"/> at the start of a line of <paramref name="text"/> (an fdinfo field), or null.</summary>
    private static ulong? Field(string text, string name)
    {
        foreach (var line in text.Split('\n'))
            if (line.StartsWith(name, StringComparison.Ordinal) && ulong.TryParse(line.AsSpan(name.Length).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)) return v;
        return null;
    }

    /// <summary>A link of /proc (<see cref="ProcLink"/>: out of memory is ResourceLimit, never "no link"); null where there is none to read.</summary>
    private static string? ReadLink(string path) => ProcLink.Read(path, out _);

    /// <summary>
    /// Throws ResourceLimit where the open of <paramref name="path"/> just failed for want of descriptors or memory: this process's
    /// limit says nothing of the object, which was counted unreadable, "this user cannot open it", and the image saved without
    /// its pages (round 29: 8 of 8 pages of a memfd the process holds a descriptor of). Any other failure: the route is closed.
    /// </summary>
    private static void ThrowIfLimit(string path)
    {
        int e = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        if (Errno.IsResourceLimit(e))
            throw ResourceLimitError.For($"Opening {path} failed", e, "The pages of that memory not mapped in the process could not be read, so nothing was saved", path);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var f in _opened.Values) f?.Dispose();
        _opened.Clear();
    }
}
