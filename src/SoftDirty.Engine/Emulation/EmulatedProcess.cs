using System;
using System.Threading;

namespace SoftDirty.Emulation;

/// <summary>
/// An emulated Linux process: VMAs, a page table of packed PTEs, frames, swap, and the kernel's soft-dirty,
/// pagemap, clear_refs and PAGEMAP_SCAN rules of a <see cref="KernelProfile"/>. It implements
/// <see cref="IPageSource"/> in the kernel's formats, so code above cannot tell it from a real process.
/// Process ids are the emulator's own, counting from <see cref="FirstProcessId"/>. System-call-like
/// operations fail as the kernel does, with <see cref="EngineError.InvalidArgument"/> (EINVAL),
/// <see cref="EngineError.EmulatorNotMapped"/> (ENOMEM) or <see cref="EngineError.SegmentationFault"/>,
/// and change nothing when they fail. Every operation takes the machine's lock (shared with forked children).
/// </summary>
public sealed partial class EmulatedProcess : IPageSource
{
    /// <summary>log2 of the page size (PAGE_SHIFT).</summary>
    public const int PageShift = 12;
    /// <summary>The page size in bytes (PAGE_SIZE, 4 KiB).</summary>
    public const ulong PageBytes = 1UL << PageShift;
    /// <summary>x86-64 TASK_SIZE with 4-level paging: the end of the 47-bit user address space.</summary>
    public const ulong TaskSize = 0x7FFF_FFFF_F000;
    /// <summary>Where top-down mmap placement starts (below the emulated stack).</summary>
    public const ulong MmapBase = 0x7FFF_F000_0000;
    /// <summary>vm.mmap_min_addr.</summary>
    public const ulong MinMmapAddress = 0x1_0000;
    /// <summary>A PMD-mapped transparent huge page: 2 MiB.</summary>
    public const ulong HugePageBytes = PageBytes << PageTable.LeafShift;
    /// <summary>
    /// The first emulated process id: PID_MAX_LIMIT (include/linux/threads.h, 4 Mi on 64-bit), above every real pid
    /// (pid_max is at most that). It was 100000, a pid real processes have where pid_max is raised (systemd sets it to
    /// 4 Mi): an emulated object's ProcessId piped into a /proc cmdlet bound -Id and read or cleared that real process.
    /// </summary>
    public const int FirstProcessId = 1 << 22;
    private const ulong PageOffsetMask = PageBytes - 1;

    private static int s_lastProcessId = FirstProcessId - 1;

    private readonly PhysicalMemory _mem;
    private readonly PageTable _pt = new();
    private readonly VmaList _vmas;
    private readonly ulong _softDirtyBit;
    private long _rssPages, _peakRssPages, _guardPages;
    private long _readFaults, _writeFaults, _cowFaults, _sdFaults, _uffdFaults, _swapIns;

    /// <summary>A new process with no mappings.</summary>
    /// <param name="name">The comm name.</param>
    /// <param name="profile">The kernel; null for <see cref="KernelProfile.Default"/> (6.18).</param>
    /// <param name="privileged">Whether pagemap readers see PFNs and swap offsets (CAP_SYS_ADMIN).</param>
    public EmulatedProcess(string name = "emulated", KernelProfile? profile = null, bool privileged = false)
        : this(name, profile ?? KernelProfile.Default, privileged, new PhysicalMemory())
    {
    }

    private EmulatedProcess(string name, KernelProfile profile, bool privileged, PhysicalMemory memory)
    {
        Name = name;
        Profile = profile;
        Privileged = privileged;
        _mem = memory;
        Interlocked.Increment(ref memory.Processes);
        lock (memory.Lock) memory.Members.Add(new WeakReference<EmulatedProcess>(this));
        ProcessId = Interlocked.Increment(ref s_lastProcessId);
        _softDirtyBit = profile.SoftDirtyEnabled ? Pte.SoftDirty : 0;
        _vmas = new VmaList(profile.StickySoftDirtyOnMerge);
    }

    /// <summary>
    /// Whether another emulated process shares this one's memory (a fork's parent or child, alive or not): its writes
    /// to a shared mapping change this process's pages with no bit of this process's page table set.
    /// </summary>
    internal bool SharesMemory => Volatile.Read(ref _mem.Processes) > 1;

    /// <summary>A new process on the named kernel profile ("6.1", "6.18", "6.19").</summary>
    public static EmulatedProcess Create(string name = "emulated", string profile = KernelProfile.DefaultName,
        bool noSoftDirty = false, bool privileged = false)
        => new(name, KernelProfile.Get(profile, noSoftDirty), privileged);

    /// <summary>
    /// Holds the process still until disposed: its machine's lock, which every operation takes (other threads' writes wait),
    /// for the moment between reading soft-dirty and clearing it (<see cref="Tracking.SoftDirtyWindow"/>). Re-entrant on this thread.
    /// Ctrl+C (<paramref name="cancel"/>) ends the wait: a workload of billions of accesses in another runspace holds the lock
    /// throughout, and a Clear-SoftDirty waiting for it could not be stopped.
    /// </summary>
    internal IDisposable HoldStill(CancellationToken cancel)
    {
        while (!Monitor.TryEnter(_mem.Lock, HoldStillRetry)) cancel.ThrowIfCancellationRequested();
        return new Still(_mem.Lock);
    }

    /// <summary>How long one wait in <see cref="HoldStill"/> lasts before Ctrl+C is checked again.</summary>
    private static readonly TimeSpan HoldStillRetry = TimeSpan.FromMilliseconds(5);

    /// <summary>A hold of the machine's lock, released once.</summary>
    private sealed class Still(object gate) : IDisposable
    {
        private object? _gate = gate;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _gate, null) is { } g) Monitor.Exit(g);
        }
    }

    /// <summary>The emulator's process id (from <see cref="FirstProcessId"/> on; never a real pid).</summary>
    public int ProcessId { get; }
    /// <summary>The comm name.</summary>
    public string Name { get; }
    /// <summary>The page size in bytes.</summary>
    public int PageSize => (int)PageBytes;
    /// <summary>The kernel whose rules the process follows.</summary>
    public KernelProfile Profile { get; }
    /// <summary>Pagemap shows PFNs and swap entries (the reader has CAP_SYS_ADMIN).</summary>
    public bool Privileged { get; }

    /// <summary>The faults taken so far.</summary>
    public FaultCounts Faults
    {
        get { lock (_mem.Lock) return new(_readFaults, _writeFaults, _cowFaults, _sdFaults, _uffdFaults, _swapIns); }
    }

    /// <summary>Resident set size (VmRSS) in bytes: mapped frames, the zero pages not counted.</summary>
    public ulong RssBytes { get { lock (_mem.Lock) return (ulong)_rssPages * PageBytes; } }
    /// <summary>Peak RSS (VmHWM) in bytes; clear_refs "5" resets it to the current RSS.</summary>
    public ulong PeakRssBytes { get { lock (_mem.Lock) return (ulong)_peakRssPages * PageBytes; } }
    /// <summary>Swap slots in use on this machine.</summary>
    public int SwapSlotsUsed { get { lock (_mem.Lock) return _mem.SwapSlotsUsed; } }

    /// <summary>Nothing to release: the emulated machine is managed memory.</summary>
    public void Dispose() { }

    // ---- errors -------------------------------------------------------------------------------------

    private EngineException Invalid(string what) =>
        new(EngineError.InvalidArgument, $"{what} (EINVAL).", ProcessId, Errno.EINVAL);

    private EngineException NotMapped(string op, ulong address, int errno = Errno.ENOMEM) =>
        new(EngineError.EmulatorNotMapped,
            $"{op}: 0x{address:x} is not mapped in emulated process {ProcessId} ({Errno.Name(errno)}).", address, errno);

    private EngineException SealedAt(string op, ulong address) =>
        new(EngineError.EmulatorMappingSealed,
            $"{op}: the mapping at 0x{address:x} in emulated process {ProcessId} is sealed (mseal) (EPERM).", address, Errno.EPERM);

    private EngineException Segfault(ulong address, string reason) =>
        new(EngineError.SegmentationFault,
            $"Segmentation fault at 0x{address:x} in emulated process {ProcessId} ({Name}): {reason}. Nothing was changed.", address);

    private static ulong PageAlign(ulong length) => (length + PageOffsetMask) & ~PageOffsetMask;

    /// <summary>Checks an (address, length) pair as the VMA system calls do; returns the page-aligned end.</summary>
    private ulong CheckRange(string op, ulong address, ulong length)
    {
        if ((address & PageOffsetMask) != 0) throw Invalid($"{op}: address 0x{address:x} is not page-aligned");
        if (length == 0) throw Invalid($"{op}: length is zero");
        ulong len = PageAlign(length);
        if (len == 0 || len > TaskSize || address > TaskSize - len)
            throw Invalid($"{op}: 0x{address:x} + 0x{length:x} lies beyond the user address space (0x{TaskSize:x})");
        return address + len;
    }

    // ---- VMA list -----------------------------------------------------------------------------------

    /// <summary>
    /// The lock every system call of this process takes (its machine's memory lock, reentrant): held over a check
    /// of the mappings and the calls that check decides, no call of another thread comes between them.
    /// </summary>
    internal object MemoryLock => _mem.Lock;

    /// <summary>Whether a VMA covers <paramref name="address"/> (mincore's ENOMEM test; the scenario runner's truth record uses it).</summary>
    internal bool IsMapped(ulong address)
    {
        lock (_mem.Lock) return _vmas.VmaLookup(address) != null;
    }

    /// <summary>Splits the VMA that straddles <paramref name="address"/> (and a huge page that straddles it).</summary>
    private void SplitAt(ulong address)
    {
        if ((address & (HugePageBytes - 1)) != 0) SplitHugeLeaf(address >> PageShift >> PageTable.LeafShift);
        _vmas.Split(address);
    }
}
