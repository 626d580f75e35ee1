using System;
using System.Buffers;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using SoftDirty.Images;
using SoftDirty.Tracking;

namespace SoftDirty;

/// <summary>A real process, read through /proc/PID/{maps,smaps,pagemap,clear_refs}.</summary>
/// <remarks>
/// Every file is opened relative to a descriptor of the /proc/PID directory taken when the source is opened: it
/// names that process (its struct pid), not the number. Once the process is gone, opening through it fails (ENOENT),
/// so a pid reused by another process meanwhile (another user's, say, while -Confirm waits) is never read, cleared
/// or reported under the first process's name: the first one exited.
/// </remarks>
internal sealed unsafe class ProcPageSource : IPageSource
{
    private readonly string _dir;
    private int _dirFd;
    private int _pagemapFd = -1;
    private bool _mappingsRead;

    private readonly string? _startTime;

    private ProcPageSource(int pid, string name, int dirFd)
    {
        ProcessId = pid;
        Name = name;
        _dir = "/proc/" + pid;
        _dirFd = dirFd;
        var stat = ReadAt(dirFd, "stat");
        _startTime = StartTimeOf(stat);
        _memoryMark = MemoryMarkOf(stat);
    }

    /// <summary>
    /// Where the memory of the program running when the source was opened put its code and stack (/proc/PID/stat fields 26,
    /// 27 and 28: startcode, endcode, startstack), or null where the kernel shows zeros (no memory, or no permission to see
    /// them): an exec lays the new program out afresh, which tells it from the old one where nothing was pinned to tell it by
    /// (a leader that was a zombie when pagemap was opened).
    /// </summary>
    private readonly string? _memoryMark;

    private static string? MemoryMarkOf(string? stat)
    {
        const int StartCodeAfterComm = 23; // field 26, counted from field 3 (state)
        int close = stat?.LastIndexOf(')') ?? -1;
        if (stat is null || close < 0 || close + 2 >= stat.Length) return null;
        var fields = stat[(close + 2)..].Split(' ');
        if (fields.Length <= StartCodeAfterComm + 2) return null;
        var mark = string.Join(' ', fields, StartCodeAfterComm, 3);
        return mark == "0 0 0" ? null : mark;
    }

    /// <summary>Whether the program running now lays its memory out otherwise than the one running when the source was opened.</summary>
    private bool MemoryMarkChanged() => _memoryMark is not null && MemoryMarkOf(ReadAt(DirFd, "stat")) is { } now && now != _memoryMark;

    /// <summary>
    /// The /proc/PID descriptor. A source used again after <see cref="Dispose"/> (a tracker that outlived it) opens
    /// /proc/PID anew, and only while the process there started when this one did (else -1: every open fails EBADF,
    /// which reads as exited).
    /// </summary>
    private int DirFd
    {
        get
        {
            if (_dirFd >= 0) return _dirFd;
            int fd = FileNative.OpenAt(FileNative.AT_FDCWD, _dir, FileNative.O_PATH | FileNative.O_DIRECTORY | FileNative.O_CLOEXEC, 0);
            if (fd < 0) return -1;
            if (_startTime is null || StartTimeOf(ReadAt(fd, "stat")) != _startTime) { Native.Close(fd); return -1; }
            if (Interlocked.CompareExchange(ref _dirFd, fd, -1) != -1) Native.Close(fd);
            return _dirFd;
        }
    }

    /// <summary>Field 22 of /proc/PID/stat, the start time in clock ticks after boot; null where there is none.</summary>
    private static string? StartTimeOf(string? stat)
    {
        const int StartTimeAfterComm = 19; // field 22, counted from field 3 (state)
        int close = stat?.LastIndexOf(')') ?? -1;
        if (stat is null || close < 0 || close + 2 >= stat.Length) return null;
        var fields = stat[(close + 2)..].Split(' ');
        return fields.Length > StartTimeAfterComm ? fields[StartTimeAfterComm] : null;
    }

    /// <summary>The process id.</summary>
    public int ProcessId { get; }
    /// <summary>The process name (comm).</summary>
    public string Name { get; }
    /// <summary>The page size in bytes.</summary>
    public int PageSize => Environment.SystemPageSize;
    /// <summary>What the kernel behind this source supports.</summary>
    public KernelFeatures Features => KernelProbe.Current;

    /// <summary>Throws PlatformNotSupported off Linux.</summary>
    public static void EnsureLinux()
    {
        if (!OperatingSystem.IsLinux())
            throw new EngineException(EngineError.PlatformNotSupported,
                $"The /proc interface (pagemap, clear_refs, smaps) exists only on Linux; this is {RuntimeInformation.OSDescription}. " +
                "Use an emulated process (New-EmulatedProcess) to work with soft-dirty semantics here.");
    }

    /// <summary>Opens a process; throws ProcessNotFound when there is none with that id.</summary>
    public static ProcPageSource Open(int pid)
    {
        EnsureLinux();
        PidNamespace.EnsureProcIsOwn(pid);
        int dirFd = pid <= 0 ? -1 : FileNative.OpenAt(FileNative.AT_FDCWD, "/proc/" + pid, FileNative.O_PATH | FileNative.O_DIRECTORY | FileNative.O_CLOEXEC, 0);
        if (dirFd < 0)
            throw Unopened(pid, pid <= 0 ? Errno.ENOENT : Marshal.GetLastPInvokeError(), pid >= Emulation.EmulatedProcess.FirstProcessId
                ? $"No process with id {pid}: ids from {Emulation.EmulatedProcess.FirstProcessId} on are emulated processes' (no real pid is that high). Give the emulated process with -Emulator, or pipe it."
                : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"No process with id {pid} (no /proc/{pid})."));  // -5, never ar-SA's "\u061c-5"
        var name = ReadAt(dirFd, "comm", out int commErrno)?.TrimEnd('\n');
        if (name is null)
        {
            Native.Close(dirFd);
            // /proc mounted with hidepid=noaccess (1) shows another user's /proc/PID but refuses what is in it.
            if (commErrno is Errno.EACCES or Errno.EPERM)
                throw new EngineException(EngineError.PermissionDenied,
                    $"Permission denied reading /proc/{pid}/comm ({Errno.Name(commErrno)}): this /proc lets the caller see process {pid} but not read it (hidepid). Run as its user or as root.", pid, commErrno);
            throw Unopened(pid, commErrno, $"No process with id {pid}.");
        }
        // /proc/TID exists for every thread too (unlisted): its files show the process's memory, but the results, the
        // tracking epoch and the write-tracking state would be kept under the thread's id, so a soft-dirty clear made
        // through it would go unseen by the process's own chain. A thread's id is no process id.
        int? group = ThreadGroupOf(dirFd, out int statusErrno);
        // Unread for want of descriptors, a thread's id passed for a process's (round 29): its clear went unseen by the process's chain.
        if (group is null && Errno.IsResourceLimit(statusErrno))
        {
            Native.Close(dirFd);
            throw ResourceLimitError.For($"Reading /proc/{pid}/status failed", statusErrno, $"Whether {pid} is a process or a thread of one is unknown, so nothing was done", pid);
        }
        if (group is int tgid && tgid != pid)
        {
            Native.Close(dirFd);
            throw new EngineException(EngineError.ProcessNotFound,
                $"No process with id {pid}: {pid} is a thread ({name}) of process {tgid}. Use -Id {tgid}.", pid, Errno.ESRCH);
        }
        return new ProcPageSource(pid, name, dirFd);
    }

    /// <summary>
    /// ProcessNotFound (<paramref name="message"/>), or ResourceLimit where the open failed for want of descriptors or memory
    /// (EMFILE, ENFILE, ENOMEM): the process may well exist, and saying it does not would be a wrong answer.
    /// </summary>
    internal static EngineException Unopened(int pid, int errno, string message) => Errno.IsResourceLimit(errno)
        ? ResourceLimitError.For($"Opening /proc/{pid} failed", errno, $"Nothing is known about process {pid}", pid)
        : new EngineException(EngineError.ProcessNotFound, message, pid, Errno.ENOENT);

    /// <summary>The errno of opening /proc/<paramref name="pid"/> now (0 where it opens).</summary>
    internal static int ProbeOpen(int pid)
    {
        int fd = FileNative.OpenAt(FileNative.AT_FDCWD, "/proc/" + pid.ToString(System.Globalization.CultureInfo.InvariantCulture), FileNative.O_PATH | FileNative.O_DIRECTORY | FileNative.O_CLOEXEC, 0);
        if (fd < 0) return Marshal.GetLastPInvokeError();
        Native.Close(fd);
        return 0;
    }

    /// <summary>The Tgid: of the status of the task <paramref name="dirFd"/> names; null where it cannot be read.</summary>
    private static int? ThreadGroupOf(int dirFd, out int errno)
    {
        var status = ReadAt(dirFd, "status", out errno);
        if (status is null) return null;
        foreach (var line in status.Split('\n'))
            if (line.StartsWith("Tgid:", StringComparison.Ordinal) && int.TryParse(line.AsSpan(5).Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var tgid))
                return tgid;
        return null;
    }

    /// <summary>A small /proc file of the process <paramref name="dirFd"/> names; null where it cannot be read (gone).</summary>
    private static string? ReadAt(int dirFd, string file) => ReadAt(dirFd, file, out _);

    /// <summary>The same, with the errno of a failed open (0 where the open succeeded).</summary>
    private static string? ReadAt(int dirFd, string file, out int errno)
    {
        errno = 0;
        int fd = FileNative.OpenAt(dirFd, file, FileNative.O_RDONLY | FileNative.O_CLOEXEC, 0);
        if (fd < 0) { errno = Marshal.GetLastPInvokeError(); return null; }
        try
        {
            var buffer = new byte[4096]; // comm and stat are far shorter; status has Tgid: in its first lines
            int done = 0;
            while (done < buffer.Length)
            {
                nint n;
                fixed (byte* p = &buffer[done]) n = Native.Read(fd, p, (nuint)(buffer.Length - done));
                if (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR) continue;
                if (n < 0) return null;
                if (n == 0) break;
                done += (int)n;
            }
            return Encoding.UTF8.GetString(buffer, 0, done);
        }
        finally { Native.Close(fd); }
    }

    /// <summary>Whether the process this source opened still exists (not whichever now has its pid).</summary>
    internal bool Alive => ReadAt(DirFd, "stat") is not null;

    /// <summary>
    /// Whether thread <paramref name="tid"/> is a live thread of the process this source opened (its task/TID, through
    /// the /proc/PID descriptor). A tool that attaches to a thread id found by path (ptrace) asks this once the thread
    /// is stopped: a process that exited meanwhile may have passed its pid, or a thread its id, to another process.
    /// </summary>
    internal bool OwnsThread(int tid)
    {
        int dir = DirFd;
        if (dir < 0) return false;
        int fd = FileNative.OpenAt(dir, "task/" + tid.ToString(System.Globalization.CultureInfo.InvariantCulture), FileNative.O_PATH | FileNative.O_DIRECTORY | FileNative.O_CLOEXEC, 0);
        if (fd < 0) return false;
        Native.Close(fd);
        return Alive;
    }

    /// <summary>A new read-only descriptor of this process's pagemap (the caller closes it): opened through the /proc/PID descriptor, never by path.</summary>
    internal int NewPagemapDescriptor() => OpenProc("pagemap", Native.O_RDONLY);

    /// <inheritdoc/>
    public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters)
    {
        var file = withCounters ? "smaps" : "maps";
        // The pagemap descriptor pins the mm before maps is read: maps and smaps are read a buffer at a time, and
        // the kernel ends the text early (a silent EOF) where the mm goes away between two reads (exit, exec), so a
        // list cut short would pass for the whole one; and pagemap opened after an exec would read the new program's
        // pages under the old program's mappings. The mm gone after the read says both.
        EngineException? pagemapFailed = null;
        if (_pagemapFd < 0)
        {
            // A kernel thread has no mm to pin (ESRCH for root, EACCES for others): its empty maps says what it is below.
            try { OpenPagemap(); }
            catch (EngineException e) { pagemapFailed = e; }
        }
        if (_mapsFd < 0) _mapsFd = OpenProc("maps", Native.O_RDONLY);
        var text = ReadWholeFile(file);
        if (text.Length == 0 && IsKernelThread())
            throw new EngineException(EngineError.InvalidArgument, $"Process {ProcessId} ({Name}) is a kernel thread: it has no user memory to read.", ProcessId);
        if (text.Length == 0 && (_mappingsRead || !Alive || IsZombie()))
            throw Exited($"reading {file}");
        if (pagemapFailed is not null) throw pagemapFailed;
        if (text.Length != 0 && OldMmGone()) throw ExitedOrExecuted($"reading {file}");
        _mappingsRead = true;
        return MapsParser.Parse(text, ProcessId);
    }

    private int _mapsFd = -1;
    private bool _noProcmapQuery;

    /// <inheritdoc/>
    /// <remarks>PROCMAP_QUERY where the kernel has it (6.11+), else a new read of maps.</remarks>
    public bool MappingUnchanged(MemoryMapping mapping, ulong start, ulong end)
    {
        // VMAs that split or moved their boundaries (mprotect, a heap that grows) still hold the same memory: every
        // VMA over the range must, with no hole between them.
        IReadOnlyList<MemoryMapping>? fresh = null;
        for (ulong at = start; at < end;)
        {
            MemoryMapping? now = null;
            bool found = false;
            if (_mapsFd >= 0 && !_noProcmapQuery)
            {
                now = ProcmapQuery.At(_mapsFd, at, out bool available);
                if (available) found = true;
                else _noProcmapQuery = true;
            }
            if (!found)
            {
                fresh ??= ReadMappings(withCounters: false);
                foreach (var m in fresh)
                    if (m.Start <= at && at < m.End) { now = m; break; }
            }
            if (now is null || now.Start > at || now.End <= at || !now.SameMemory(mapping)) return false;
            at = now.End;
        }
        return true;
    }

    /// <summary>PF_KTHREAD (include/linux/sched.h) in the flags of /proc/PID/stat (field 9): a kernel thread, no mm.</summary>
    private bool IsKernelThread()
    {
        const ulong PF_KTHREAD = 0x00200000;
        const int FlagsAfterComm = 6; // field 9, counted from field 3 (state)
        try
        {
            var stat = ReadAt(DirFd, "stat") ?? throw new IOException("gone");
            int close = stat.LastIndexOf(')');
            var fields = close > 0 ? stat[(close + 2)..].Split(' ') : Array.Empty<string>();
            return fields.Length > FlagsAfterComm && ulong.TryParse(fields[FlagsAfterComm], out var flags) && (flags & PF_KTHREAD) != 0;
        }
        catch (IOException) { return false; }
    }

    /// <summary>
    /// The process lives, its leader is no zombie and shows memory (maps not empty): a process being killed has threads still
    /// running for a moment after its memory is gone, and shows none.
    /// </summary>
    private bool LeaderHasMemory() => Alive && !IsZombie() && LiveThreads(ProcessId) > 0 && ReadAt(DirFd, "maps") is { Length: > 0 };

    /// <summary>Whether an exec from another thread may be under way now: the leader a zombie while other threads live, or a thread in execve.</summary>
    internal bool ExecUnderWay => ZombieLeaderWithThreads() || ExecWait.UnderWay(ProcessId);

    /// <summary>The leader is a zombie while other threads of the process live (pthread_exit, or an exec from another thread under way).</summary>
    private bool ZombieLeaderWithThreads() => Alive && IsZombie() && LiveThreads(ProcessId) > 0;

    private bool IsZombie()
    {
        try
        {
            var stat = ReadAt(DirFd, "stat") ?? throw new IOException("gone");
            int close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length && (stat[close + 2] == 'Z' || stat[close + 2] == 'X');
        }
        catch (IOException) { return true; }
    }

    /// <summary>The least room a read of a whole /proc file is given (the kernel fills up to a page of text per call anyway).</summary>
    private const int WholeFileReadBytes = 64 * 1024;

    private string ReadWholeFile(string file)
    {
        var path = $"{_dir}/{file}";
        int fd = OpenProc(file, Native.O_RDONLY);
        try
        {
            // One pooled buffer, doubled while the text fills it: maps of a large process run to megabytes.
            var buffer = ArrayPool<byte>.Shared.Rent(WholeFileReadBytes);
            int length = 0;
            try
            {
                while (true)
                {
                    if (buffer.Length - length < WholeFileReadBytes)
                    {
                        var larger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        buffer.AsSpan(0, length).CopyTo(larger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = larger;
                    }
                    nint n;
                    fixed (byte* p = &buffer[length]) n = Native.Read(fd, p, (nuint)(buffer.Length - length));
                    if (n < 0)
                    {
                        int e = Marshal.GetLastPInvokeError();
                        if (e == Errno.EINTR) continue;
                        throw ErrnoError(e, "reading " + path);
                    }
                    if (n == 0) break;
                    length += (int)n;
                }
                return Encoding.UTF8.GetString(buffer, 0, length);
            }
            finally { ArrayPool<byte>.Shared.Return(buffer); }
        }
        finally { Native.Close(fd); }
    }

    /// <inheritdoc/>
    public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination)
    {
        OpenPagemap();
        var bytes = MemoryMarshal.AsBytes(destination);
        long offset = checked((long)(firstPage * PagemapEntry.Size));
        int done = 0;
        while (done < bytes.Length)
        {
            nint n;
            fixed (byte* p = &bytes[done]) n = Native.Pread(_pagemapFd, p, (nuint)(bytes.Length - done), offset + done);
            if (n < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                if (e == Errno.EINTR) continue;
                throw ErrnoError(e, $"reading pagemap at 0x{firstPage * (ulong)PageSize:x}");
            }
            if (n == 0) break;
            done += (int)n;
        }
        int entries = done / PagemapEntry.Size;
        if (entries < destination.Length && (IsGone() || OldMmGone()))
            throw ExitedOrExecuted($"reading pagemap at 0x{firstPage * (ulong)PageSize:x}");
        return entries;
    }

    // pagemap reads 0 bytes once the mm is gone; past the task size it does too, but the process lives on.
    private bool IsGone() => !Alive || IsZombie();

    private int _memFd = -1;

    /// <inheritdoc/>
    public int ReadMemory(ulong address, Span<byte> destination)
    {
        if (_memFd < 0) _memFd = OpenProc("mem", Native.O_RDONLY);
        int done = 0;
        while (done < destination.Length)
        {
            nint n;
            fixed (byte* p = &destination[done]) n = Native.Pread(_memFd, p, (nuint)(destination.Length - done), unchecked((long)(address + (ulong)done)));
            if (n < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                if (e == Errno.EINTR) continue;
                if (e == Errno.EIO || e == Errno.EFAULT) break; // an unmapped or unreadable page ends the read
                throw ErrnoError(e, $"reading memory at 0x{address + (ulong)done:x}");
            }
            // /proc/PID/mem reads 0 bytes only where its mm is gone (an unmapped page is EIO): exited or exec'd.
            if (n == 0) throw ExitedOrExecuted($"reading memory at 0x{address + (ulong)done:x}");
            done += (int)n;
        }
        return done;
    }

    /// <summary>
    /// Throws ProcessExecuted (or ProcessExited) where the memory this source opened is gone. process_vm_readv
    /// finds the process by pid, so after an exec it reads the new program: a reader that used
    /// <see cref="ReadMemoryVector"/> calls this after its last read (an exec is for good, so one check at the end
    /// covers every read before it). Needs the pagemap open (a pagemap read before); otherwise it cannot tell.
    /// </summary>
    public void EnsureSameMemory(string doing)
    {
        if (OldMmGone()) throw ExitedOrExecuted(doing);
    }

    /// <summary>
    /// Opens the pagemap descriptor now where it is not open yet, pinning the memory the process has now: from then on
    /// <see cref="EnsureSameMemory"/> tells an exec (or exit) since. One that cannot be opened is left to the reads that follow.
    /// </summary>
    internal void PinMemory()
    {
        try { OpenPagemap(); }
        catch (EngineException) { }
    }

    private bool _vectorReadRefused;
    private Injection.Ptrace.IoVec[]? _remoteIov;

    /// <summary>
    /// Reads <paramref name="ranges"/> (at most <see cref="Native.IovMax"/>, page-aligned) one after another into
    /// <paramref name="destination"/> with one process_vm_readv: one copy from the process's pages (a pread of
    /// /proc/PID/mem copies twice, through a kernel bounce page, one page a time). Returns the bytes read from the
    /// start, fewer where a range reaches a page this call cannot read (unmapped, or in a mapping without read
    /// permission, which /proc/PID/mem still reads), or -1 where the kernel refuses the call for this process
    /// (seccomp, Yama, no ptrace access): then, and for what was not read, use <see cref="ReadMemory"/>.
    /// </summary>
    /// <remarks>
    /// The kernel pins the pages it reads (FOLL_PIN): a private anonymous page still shared with a fork parent
    /// or child is unshared (copied) first, as a write would, keeping its soft-dirty and uffd-wp bits; so
    /// <see cref="Tracking.PageWalk.ReadChunks"/> never hands it such a page. It finds the process by pid, so
    /// after an exec it reads the new program: its callers end with <see cref="EnsureSameMemory"/>.
    /// </remarks>
    public int ReadMemoryVector(ReadOnlySpan<AddressRange> ranges, Span<byte> destination)
    {
        if (_vectorReadRefused) return -1;
        if (ranges.Length > Native.IovMax) throw new ArgumentOutOfRangeException(nameof(ranges), $"at most {Native.IovMax} ranges a call");
        var remote = _remoteIov ??= new Injection.Ptrace.IoVec[Native.IovMax];
        ulong total = 0;
        for (int i = 0; i < ranges.Length; i++)
        {
            remote[i] = new Injection.Ptrace.IoVec { Base = (void*)ranges[i].Start, Length = (nuint)ranges[i].Size };
            total += ranges[i].Size;
        }
        if (total > (ulong)destination.Length) throw new ArgumentException("The destination is smaller than the ranges.", nameof(destination));
        fixed (byte* d = destination)
        fixed (Injection.Ptrace.IoVec* r = remote)
        {
            var local = new Injection.Ptrace.IoVec { Base = d, Length = (nuint)total };
            while (true)
            {
                nint n = Native.ProcessVmReadv(ProcessId, &local, 1, r, (nuint)ranges.Length, 0);
                if (n >= 0) return (int)n;
                int e = Marshal.GetLastPInvokeError();
                if (e == Errno.EINTR) continue;
                // EFAULT: the first page cannot be read this way; ESRCH: gone (ReadMemory says so, with its error).
                if (e == Errno.EFAULT || e == Errno.ESRCH || e == Errno.ENOMEM) return 0;
                _vectorReadRefused = true; // EPERM, ENOSYS, EINVAL: /proc/PID/mem from now on
                return -1;
            }
        }
    }

    /// <inheritdoc/>
    public int WriteClearRefs(ReadOnlySpan<byte> text)
    {
        int fd = OpenProc("clear_refs", Native.O_WRONLY);
        try
        {
            nint n;
            fixed (byte* p = text) n = Native.Write(fd, p, (nuint)text.Length);
            if (n < 0)
            {
                int e = Marshal.GetLastPInvokeError();
                // kstrtoint: EINVAL for what is no number or no type, ERANGE for a number past an int; the emulator says the same.
                if (e == Errno.EINVAL || e == Errno.ERANGE)
                    throw new EngineException(EngineError.InvalidArgument,
                        $"/proc/{ProcessId}/clear_refs rejected '{Encoding.ASCII.GetString(text).Trim()}' ({Errno.Name(e)}): valid types are 1 to 5.", ProcessId, e);
                throw ErrnoError(e, "writing clear_refs");
            }
            // A zombie (or a process that exited after the open) has no mm: the kernel accepts the write
            // and does nothing, so a success here would be a lie.
            if (IsGone()) throw Exited("writing clear_refs");
            return (int)n;
        }
        finally { Native.Close(fd); }
    }

    /// <inheritdoc/>
    public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions)
    {
        OpenPagemap();
        int found;
        try { found = PagemapScanIoctl.Scan(_pagemapFd, ref request, regions, ProcessId, IsGone); }
        catch (EngineException ex) when (ex.Error == EngineError.ProcessExited && OldMmGone())
        {
            throw ExitedOrExecuted($"scanning pagemap at 0x{request.Start:x}");
        }
        // The leader a zombie for a moment: an exec under way (round 22: 2 of 60 Enable-WriteTracking said ProcessExited).
        catch (EngineException ex) when (ex.Error == EngineError.ProcessExited && ExecutedOrExited($"scanning pagemap at 0x{request.Start:x}") is { Error: EngineError.ProcessExecuted } executed)
        {
            throw executed;
        }
        // An mm that is gone has no page tables: the scan would say "nothing there" of an exec'd process.
        if (found == 0 && OldMmGone()) throw ExitedOrExecuted($"scanning pagemap at 0x{request.Start:x}");
        return found;
    }

    /// <summary>Opens pagemap once; safe from two threads at once (a split scan's halves), the loser closes its own.</summary>
    private void OpenPagemap()
    {
        if (Volatile.Read(ref _pagemapFd) >= 0) return;
        int fd = OpenProc("pagemap", Native.O_RDONLY);
        // Whether the descriptor holds memory at all: one opened on a leader that exited (pthread_exit, or an exec under way)
        // has none and reads 0 bytes from the start, which says nothing about an exec later.
        ulong entry;
        nint n;
        do { n = Native.Pread(fd, (byte*)&entry, (nuint)sizeof(ulong), 0); }
        while (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        if (Interlocked.CompareExchange(ref _pagemapFd, fd, -1) != -1) { Native.Close(fd); return; }
        _memoryPinned = n == sizeof(ulong);
    }

    /// <summary>The pagemap descriptor was opened on the process's memory (not on a leader without any): <see cref="OldMmGone"/> then means that memory is gone.</summary>
    private volatile bool _memoryPinned;

    /// <summary>
    /// Whether the memory pinned when pagemap was opened is gone while threads of the process live on: only an exec does that
    /// (a leader's pthread_exit leaves the memory to the other threads, and an exit leaves no thread alive, or soon none).
    /// </summary>
    internal bool MemoryReplacedNow => MemoryReplaced();

    private bool MemoryReplaced() => _memoryPinned && OldMmGone() && Alive && LiveThreads(ProcessId) > 0;

    /// <summary>How long <see cref="SettleExec"/> waits for an exec under way to end (the leader a zombie until the exec'ing
    /// thread, once the other threads are gone, takes its id).</summary>
    private static readonly TimeSpan ExecSettle = ExecWait.Bound;

    /// <summary>How often <see cref="OpenProc"/> opens again a file an exec under way denied (a program exec'ing again and again).</summary>
    private const int ExecRetries = 5;

    /// <summary>
    /// The error for a process whose pinned memory an exec replaced (<see cref="MemoryReplaced"/>): ProcessExecuted, once the exec
    /// has ended (the leader no zombie) or <see cref="ExecSettle"/> has passed; ProcessExited where every thread died meanwhile
    /// (a kill, which takes the threads one by one).
    /// </summary>
    private EngineException SettleExec(string doing)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < ExecSettle)
        {
            if (Dead()) return ExitedError(doing);
            if (LeaderHasMemory()) return Executed(doing);
            Thread.Sleep(1);
        }
        return Executed(doing);
    }

    /// <summary>
    /// Whether the mm the open pagemap descriptor was opened on is gone (the kernel answers its reads with 0
    /// bytes then, also at page 0, which lies inside every task size): the process exited or exec'd.
    /// </summary>
    private bool OldMmGone()
    {
        if (_pagemapFd < 0) return false;
        ulong entry;
        nint n;
        do { n = Native.Pread(_pagemapFd, (byte*)&entry, (nuint)sizeof(ulong), 0); }
        while (n < 0 && Marshal.GetLastPInvokeError() == Errno.EINTR);
        return n == 0;
    }

    /// <summary>
    /// The rule for a descriptor whose mm went away under a process that still lives (not gone, not a zombie): the
    /// only way a living process drops its mm is exec (an exiting one has no mm left either, but then maps is empty).
    /// </summary>
    private EngineException ExitedOrExecuted(string doing) =>
        MemoryReplaced() ? SettleExec(doing) : IsGone() || ReadWholeFileOrEmpty("maps").Length == 0 ? Exited(doing) : Executed(doing);

    private string ReadWholeFileOrEmpty(string file)
    {
        try { return ReadWholeFile(file); }
        catch (EngineException) { return ""; }
    }

    private EngineException Executed(string doing) =>
        new(EngineError.ProcessExecuted, $"Process {ProcessId} ({Name}) exec'd another program while {doing}: the memory being read belonged to the old program, so no result is given. Run the command again on the new program.", ProcessId, Errno.ESRCH);

    private int OpenProc(string file, int flags)
    {
        var path = $"{_dir}/{file}";
        int dir = DirFd;
        if (dir < 0) throw Exited("opening " + path);
        int retries = 0;
        while (true)
        {
            int fd = FileNative.OpenAt(dir, file, flags | Native.O_CLOEXEC, 0);
            if (fd >= 0) return fd;
            int e = Marshal.GetLastPInvokeError();
            if (e == Errno.EINTR) continue;
            // A leader that exited while threads live on has no memory, and the kernel gives its files to root then: an exec
            // from another thread shows that for a moment, and a user who is not root was refused (round 22: 1 in 400).
            // Tried again until the exec ends; a leader that stays a zombie (pthread_exit) is refused as before.
            if (e is Errno.EACCES or Errno.EPERM && retries++ < ExecRetries
                && (ZombieLeaderWithThreads() ? ExecWait.LeaderReplaced(ProcessId) : ExecWait.DeniedForAMoment(ProcessId))) continue;
            // The same exec, seen a moment later: the leader's id handed to the exec'ing thread (root saw ProcessExited).
            if (e is Errno.ENOENT or Errno.ESRCH && retries++ < ExecRetries
                && (ZombieLeaderWithThreads() ? ExecWait.LeaderReplaced(ProcessId) : Alive && !IsZombie())) continue;
            // Out of descriptors (ulimit -n) or memory: a limit of this process, nothing about the target.
            if (Errno.IsResourceLimit(e))
                throw ResourceLimitError.For($"Opening {path} of process {ProcessId} failed", e, "Nothing is known of the process from it", ProcessId);
            throw ErrnoError(e, "opening " + path);
        }
    }

    private EngineException Exited(string doing) =>
        // A zombie leader with threads still live is also what an exec from another thread shows while it runs (round 22: a
        // root flake, 2 in 400); the memory pinned before is gone then, where pthread_exit leaves it.
        MemoryReplaced() ? SettleExec(doing)
        : ZombieLeaderWithThreads()
            ? ExecWait.LeaderReplaced(ProcessId) ? Executed(doing)
            // The main thread called pthread_exit and others run on: the kernel shows an empty maps, smaps and pagemap
            // for the zombie leader, which is no sign the process exited.
            : new EngineException(EngineError.ProcIOError, $"Process {ProcessId} ({Name}) runs on, but its main thread has exited (pthread_exit): the kernel no longer shows the process's memory through /proc/{ProcessId} (maps, smaps and pagemap read as empty), so {doing} found nothing; no result is given.", ProcessId, Errno.ESRCH)
            // Seen gone, a zombie or empty a moment ago, and now a process whose leader lives: only an exec makes a zombie
            // leader live again (its thread takes the leader's id).
            : LeaderHasMemory() ? Executed(doing)
            : ExitedError(doing);

    /// <summary>
    /// After a failure on a thread a tracer held (which nothing but a death or an exec takes out of its stop): ProcessExited where
    /// within <see cref="ExecSettle"/> no thread is left alive, ProcessExecuted where the memory pinned before (or the leader)
    /// was replaced meanwhile; null where neither shows (the failure stands).
    /// </summary>
    internal EngineException? ExecutedOrExited(string doing)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            if (Dead()) return ExitedError(doing);
            if (_memoryPinned && OldMmGone()) return SettleExec(doing);
            if (IsZombie() && ExecWait.LeaderReplaced(ProcessId)) return Executed(doing);
            if (MemoryMarkChanged() && LeaderHasMemory()) return Executed(doing);
            if (clock.Elapsed >= ExecSettle) return null;
            Thread.Sleep(1);
        }
    }

    /// <summary>
    /// Gone, or no thread alive, on two looks a moment apart: while an exec hands the leader's id to the exec'ing thread, a
    /// listing of the threads may miss that thread for an instant (round 22: an exec said ProcessExited, 1 in 40 unprivileged).
    /// </summary>
    private bool Dead()
    {
        if (Alive && LiveThreads(ProcessId) > 0) return false;
        Thread.Sleep(2);
        return !Alive || LiveThreads(ProcessId) == 0;
    }

    private EngineException ExitedError(string doing) =>
        new(EngineError.ProcessExited, $"Process {ProcessId} ({Name}) exited while {doing}; its result would be incomplete, so none is given.", ProcessId, Errno.ESRCH);

    /// <summary>The threads of <paramref name="pid"/> that are neither zombies nor dead (/proc/PID/task/TID/stat).</summary>
    internal static int LiveThreads(int pid)
    {
        int live = 0;
        try
        {
            foreach (var task in System.IO.Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                try
                {
                    var stat = System.IO.File.ReadAllText(System.IO.Path.Combine(task, "stat"));
                    int close = stat.LastIndexOf(')');
                    if (close > 0 && close + 2 < stat.Length && stat[close + 2] is not ('Z' or 'X')) live++;
                }
                catch (System.IO.IOException ex) { ProcReadFailure.ThrowIfLimit(ex, System.IO.Path.Combine(task, "stat")); } // gone meanwhile
            }
        }
        // Out of descriptors or memory, "no thread alive" made a living process ProcessExited (round 30).
        catch (System.IO.IOException ex) { ProcReadFailure.ThrowIfLimit(ex, $"/proc/{pid}/task"); }
        catch (UnauthorizedAccessException) { }
        return live;
    }

    private EngineException ErrnoError(int errno, string doing)
    {
        switch (errno)
        {
            case Errno.ENOENT:
            case Errno.ESRCH:
                return IsGone() ? Exited(doing) : new EngineException(EngineError.ProcIOError, $"{doing}: {Errno.Describe(errno)}", ProcessId, errno);
            case Errno.EACCES:
            case Errno.EPERM:
                // A zombie's /proc files belong to no one who may write them (clear_refs gives EACCES to its
                // own user): a process that is gone has exited, whatever the errno says.
                if (IsGone()) return Exited(doing);
                return new EngineException(EngineError.PermissionDenied,
                    $"Permission denied {doing} of process {ProcessId} ({Name}): reading pagemap and smaps needs ptrace access to the process " +
                    "(the same user, or CAP_SYS_PTRACE), and clear_refs is writable only by its owner (or root); PFNs need CAP_SYS_ADMIN. Run as that user or as root.",
                    ProcessId, errno);
            default:
                return new EngineException(EngineError.ProcIOError, $"{doing} of process {ProcessId}: {Errno.Describe(errno)}", ProcessId, errno);
        }
    }

    /// <summary>Closes the open /proc file descriptors.</summary>
    public void Dispose()
    {
        if (_pagemapFd >= 0) { Native.Close(_pagemapFd); _pagemapFd = -1; }
        if (_memFd >= 0) { Native.Close(_memFd); _memFd = -1; }
        if (_mapsFd >= 0) { Native.Close(_mapsFd); _mapsFd = -1; }
        if (_dirFd >= 0) { Native.Close(_dirFd); _dirFd = -1; }
    }
}
