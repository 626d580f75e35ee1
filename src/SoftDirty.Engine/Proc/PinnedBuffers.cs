using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using SoftDirty.Tracking;

namespace SoftDirty;

/// <summary>
/// Memory of a process that the kernel writes through its own mapping of the pages, not through the process's page
/// table: the buffers registered with an io_uring (IORING_REGISTER_BUFFERS, pinned; IORING_OP_READ_FIXED and the like
/// copy into them). No soft-dirty or userfaultfd write-protect bit sees such a write, so a tracker must compare those
/// pages by content. Read from /proc/PID/fdinfo of each io_uring descriptor ("UserBufs:" then one
/// "INDEX: 0xADDRESS/LENGTH" line per buffer, io_uring/fdinfo.c), only where /proc/PID/status counts pinned memory
/// (VmPin: io_uring charges its registered buffers there), so a process with thousands of descriptors and nothing pinned
/// costs one small read per look.
/// </summary>
internal static class PinnedBuffers
{
    /// <summary>What /proc/PID/fd/N links to for an io_uring.</summary>
    public const string IoUringLink = "anon_inode:[io_uring]";

    private const string UserBufsField = "UserBufs:", PinnedField = "VmPin:", InodeField = "ino:";

    /// <summary>The io_uring registered buffers of <paramref name="pid"/>, page-aligned outwards (empty where none, or where /proc cannot be read).</summary>
    public static List<AddressRange> Read(int pid, int pageSize)
    {
        var found = new List<AddressRange>();
        if (NothingPinned(pid)) return found;
        foreach (var fdinfo in IoUringFdinfos(pid)) ReadFdinfo(fdinfo, (ulong)pageSize, found);
        found.Sort((x, y) => x.Start.CompareTo(y.Start));
        return found;
    }

    /// <summary>
    /// Whether <paramref name="pid"/> holds an io_uring whose rings it has not mapped from the descriptor: set up with
    /// IORING_SETUP_NO_MMAP, its rings (the completion entries the kernel writes at every completion) live in the
    /// process's own memory, pinned and written through the kernel's mapping, and neither /proc/PID/status (VmPin) nor
    /// fdinfo says where. Each io_uring has an inode of its own (fdinfo "ino:"); rings mapped from the descriptor are a
    /// mapping of that inode (anon_inode:[io_uring]), compared by content as a shared mapping. A ring set up with
    /// IORING_SETUP_REGISTERED_FD_ONLY whose descriptor was closed is not seen here.
    /// </summary>
    public static bool HasRingsInOwnMemory(int pid, IReadOnlyList<MemoryMapping> mappings)
    {
        foreach (var fdinfo in IoUringFdinfos(pid))
        {
            ulong? inode = ReadInode(fdinfo);
            if (inode is null) continue; // closed meanwhile
            bool mapped = false;
            foreach (var m in mappings)
                if (m.Inode == inode && m.Path == IoUringLink) { mapped = true; break; }
            if (!mapped) return true;
        }
        return false;
    }

    /// <summary>The fdinfo files of the io_uring descriptors of <paramref name="pid"/> (none where /proc cannot be read, or the process exited meanwhile).</summary>
    private static List<string> IoUringFdinfos(int pid)
    {
        var found = new List<string>();
        var fds = $"/proc/{pid}/fd";
        try
        {
            foreach (var f in Directory.EnumerateFileSystemEntries(fds))
            {
                // readlink itself: .NET's LinkTarget said null for out of memory too, and an io_uring's buffers went uncompared (round 29).
                if (ProcLink.Read(f, out _) == IoUringLink) found.Add($"/proc/{pid}/fdinfo/{Path.GetFileName(f)}");
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, fds); } // unreadable, or the process exited meanwhile
        return found;
    }

    /// <summary>The "ino:" line of an fdinfo file; null where it cannot be read.</summary>
    private static ulong? ReadInode(string path)
    {
        try
        {
            foreach (var line in File.ReadLines(path))
                if (line.StartsWith(InodeField, StringComparison.Ordinal))
                    return ulong.TryParse(line.AsSpan(InodeField.Length).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong ino) ? ino : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, path); }
        return null;
    }

    /// <summary>
    /// Whether the kernel may write memory of <paramref name="pid"/> that no one here can locate, so that all of it must
    /// be compared by content: a legacy AIO context (<see cref="HasAioContext"/>), an AF_XDP socket's rings
    /// (<see cref="HasSocketRings"/>), an io_uring whose rings live in its own memory (<see cref="HasRingsInOwnMemory"/>), any
    /// io_uring where the kernel writes provided-buffer rings (<see cref="BufferRingsWritten"/>), or
    /// pinned memory (VmPin) beyond what the registered buffers of its own io_uring descriptors (<paramref name="buffers"/>,
    /// from <see cref="Read"/>) can account for: the buffers of an io_uring it handed to another process (fork, SCM_RIGHTS)
    /// and closed, or that a process sharing its memory (clone with CLONE_VM) registered. The pinned memory stays charged
    /// to the process whose memory it is, while the descriptor, and the fdinfo that says where, are another's (round 15).
    /// </summary>
    public static bool WritesUnlocated(int pid, int pageSize, IReadOnlyList<MemoryMapping> mappings, List<AddressRange> buffers) =>
        HasAioContext(mappings) || HasSocketRings(mappings) || (BufferRingsWritten.Value ? IoUringFdinfos(pid).Count > 0 : HasRingsInOwnMemory(pid, mappings)) || PinnedBeyond(pid, (ulong)pageSize, buffers);

    /// <summary>What maps shows for memory mapped from a socket (its inode follows, then "]").</summary>
    public const string SocketPathPrefix = "socket:[";

    /// <summary>
    /// Whether the process maps rings of a socket: an AF_XDP socket's (its fill and receive rings), whose umem is the
    /// process's own memory, pinned at XDP_UMEM_REG (which marks it written) and charged to the user's locked memory, not to
    /// VmPin; the kernel copies every packet it receives into a umem frame through its own mapping (round 19). AF_PACKET
    /// rings and TCP receive zerocopy map sockets too: compared by content as well, an over-count, never a miss. A socket whose
    /// rings the process unmapped, or handed to another process, is not seen.
    /// </summary>
    public static bool HasSocketRings(IReadOnlyList<MemoryMapping> mappings)
    {
        foreach (var m in mappings)
            if (m.Shared && m.Path.StartsWith(SocketPathPrefix, StringComparison.Ordinal)) return true;
        return false;
    }

    /// <summary>What maps shows for the ring of a legacy AIO context (io_setup): a shared mapping of "/[aio] (deleted)".</summary>
    public const string AioRingPath = "/[aio]";

    /// <summary>
    /// Whether the process has a legacy AIO context (io_setup), seen by its ring's mapping (<see cref="AioRingPath"/>). A
    /// read it submits (io_submit IOCB_CMD_PREAD of a file opened O_DIRECT) pins the buffer's pages, which marks them
    /// written, and the kernel fills them when the read completes, through its own mapping: a tracker's reset between the
    /// two loses that write, and neither VmPin nor any fdinfo says where the buffer is (round 19). A context whose ring the
    /// process unmapped is not seen.
    /// </summary>
    public static bool HasAioContext(IReadOnlyList<MemoryMapping> mappings)
    {
        foreach (var m in mappings)
            if (m.Shared && m.Deleted && m.Path == AioRingPath) return true;
        return false;
    }

    /// <summary>
    /// Whether this kernel writes the entries of provided-buffer rings (IORING_REGISTER_PBUF_RING consumed incrementally,
    /// IOU_PBUF_RING_INC, Linux 6.12): a ring in the process's own memory is pinned and its entries advanced through the
    /// kernel's mapping at every completion, with no VmPin or fdinfo line to say where. There, any io_uring descriptor
    /// means all memory is compared by content (round 15).
    /// </summary>
    private static readonly Lazy<bool> BufferRingsWritten = new(() => KernelRules.ParseVersion(KernelProbe.ReadKernelRelease()) >= IncrementalBufferRings);

    private static readonly Version IncrementalBufferRings = new(6, 12);

    /// <summary>
    /// Whether /proc/PID/status counts more pinned bytes than <paramref name="buffers"/> can explain. io_uring charges a
    /// buffer's pages, a large folio (a transparent huge page, a large page-cache folio) whole: so each buffer counts as
    /// up to the whole PMD-sized blocks it touches (the largest such folio), an upper bound; a false alarm costs a content
    /// comparison, never a missed page.
    /// </summary>
    private static bool PinnedBeyond(int pid, ulong pageSize, List<AddressRange> buffers)
    {
        if (PinnedBytes(pid) is not { } pinned || pinned == 0) return false;
        ulong block = pageSize * (pageSize / PageTableEntryBytes), explained = 0;
        foreach (var b in buffers)
        {
            ulong first = b.Start / block * block, last = (b.End + block - 1) / block * block;
            explained += last - first;
            if (explained >= pinned) return false;
        }
        return true;
    }

    /// <summary>Bytes of a page-table entry: a page table of one page holds pageSize / 8 of them, and maps a PMD-sized block.</summary>
    private const ulong PageTableEntryBytes = 8;

    /// <summary>Whether /proc/PID/status says no memory is pinned (VmPin: 0 kB); false where it cannot be read or lacks the field.</summary>
    private static bool NothingPinned(int pid) => PinnedBytes(pid) == 0;

    /// <summary>The pinned memory /proc/PID/status counts (VmPin), in bytes; null where it cannot be read or lacks the field.</summary>
    private static ulong? PinnedBytes(int pid)
    {
        var status = $"/proc/{pid}/status";
        try
        {
            foreach (var line in File.ReadLines(status))
                if (line.StartsWith(PinnedField, StringComparison.Ordinal))
                {
                    var value = line.AsSpan(PinnedField.Length).Trim();
                    return value.EndsWith(KibUnit, StringComparison.Ordinal)
                        && ulong.TryParse(value[..^KibUnit.Length].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong kib) ? kib * 1024 : null;
                }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, status); }
        return null;
    }

    private const string KibUnit = "kB";

    private static void ReadFdinfo(string path, ulong pageSize, List<AddressRange> found)
    {
        IEnumerable<string> lines;
        try { lines = File.ReadLines(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            ProcReadFailure.ThrowIfLimit(ex, path);
            return;
        }
        int left = 0;
        try
        {
            foreach (var line in lines)
            {
                if (line.StartsWith(UserBufsField, StringComparison.Ordinal))
                {
                    left = int.TryParse(line.AsSpan(UserBufsField.Length).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? n : 0;
                    continue;
                }
                if (left <= 0) continue;
                left--;
                if (TryParseBuffer(line, pageSize, out var range)) found.Add(range);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { ProcReadFailure.ThrowIfLimit(ex, path); }
    }

    /// <summary>Parses "    0: 0x7f9d3753e000/16384" into the pages it covers.</summary>
    internal static bool TryParseBuffer(string line, ulong pageSize, out AddressRange range)
    {
        range = default;
        var s = line.AsSpan().Trim();
        int colon = s.IndexOf(':');
        if (colon < 0) return false;
        s = s[(colon + 1)..].Trim();
        int slash = s.IndexOf('/');
        if (slash < 0 || !s.StartsWith("0x", StringComparison.Ordinal)) return false;
        if (!ulong.TryParse(s[2..slash], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong start)
            || !ulong.TryParse(s[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out ulong length) || length == 0) return false;
        ulong end = start + length;
        if (end < start) return false;
        ulong first = start / pageSize * pageSize, last = end / pageSize * pageSize;
        if (last < end) last += pageSize;
        if (last < first) return false; // wrapped past the top of the address space: not a buffer of this process
        range = new AddressRange(first, last);
        return true;
    }
}
