using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using SoftDirty.Injection;

namespace SoftDirty.Tracking;

/// <summary>
/// The WriteProtect method: the target's mappings registered for userfaultfd async write-protect
/// (WP_ASYNC | WP_UNPOPULATED, UFFDIO_REGISTER MODE_WP), then PAGEMAP_SCAN with WriteProtectMatching |
/// CheckWriteProtectAsync and mask = return = Written: get-and-reset in one ioctl. The kernel lets only a
/// process register its own memory: this process uses a userfaultfd of its own, a source that implements
/// <see cref="IAsyncWriteProtectSource"/> (the emulator) registers itself, and another real process is
/// registered from inside by syscall injection (<see cref="RemoteWriteProtect"/>), its tracking kept in it
/// between commands. Of a real process only private anonymous memory is registered (<see cref="Registers"/>).
/// </summary>
internal sealed class WriteProtectTracker : IDirtyTracker
{
    private readonly Func<MemoryMapping, bool>? _selector;
    // A real process (this one or another): only its private anonymous memory is registered (Registers).
    private readonly bool _real;
    private readonly IAsyncWriteProtectSource? _emulated;
    private readonly Userfaultfd? _uffd;
    private readonly List<(AddressRange Range, IDisposable? Registration)> _registered = new();
    private bool _armed;
    // Another real process: registered from outside by syscall injection (RemoteWriteProtect); what is
    // registered is the kernel's to say (PAGEMAP_SCAN with CheckWriteProtectAsync fails on anything else).
    private readonly ProcPageSource? _remote;
    private WriteTrackingState? _state;
    private bool _ownsTracking;
    // This command's entry in the users of a tracking no one kept (WriteTrackingStore.Join): the last user to end disables it.
    private readonly Guid _token = Guid.NewGuid();
    private bool _joined;
    // The reset of the shared tracking this tracker counts from: its own last reset, or the one it resumed from. Another
    // command or session that resets the same process (a save, a watch, a migration) replaces it in the state file.
    private Guid _expectedReset;

    /// <summary>
    /// A tracker for <paramref name="source"/>. Another real process must allow syscall injection
    /// (<see cref="InjectionSupport.Check"/>); when write tracking is not enabled there yet, this tracker enables
    /// it and disables it again on <see cref="Dispose"/>, else it uses (and leaves) the enabled tracking.
    /// <paramref name="cancel"/> (Ctrl+C) ends the wait for the process's write-tracking lock, which another command or
    /// session may hold for as long as it likes.
    /// </summary>
    public WriteProtectTracker(IPageSource source, Func<MemoryMapping, bool>? selector = null, CancellationToken cancel = default)
    {
        Source = source;
        _selector = selector;
        _real = PageWalk.IsRealProcess(source);
        if (source is IAsyncWriteProtectSource emulated)
        {
            // An emulated kernel without PAGEMAP_SCAN or UFFD_FEATURE_WP_ASYNC (6.1) answers as a real one does, not with the
            // EINVAL of its registration (round 30: InvalidArgument, as if the caller's arguments were wrong).
            if (!IsSupported(source, out var missing))
                throw new EngineException(EngineError.WriteProtectNotSupported, missing!, source.ProcessId);
            _emulated = emulated;
        }
        else if (source is ProcPageSource proc && proc.ProcessId != Environment.ProcessId)
        {
            _remote = proc;
            // Two commands enabling at once: one enables, the other uses it. The checks come under the lock too: another
            // command's injection (its ptrace) has ended by then, so it is not taken for a debugger holding the process.
            using (WriteTrackingStore.Lock(proc.ProcessId, cancel))
            {
                if (InjectionSupport.Check(proc.ProcessId, proc.Features) is { } refused) throw refused;
                _state = WriteTrackingStore.Load(proc.ProcessId);
                InjectionSteps.Mark("checks, state lookup");
                if (_state is null)
                {
                    if (InjectionSupport.ForeignTracking(proc) is { } inUse) throw inUse;
                    var ranges = Ranges(Spans());
                    InjectionSteps.Mark("maps (writable ranges)");
                    _state = RemoteWriteProtect.Enable(proc, ranges, _token, cancel); // saved with this command listed as its user
                    _ownsTracking = true;
                }
                // Another command's tracking for itself alone (a watch, a migration) is used too: whoever ends last disables it.
                _joined = _ownsTracking || WriteTrackingStore.Join(_state, _token, enabledHere: false);
            }
            _expectedReset = _state.ResetId;
        }
        else
        {
            if (!IsSupported(source, out var reason))
                throw new EngineException(EngineError.WriteProtectNotSupported, reason!, source.ProcessId);
            // Counted, so that Search-PageMap -WriteProtect of this process is refused while this tracker runs (SelfWriteTracking).
            SelfWriteTracking.Enter(cancel);
            try { _uffd = Userfaultfd.Create(); }
            catch
            {
                SelfWriteTracking.Leave();
                throw;
            }
            _selfCounted = 1;
        }
    }
    // 1 while this tracker of this process is counted in SelfWriteTracking (left once, on Dispose).
    private int _selfCounted;

    /// <summary>Whether this method can track <paramref name="source"/>, and why not.</summary>
    public static bool IsSupported(IPageSource source, out string? reason)
    {
        reason = null;
        if (!source.Features.PagemapScan) { reason = source.Features.PagemapScanReason ?? "PAGEMAP_SCAN is missing (Linux 6.7+)."; return false; }
        if (!source.Features.UffdWriteProtectAsync) { reason = source.Features.UffdWriteProtectAsyncReason ?? "userfaultfd async write-protect is missing."; return false; }
        if (source is IAsyncWriteProtectSource) return true;
        if (source.ProcessId != Environment.ProcessId)
        {
            if (source is ProcPageSource && InjectionSupport.Check(source.ProcessId, source.Features) is { } refused)
            {
                reason = $"WriteProtect registers another process from inside it by syscall injection, which is refused here ({refused.Error}): {refused.Message}";
                return false;
            }
            if (source is not ProcPageSource)
            {
                reason = $"Process {source.ProcessId} ({source.Name}) is neither this process, a real process nor an emulated one.";
                return false;
            }
        }
        return true;
    }

    /// <summary>The write-tracking state of the other process this tracker uses, null for this process or an emulated one.</summary>
    public WriteTrackingState? RemoteState => _state;

    private static List<AddressRange> Ranges(List<PageSpan> spans) => spans.Select(s => new AddressRange(s.Start, s.End)).ToList();

    /// <inheritdoc/>
    public TrackingMethod Method => TrackingMethod.WriteProtect;
    /// <inheritdoc/>
    public IPageSource Source { get; }
    /// <inheritdoc/>
    public string Description { get; set; } = "WriteProtect: userfaultfd async write-protect and PAGEMAP_SCAN WRITTEN.";

    // Only writable mappings: nothing else can be written, and a reserved PROT_NONE region (the .NET GC
    // reserves hundreds of GiB) has no pages to protect, so PAGEMAP_SCAN would report its holes as written.
    // A mapping made writable later is a new range: registered then, its present pages counted once.
    // Of a real process, only private anonymous memory (Registers), 64 GiB of it in all (RegistrationBudget); the other
    // writable mappings go to unregistered.
    private List<PageSpan> Spans(out List<PageSpan> unregistered) => Spans(Source.ReadMappings(false), out unregistered);

    private List<PageSpan> Spans(IReadOnlyList<MemoryMapping> mappings, out List<PageSpan> unregistered)
    {
        bool Writable(MemoryMapping m) => (m.Protection & Protection.Write) != 0 && (_selector is null || _selector(m));
        if (!_real)
        {
            unregistered = new List<PageSpan>();
            return PageWalk.DataSpans(mappings, Writable);
        }
        var registered = RegistrationBudget.Choose(mappings, Writable);
        unregistered = PageWalk.DataSpans(mappings, m => Writable(m) && !registered.Contains(m.Start));
        return PageWalk.DataSpans(mappings, m => Writable(m) && registered.Contains(m.Start));
    }

    private List<PageSpan> Spans() => Spans(out _);

    /// <summary>
    /// Whether the write tracking of a real process registers <paramref name="mapping"/>: private anonymous memory only
    /// (what the kernel's vma_is_anonymous takes: no file, shmem, memfd, System V segment, hugetlb or special mapping
    /// behind it). In a VMA of any other kind registered for write-protect, a zap (MADV_DONTNEED, reclaim, a hole punched
    /// in the file) leaves a uffd-wp marker where a protected page was, and nothing but the tracking's end removes it:
    /// on Linux 6.18 a process that installed a guard region there (MADV_GUARD_INSTALL, which zaps and retries until no
    /// entry is left) spun in madvise for ever (round 23). The present pages of those mappings count as written at every
    /// look instead (never a miss): an image compares them with its parent's hashes, and a watch or a migration compares
    /// them by content (<see cref="ContentSelection"/>). An emulated process registers every writable mapping, as it asks.
    /// </summary>
    /// <remarks>
    /// Nor a mapping larger than <see cref="MaxRegisteredBytes"/>: the first reset puts a uffd-wp marker (WP_UNPOPULATED)
    /// in every page of a registered mapping that was never used, which makes the page tables of the whole mapping, 8 bytes
    /// a page of the process's kernel memory that only munmap or its exit frees (measured on 6.18: a 64 GiB MAP_NORESERVE
    /// reservation with one page used went from 88 KiB of page tables to 128 MiB, and stayed so after Disable-WriteTracking).
    /// A sanitizer's shadow memory (terabytes, mostly never used) would have needed tens of GiB and driven the process or
    /// the machine out of memory (round 25).
    /// Nor a MAP_DROPPABLE mapping where smaps was read (<see cref="DroppableFlag"/>): the kernel refuses to register one, and
    /// each offer is an injection, a stop of the process, at every look (round 32). Where only maps was read it is offered,
    /// refused, and counts the same.
    /// </remarks>
    internal static bool Registers(MemoryMapping mapping) =>
        !mapping.Shared && mapping.Inode == 0 && mapping.End - mapping.Start <= MaxRegisteredBytes
        && mapping.Kind is MappingKind.Anonymous or MappingKind.NamedAnonymous or MappingKind.Heap or MappingKind.Stack
        && !mapping.VmFlags.Contains(DroppableFlag);

    /// <summary>smaps VmFlags of a MAP_DROPPABLE mapping (VM_DROPPABLE, Linux 6.11+), which userfaultfd does not take.</summary>
    internal const string DroppableFlag = "dp";

    /// <summary>The largest mapping write tracking registers: 64 GiB, whose markers may take 128 MiB of page tables (<see cref="Registers"/>).</summary>
    internal const ulong MaxRegisteredBytes = 64UL << 30;

    /// <summary>The present pages of <paramref name="unregistered"/> (Registers), added to <paramref name="regions"/>, sorted; a reason for the over-count, or null.</summary>
    private string? AddUnregistered(List<PageRegion> regions, List<PageSpan> unregistered, CancellationToken cancel)
    {
        if (unregistered.Count == 0) return null;
        regions.AddRange(PageWalk.PresentRegions(Source, unregistered, cancel: cancel));
        regions.Sort((x, y) => x.Start.CompareTo(y.Start));
        return $"{unregistered.Count} writable mapping span(s) from 0x{unregistered[0].Start:x} are not registered for write-protect (not private anonymous memory, larger than 64 GiB or past the 64 GiB the tracking registers in all, or refused by the kernel: MAP_DROPPABLE)";
    }

    /// <summary>
    /// Registers mappings not yet registered; returns the spans that are new (all their pages count as written). A span the
    /// kernel refuses (a MAP_DROPPABLE mapping, VM_PFNMAP or VM_IO memory) goes to <paramref name="refused"/>: its present
    /// pages count at every look, as another process's do (ScanRemote). Before, it was left out: a watch of this PowerShell
    /// never saw a write into a MAP_DROPPABLE mapping of its own (round 23).
    /// </summary>
    private List<PageSpan> RegisterNew(List<PageSpan> spans, List<PageSpan>? refused = null)
    {
        var known = new HashSet<AddressRange>(_registered.Select(r => r.Range));
        var fresh = new List<PageSpan>();
        foreach (var s in spans)
        {
            var range = new AddressRange(s.Start, s.End);
            if (known.Contains(range)) continue;
            IDisposable? reg = null;
            if (_emulated is not null) reg = _emulated.RegisterAsyncWriteProtect(s.Start, s.End);
            else if (!_uffd!.Register(s.Start, s.End)) { refused?.Add(s); continue; }
            _registered.Add((range, reg));
            fresh.Add(s);
        }
        return fresh;
    }

    private List<PageSpan> RegisteredSpans(List<PageSpan> spans)
    {
        var known = new HashSet<AddressRange>(_registered.Select(r => r.Range));
        return spans.Where(s => known.Contains(new AddressRange(s.Start, s.End))).ToList();
    }

    /// <summary>
    /// Get (and with <paramref name="reset"/>, reset) the written pages of each span. A span whose VMA was
    /// replaced since it was registered (a multi-threaded process maps and unmaps all the time: the .NET
    /// runtime's W^X mappings, for one) makes CheckWriteProtectAsync fail with EPERM: that span is registered
    /// again and all its present pages count as written, so nothing is missed.
    /// </summary>
    private List<PageRegion> Scan(List<PageSpan> spans, bool reset, CancellationToken cancel) =>
        ScanThen(spans, reset, (reader, unregistered, template, found, one) =>
        {
            foreach (var span in unregistered)
            {
                one.Clear();
                one.Add(span);
                if (_emulated is not null) _registered.Add((new AddressRange(span.Start, span.End), _emulated.RegisterAsyncWriteProtect(span.Start, span.End)));
                else _uffd!.Register(span.Start, span.End);
                found.AddRange(PageWalk.PresentRegions(Source, one, cancel: cancel));
                if (reset) Rearm(reader, one, template, cancel);
            }
        }, cancel);

    /// <summary>
    /// The scan both kinds of tracking share: the Written pages of every registered span, then
    /// <paramref name="registerRest"/> registers the spans the kernel refused (reader, those spans, the scan
    /// template, the regions found so far, a one-span scratch list); the regions come back sorted.
    /// </summary>
    private List<PageRegion> ScanThen(List<PageSpan> spans, bool reset,
        Action<PageMapReader, List<PageSpan>, PagemapScanRequest, List<PageRegion>, List<PageSpan>> registerRest, CancellationToken cancel)
    {
        var template = WrittenTemplate(reset);
        var reader = new PageMapReader(Source);
        var unregistered = new List<PageSpan>();
        var found = ScanEach(reader, spans, template, unregistered, cancel);
        if (unregistered.Count == 0) return found;
        registerRest(reader, unregistered, template, found, new List<PageSpan>(1));
        found.Sort((x, y) => x.Start.CompareTo(y.Start));
        return found;
    }

    /// <summary>PAGEMAP_SCAN for the Written pages, on registered VMAs only; with <paramref name="reset"/> they are write-protected again.</summary>
    private static PagemapScanRequest WrittenTemplate(bool reset) => new()
    {
        Flags = (reset ? PagemapScanFlags.WriteProtectMatching : 0) | PagemapScanFlags.CheckWriteProtectAsync,
        CategoryMask = PageCategory.Written,
        ReturnMask = PageCategory.Written,
    };

    /// <summary>
    /// Write-protects a newly registered span again (a WP_MATCHING scan whose regions are not wanted); a span
    /// replaced once more in between (EPERM) is left: the next look finds it new.
    /// </summary>
    private static void Rearm(PageMapReader reader, List<PageSpan> one, PagemapScanRequest template, CancellationToken cancel)
    {
        try { foreach (var _ in reader.ScanRegions(one, template, cancel)) { } }
        catch (EngineException ex) when (ex.Error == EngineError.PermissionDenied) { }
    }

    /// <summary>Scans each span alone; a span the kernel refuses (EPERM: its VMA is not registered) goes to <paramref name="unregistered"/>.</summary>
    private static List<PageRegion> ScanEach(PageMapReader reader, List<PageSpan> spans, PagemapScanRequest template, List<PageSpan> unregistered, CancellationToken cancel)
    {
        var found = new List<PageRegion>();
        var one = new List<PageSpan>(1);
        foreach (var span in spans)
        {
            one.Clear();
            one.Add(span);
            int before = found.Count;
            try { found.AddRange(reader.ScanRegions(one, template, cancel)); }
            catch (EngineException ex) when (ex.Error == EngineError.PermissionDenied)
            {
                found.RemoveRange(before, found.Count - before);
                unregistered.Add(span);
            }
        }
        return found;
    }

    /// <summary>
    /// Scans the spans of another process from outside. A span the kernel refuses (EPERM: its VMA is not
    /// registered, so it was mapped since the last look) is registered by injection and counts as wholly
    /// written this once (<paramref name="fresh"/> gets it); with <paramref name="reset"/> it is then
    /// write-protected like the others. A range the kernel will not register counts wholly every time:
    /// never a false negative.
    /// </summary>
    private List<PageRegion> ScanRemote(List<PageSpan> spans, bool reset, List<AddressRange> fresh, CancellationToken cancel) =>
        ScanThen(spans, reset, (reader, unregistered, template, found, one) =>
        {
            var accepted = RemoteWriteProtect.Register(_remote!, _state!, Ranges(unregistered), cancel);
            for (int i = 0; i < unregistered.Count; i++)
            {
                var span = unregistered[i];
                found.Add(new PageRegion(span.Start, span.End, PageCategory.Written));
                fresh.Add(new AddressRange(span.Start, span.End));
                if (!accepted[i] || !reset) continue;
                one.Clear();
                one.Add(span);
                Rearm(reader, one, template, cancel);
            }
        }, cancel);

    /// <summary>
    /// The state of the tracking in the other process now, read under its lock: WriteTrackingNotEnabled where it
    /// was disabled since (by another command or session), or its descriptor is no longer the userfaultfd it was
    /// (closed, or another one under that number): nothing is then injected into the process or registered with a
    /// descriptor it owns. Returns whether the tracking's last reset is still the one this tracker counts from.
    /// </summary>
    private bool Reload()
    {
        var now = WriteTrackingStore.Load(_remote!.ProcessId);
        // An exec ends the tracking with the memory it tracked: that is what happened, not a Disable-WriteTracking (round 16).
        if (now is null) _remote.EnsureSameMemory("its write tracking was used");
        // An exec under way shows a zombie leader, whose descriptors /proc lists as none: the userfaultfd (close-on-exec) ends
        // with that exec, which is what happened (round 23: said WriteTrackingNotEnabled, 6 in 900 Enables as root).
        // The exec is looked for before the memory is checked again: between the state read and the first check, the exec'ing
        // thread may have taken the leader's id and run on a CPU (no zombie leader, its syscall file "running") with the old
        // memory still in place; it is waited for then (stop 36's CI: WriteTrackingNotEnabled, 1 in 40 Enables as root).
        if (now is null && (_remote.ExecUnderWay || ExecWait.MayBeUnderWay(_remote.ProcessId)) && _remote.ExecutedOrExited("its write tracking was used") is { } ended) throw ended;
        if (now is null) _remote.EnsureSameMemory("its write tracking was used");
        if (now is null)
            throw new EngineException(EngineError.WriteTrackingNotEnabled,
                $"The write tracking of process {_remote.ProcessId} was disabled while this command used it (Disable-WriteTracking in another command or session, or the process closed its userfaultfd {_state!.Descriptor}); the writes since the last look cannot be told. Nothing was injected.", _remote.ProcessId);
        bool same = now.ResetId == _expectedReset && now.Inode == _state!.Inode && now.Descriptor == _state.Descriptor;
        _state = now;
        return same;
    }

    /// <summary>
    /// Whether the last <see cref="Collect"/> found the tracking reset by another command or session since this
    /// tracker's last look: the pages written before that reset are known to no one, so it reported every present
    /// page of the watched mappings as written (never a silent miss).
    /// </summary>
    public bool ResetElsewhere { get; private set; }

    /// <summary>The step (<see cref="InjectionSteps"/>) that ends when a reset's write-protect of another process is done.</summary>
    internal const string StepProtected = "PAGEMAP_SCAN write-protect (reset)";
    /// <summary>The step that ends when a collection's scan of another process (with its re-protect, when asked) is done.</summary>
    internal const string StepCollected = "PAGEMAP_SCAN collect";

    private DirtyPageSet CollectRemote(bool rearm, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        using var held = WriteTrackingStore.Lock(_remote!.ProcessId, cancel);
        ResetElsewhere = !Reload();
        // With smaps: its write-protect registrations come from the same read as the spans (ForeignSpans).
        var mappings = Source.ReadMappings(true);
        var all = Spans(mappings, out var unregistered);
        var foreign = ForeignSpans(all, mappings, cancel);
        var spans = foreign.Count == 0 ? all : all.Except(foreign).ToList();
        var fresh = new List<AddressRange>();
        if (rearm)
        {
            // Recorded before the kernel re-protects anything: a command stopped between the two (Ctrl+C, kill -9)
            // must leave a reset the others see, or an image chain counting from the last one would miss the
            // writes this scan takes away.
            RemoteWriteProtect.RecordReset(_state!);
            _expectedReset = _state!.ResetId;
        }
        var regions = ScanRemote(spans, rearm, fresh, cancel);
        InjectionSteps.Mark(StepCollected);
        if (ResetElsewhere) regions = PageWalk.PresentRegions(Source, spans, cancel: cancel, withFlags: mappings).ToList();
        if (foreign.Count > 0)
        {
            regions.AddRange(PageWalk.PresentRegions(Source, foreign, cancel: cancel, withFlags: mappings));
            regions.Sort((x, y) => x.Start.CompareTo(y.Start));
        }
        var notRegistered = AddUnregistered(regions, unregistered, cancel);
        ulong scanned = 0, ps = (ulong)Source.PageSize;
        foreach (var s in all) scanned += (s.End - s.Start) / ps;
        foreach (var s in unregistered) scanned += (s.End - s.Start) / ps;
        var b = new RangeListBuilder();
        foreach (var r in regions) b.Add(r.Start, r.End);
        fresh.Sort((x, y) => x.Start.CompareTo(y.Start));
        var nb = new RangeListBuilder();
        foreach (var r in fresh) nb.Add(r.Start, r.End);
        return new DirtyPageSet(Method, Source.PageSize, b.Build(), scanned, clock.Elapsed)
        {
            NewMappingRanges = nb.Build(),
            MappingsWithFlags = mappings,
            ResetElsewhere = ResetElsewhere,
            OverCountReason = foreign.Count == 0 ? notRegistered
                : $"{foreign.Count} mapping span(s) from 0x{foreign[0].Start:x} are registered with a userfaultfd of the process's own, which the module's write tracking cannot share"
                  + (notRegistered is null ? "" : "; " + notRegistered),
        };
    }

    /// <summary>
    /// The spans whose VMA another userfaultfd of the process registered since the tracking was enabled (at enabling, such
    /// a registration is WriteTrackingInUse). Registered for async write-protect, PAGEMAP_SCAN takes them as tracked: a reset
    /// re-protected the process's own tracking (its record of writes lost) and each of its own resets hid writes from this
    /// one. Each span is registered again with this tracking's userfaultfd: the kernel says EBUSY for a VMA of another
    /// userfaultfd (and takes one of this tracking's or of none). Those spans are never scanned with a reset; their present
    /// pages count at every look, as a range the kernel will not register does.
    /// </summary>
    /// <remarks>
    /// The check injects, so it is made where the process holds another userfaultfd that /proc/PID/fd shows, and else where
    /// the registrations of the spans (<see cref="RemoteWriteProtect.RegistrationDigest"/>, from the same smaps read as
    /// <paramref name="spans"/>) are not those the last check, or the enabling, found to be this tracking's alone
    /// (<see cref="WriteTrackingState.OwnRegistrations"/>): a userfaultfd the process keeps where /proc/PID/fd does not show
    /// it (in flight on a socket, held by a child) registered a range the module then re-protected, which took the process's
    /// own record of writes away, and the process's own resets of it (PAGEMAP_SCAN of /proc/self/pagemap) hid writes from
    /// every increment (round 32).
    /// </remarks>
    private List<PageSpan> ForeignSpans(List<PageSpan> spans, IReadOnlyList<MemoryMapping> mappings, CancellationToken cancel)
    {
        if (spans.Count == 0) return new List<PageSpan>();
        bool named = WriteTrackingStore.UserfaultfdDescriptors(_remote!.ProcessId).Any(fd => fd != _state!.Descriptor);
        var ranges = Ranges(spans);
        string digest = RemoteWriteProtect.RegistrationDigest(mappings, ranges);
        if (!named && digest == _state!.OwnRegistrations) return new List<PageSpan>();
        // Another userfaultfd's registration is EBUSY. Any other refusal is a range the process mapped or unmapped since it
        // was listed (posix_spawn's stack, a thread's), or one the kernel will not track: the scan meets it unregistered and
        // counts it as such a range (ScanRemote). Taken for the process's own, the over-count was said to be its userfaultfd's
        // (round 32's merge: a migration of a process that spawns programs warned so, Round 18's test).
        var errors = RemoteWriteProtect.RegisterErrors(_remote, _state!, ranges, cancel);
        var foreign = spans.Where((_, i) => errors[i] == Errno.EBUSY).ToList();
        // Each registration of that read is this tracking's now: recorded (or forgotten, where another's remains), so that the
        // next look checks again only where they changed. Saved under the tracking's lock, which the caller holds.
        // A record that cannot be saved only makes the next look check again.
        string? own = foreign.Count == 0 ? digest : null;
        if (own != _state!.OwnRegistrations)
        {
            _state.OwnRegistrations = own;
            try { WriteTrackingStore.Save(_state); }
            catch (Exception ex) when (ex is System.IO.IOException or UnauthorizedAccessException or EngineException) { }
        }
        return foreign;
    }

    /// <inheritdoc/>
    public void Reset(CancellationToken cancel = default)
    {
        if (_remote is not null)
        {
            using var held = WriteTrackingStore.Lock(_remote.ProcessId, cancel);
            Reload();
            var mappings = Source.ReadMappings(true);
            var current = Spans(mappings, out _);
            var foreign = ForeignSpans(current, mappings, cancel);
            if (foreign.Count > 0) current = current.Except(foreign).ToList();
            InjectionSteps.Mark("maps (reset)");
            // Recorded first, as in CollectRemote: a reset cut short still counts as one for every other command.
            RemoteWriteProtect.RecordReset(_state!);
            _expectedReset = _state!.ResetId;
            InjectionSteps.Mark("state file save (reset)");
            var refused = ProtectAll(current, cancel);
            InjectionSteps.Mark(StepProtected);
            if (refused.Count > 0) ScanRemote(refused, reset: true, new List<AddressRange>(), cancel); // mapped since: registered now
            _armed = true;
            return;
        }
        var spans = Spans();
        RegisterNew(spans);
        Scan(RegisteredSpans(spans), reset: true, cancel);
        _armed = true;
    }

    /// <summary>Pieces of a span write-protected in parallel by <see cref="ProtectAll"/>: whole page tables, 64 MiB at least.</summary>
    private const ulong ProtectPieceBytes = 64UL << 20;

    /// <summary>What one page table maps (2 MiB of 4 KiB pages, 32 MiB of 16 KiB): pieces end on its boundaries.</summary>
    private static ulong PageTableSpan => PageTableGeometry.HostTableSpan;

    /// <summary>How many pieces <see cref="ProtectAll"/> runs at once: every core (the bench sets 1 to compare).</summary>
    internal static int ProtectParallelism { get; set; } = Environment.ProcessorCount;

    /// <summary>
    /// Write-protects every page of <paramref name="spans"/> of another process that is not protected (a reset
    /// that needs no list of them), the spans cut into pieces of whole page tables that run in parallel. The
    /// cost is the kernel's, one PTE update per present page (262,144 for 1 GiB); pieces under different page
    /// tables take different locks, so it scales with idle cores. Each piece is one PAGEMAP_SCAN with
    /// WP_MATCHING and no output vector (the kernel's write-protect-only walk). Returns the spans the kernel
    /// refused (EPERM: not registered, so mapped since the last look).
    /// </summary>
    private List<PageSpan> ProtectAll(List<PageSpan> spans, CancellationToken cancel)
    {
        var pieces = Pieces(spans);
        var refused = new bool[spans.Count];
        // Through the source's /proc/PID descriptor: never the pagemap of another process that took the pid since.
        int fd = _remote!.NewPagemapDescriptor();
        try
        {
            var options = new ParallelOptions { CancellationToken = cancel, MaxDegreeOfParallelism = Math.Max(1, ProtectParallelism) };
            Parallel.ForEach(pieces, options, piece =>
            {
                var req = WrittenTemplate(reset: true);
                req.Start = piece.Start;
                req.End = piece.End;
                try { PagemapScanIoctl.Scan(fd, ref req, Span<PageRegion>.Empty, Source.ProcessId); }
                catch (EngineException ex) when (ex.Error == EngineError.PermissionDenied) { refused[piece.Span] = true; }
            });
        }
        catch (AggregateException all) when (all.InnerExceptions.OfType<EngineException>().FirstOrDefault() is { } first)
        {
            // A piece's own error (the process exited during PAGEMAP_SCAN), not .NET's wrapper of the parallel loop; an exec,
            // which takes the memory as an exit does, said so (round 22).
            if (first.Error == EngineError.ProcessExited && _remote.ExecutedOrExited("write-protecting its pages") is { Error: EngineError.ProcessExecuted } executed) throw executed;
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(first).Throw();
        }
        finally { Native.Close(fd); }
        return spans.Where((_, i) => refused[i]).ToList();
    }

    /// <summary>
    /// The pieces of <see cref="ProtectAll"/>: each span cut on page-table boundaries into pieces of
    /// <see cref="ProtectPieceBytes"/> or more, never past the span's end (a piece that ran past it write-protected
    /// the mappings behind it, and past the top of the address space PAGEMAP_SCAN failed with EFAULT).
    /// </summary>
    internal static List<(int Span, ulong Start, ulong End)> Pieces(IReadOnlyList<PageSpan> spans)
    {
        var pieces = new List<(int Span, ulong Start, ulong End)>();
        for (int i = 0; i < spans.Count; i++)
        {
            var s = spans[i];
            for (ulong at = s.Start; at < s.End;)
            {
                ulong end = (at + ProtectPieceBytes) / PageTableSpan * PageTableSpan; // ends on a page-table boundary
                if (end <= at || end >= s.End || s.End - end < ProtectPieceBytes / 2) end = s.End;  // no small tail piece
                pieces.Add((i, at, end));
                at = end;
            }
        }
        return pieces;
    }

    /// <inheritdoc/>
    public DirtyPageSet Collect(bool rearm = true, CancellationToken cancel = default)
    {
        if (!_armed) throw new InvalidOperationException("Reset the tracker before collecting.");
        if (_remote is not null) return CollectRemote(rearm, cancel);
        var clock = Stopwatch.StartNew();
        var spans = Spans(out var unregistered);
        var fresh = RegisterNew(spans, unregistered);
        unregistered.Sort((x, y) => x.Start.CompareTo(y.Start));
        var tracked = RegisteredSpans(spans);
        var all = new List<PageRegion>();
        ulong scanned = 0, ps = (ulong)Source.PageSize;
        foreach (var s in tracked) scanned += (s.End - s.Start) / ps;
        foreach (var s in unregistered) scanned += (s.End - s.Start) / ps;
        all.AddRange(Scan(tracked, rearm, cancel));
        // A mapping that appeared since the reset was never protected: its present pages are all new.
        if (fresh.Count > 0)
        {
            all.AddRange(PageWalk.PresentRegions(Source, fresh, cancel: cancel));
            all.Sort((x, y) => x.Start.CompareTo(y.Start));
        }
        var notRegistered = AddUnregistered(all, unregistered, cancel);
        var b = new RangeListBuilder();
        foreach (var r in all) b.Add(r.Start, r.End);
        return new DirtyPageSet(Method, Source.PageSize, b.Build(), scanned, clock.Elapsed) { OverCountReason = notRegistered };
    }

    /// <summary>Leaves the write tracking this tracker enabled in another process enabled after <see cref="Dispose"/> (Enable-WriteTracking, memory image chains).</summary>
    public void KeepEnabled(CancellationToken cancel = default)
    {
        if (_remote is null) { _ownsTracking = false; return; }
        using var held = WriteTrackingStore.Lock(_remote.ProcessId, cancel);
        _ownsTracking = false;
        _state = WriteTrackingStore.MarkKept(_remote.ProcessId) ?? _state; // a command that enabled it for itself alone leaves it now
    }

    /// <summary>
    /// Continues from the last reset of tracking enabled earlier in another process (a separate command):
    /// the next <see cref="Collect"/> reports what was written since then.
    /// </summary>
    public void Resume() => Resume(_state?.ResetId ?? Guid.Empty);

    /// <summary>
    /// Continues from the reset <paramref name="reset"/> of tracking enabled earlier in another process (the one an
    /// image chain's parent recorded): the next <see cref="Collect"/> reports what was written since then, or, where
    /// another command reset the tracking since, every present page (<see cref="ResetElsewhere"/>).
    /// </summary>
    public void Resume(Guid reset)
    {
        if (_remote is null || _ownsTracking) throw new InvalidOperationException("Only a tracker of write tracking enabled earlier in another process can resume.");
        _expectedReset = reset;
        _armed = true;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_remote is not null && _joined && _state is not null)
        {
            _state = null;
            try
            {
                using var held = WriteTrackingStore.Lock(_remote.ProcessId, default);
                // Disabled only where no other command uses it and no one (Enable-WriteTracking, an image chain) asked
                // meanwhile to keep it: the first of two watches to end left the other with WriteTrackingNotEnabled before.
                if (WriteTrackingStore.Leave(_remote.ProcessId, _token) is not null)
                    RemoteWriteProtect.Disable(_remote, RemoteWriteProtect.RegisteredRanges(_remote));
            }
            catch (EngineException ex) when (ex.Error == EngineError.ProcessExited || ex.Error == EngineError.ProcessNotFound) { }
            // Not dumpable now: the tracking can be neither checked nor disabled; its state stays for a later command.
            catch (EngineException ex) when (ex.Error == EngineError.PermissionDenied) { }
        }
        foreach (var (_, reg) in _registered) reg?.Dispose();
        _registered.Clear();
        _uffd?.Dispose();
        if (Interlocked.Exchange(ref _selfCounted, 0) == 1) SelfWriteTracking.Leave();
        _armed = false;
    }
}
