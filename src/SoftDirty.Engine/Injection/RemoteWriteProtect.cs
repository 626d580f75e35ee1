using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using SoftDirty.Tracking;

namespace SoftDirty.Injection;

/// <summary>
/// Userfaultfd async write-protect of another process, set up from outside by syscall injection:
/// <see cref="Enable"/> injects userfaultfd(O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY), UFFDIO_API with
/// WP_ASYNC | WP_UNPOPULATED and UFFDIO_REGISTER MODE_WP of each given range, and leaves the descriptor open
/// in the target, so the tracking lives in its page tables between commands. Resetting and reading happen
/// from outside (PAGEMAP_SCAN on /proc/PID/pagemap); <see cref="Register"/> adds ranges mapped later;
/// <see cref="Disable"/> injects UFFDIO_UNREGISTER and close(). Any failure after the userfaultfd was created
/// closes it: nothing is left half-registered.
/// </summary>
internal static class RemoteWriteProtect
{
    /// <summary>
    /// Enables tracking in <paramref name="source"/>'s process and registers <paramref name="ranges"/>; returns the state
    /// (saved). With <paramref name="user"/> (a command enabling it for itself) the state is saved already counted and
    /// listing that command: a PowerShell killed between this save and a later join left a tracking no command counted,
    /// which no later command would ever disable.
    /// </summary>
    public static WriteTrackingState Enable(ProcPageSource source, IReadOnlyList<AddressRange> ranges, System.Guid? user = null, System.Threading.CancellationToken cancel = default)
    {
        int pid = source.ProcessId;
        if (InjectionSupport.Check(pid, source.Features) is { } refused) throw refused;
        if (WriteTrackingStore.Load(pid) is { } existing) return existing;
        // A process whose memory cgroup is at its limit would be killed by the kernel for the userfaultfd made in it (round 33).
        if (MemoryCgroupRoom.Refusal(pid) is { } full) throw full;
        ulong start = WriteTrackingStore.StartTime(pid);
        InjectionSteps.Mark("checks, state lookup");
        using var inject = RemoteSyscalls.Attach(source, cancel);
        // Checked again now that this command traces the process, which no other command can while it does: the caller's check
        // came under its own state folder's lock, which a command of another user or state folder does not take, and such a
        // command's whole enable between the two made this one a second tracking of the process, whose resets and searches
        // (Search-PageMap -WriteProtect) took the other's record of writes with no reset it could see (round 30).
        if (InjectionSupport.ForeignTracking(source) is { } inUse) throw inUse;
        var arch = InjectionArchitecture.Current!;
        // Should this PowerShell die before the state is saved, the target closes the userfaultfd itself (RestoreTrampoline).
        inject.UndoOnAbort(RestoreTrampoline.UndoResult);
        long fd = inject.Call(arch.Userfaultfd, (ulong)(Native.O_CLOEXEC | Native.O_NONBLOCK | UffdAbi.UserModeOnly));
        InjectionSteps.Mark("inject userfaultfd");
        if (InjectionArchitecture.IsError((ulong)fd, out int e))
        {
            // A target out of descriptors (its own ulimit -n, or the system's) supports write tracking as well as any.
            if (Errno.IsResourceLimit(e))
                throw new EngineException(EngineError.ResourceLimit,
                    $"userfaultfd in process {pid} failed: {Errno.Describe(e)}; it was left as it was. The process has no descriptor to spare (its open-file limit, /proc/{pid}/limits, or the system's): let it close some, or raise its limit (prlimit --nofile), and try again.", pid, e);
            bool filtered = InjectionSupport.SeccompMode(pid) == 2 && (e == Errno.EPERM || e == Errno.ENOSYS || e == Errno.EACCES);
            throw new EngineException(filtered ? EngineError.SeccompForbids : EngineError.WriteProtectNotSupported,
                filtered ? $"Process {pid}'s seccomp filter refuses userfaultfd ({Errno.Name(e)}); it was left as it was."
                         : $"userfaultfd in process {pid} failed: {Errno.Describe(e)}; it was left as it was.", pid, e);
        }
        ulong inode;
        string? own = null;
        try
        {
            inject.UndoOnAbort(fd);
            ulong scratch = inject.ArgumentArea;
            var api = new UffdAbi.ApiArg { Api = UffdAbi.Api, Features = UffdAbi.FeatureWpAsync | UffdAbi.FeatureWpUnpopulated };
            inject.Write(scratch, MemoryMarshal.AsBytes(new ReadOnlySpan<UffdAbi.ApiArg>(in api)));
            long r = inject.Call(arch.Ioctl, (ulong)fd, UffdAbi.IoctlApi, scratch);
            InjectionSteps.Mark("write arguments, inject UFFDIO_API");
            if (InjectionArchitecture.IsError((ulong)r, out int apiErr))
            {
                bool filtered = InjectionSupport.SeccompMode(pid) == 2 && (apiErr == Errno.EPERM || apiErr == Errno.ENOSYS);
                throw new EngineException(filtered ? EngineError.SeccompForbids : EngineError.WriteProtectNotSupported,
                    $"UFFDIO_API with WP_ASYNC | WP_UNPOPULATED in process {pid} failed: {Errno.Describe(apiErr)}; the userfaultfd was closed.", pid, apiErr);
            }
            var registered = RegisterAll(inject, (int)fd, ranges);
            InjectionSteps.Mark("write arguments, inject UFFDIO_REGISTER (each range)");
            // Every range this tracking's (none refused: EBUSY, EINVAL): what the first look compares its registrations with.
            if (Array.TrueForAll(registered, e => e == 0)) own = RegistrationDigest(source.ReadMappings(true), ranges);
            // The inode is what every later command matches the descriptor by: a state saved without one (a failed look at
            // fdinfo) was deleted by the next command as stale, the tracking left on in the process for good (round 29).
            inode = WriteTrackingStore.DescriptorInode(pid, (int)fd);
            // An exec from another thread of the process since the userfaultfd was made takes the descriptor with the old
            // memory (close-on-exec): that is what happened, not a failed read of /proc (round 33's merge gate: Round 22's
            // Enable said ProcIOError, 1 in 20).
            if (inode == 0 && source.ExecutedOrExited($"its userfaultfd (descriptor {fd}) was looked up") is { } ended) throw ended;
            if (inode == 0)
                throw new EngineException(EngineError.ProcIOError,
                    $"The userfaultfd made in process {pid} (descriptor {fd}) could not be told from /proc/{pid}/fd and /proc/{pid}/fdinfo; it was closed and nothing is tracked.", pid);
        }
        catch (Exception ex)
        {
            if (CloseAgain(inject, fd, ex) is { } stays) throw stays;
            throw;
        }
        var now = DateTime.UtcNow;
        var state = new WriteTrackingState { ProcessId = pid, StartTime = start, Descriptor = (int)fd, Inode = inode, Enabled = now, ResetId = Guid.NewGuid(), LastReset = now, OwnRegistrations = own };
        if (user is { } token)
        {
            state.Counted = true;
            state.Users.Add(new WriteTrackingUser(Environment.ProcessId, WriteTrackingStore.StartTime(Environment.ProcessId), token));
        }
        InjectionSteps.Mark("fdinfo inode");
        try
        {
            WriteTrackingStore.Save(state);
            inject.UndoOnAbort(-1); // recorded: a state file whose descriptor is gone reads as no tracking, so either order is safe
            InjectionSteps.Mark("state file save");
        }
        catch (EngineException ex)
        {
            if (CloseAgain(inject, fd, ex) is { } stays) throw stays;
            throw;
        }
        catch (Exception ex) when (ex is System.IO.IOException or UnauthorizedAccessException)
        {
            var failed = new EngineException(EngineError.ProcIOError, $"Saving the write-tracking state in {WriteTrackingStore.Folder} failed ({ex.Message}); the userfaultfd in process {pid} was closed.", pid, inner: ex);
            throw CloseAgain(inject, fd, failed) ?? failed;
        }
        return state;
    }

    /// <summary>
    /// Closes the userfaultfd Enable made, once, after <paramref name="cause"/> failed the Enable; null where it is closed (or
    /// went with the process), else the error to throw in place of <paramref name="cause"/>: the same error, saying that the
    /// descriptor stays (round 30: a failed close was ignored, and the error said nothing was left). The trampoline is told
    /// first not to close it again: should this PowerShell die between the two, the descriptor stays, where the other order
    /// could have closed a number the process had reused meanwhile (another thread runs on).
    /// </summary>
    private static EngineException? CloseAgain(RemoteSyscalls inject, long fd, Exception cause)
    {
        // The call that failed never came back (its thread frozen by its cgroup, or asleep, and the wait given up or
        // cancelled): nothing more can be injected, and the thread makes that call when it runs again, then its restore code
        // closes the descriptor, which the undo slot still names. Told not to, it left the userfaultfd open in the process for
        // good after the thaw (round 34).
        if (inject.CallInFlight)
            return cause is EngineException c
                ? new EngineException(c.Error, $"{c.Message.TrimEnd('.')}. The userfaultfd made in process {inject.ProcessId} (descriptor {fd}) is closed by the process itself when the thread runs again.", inject.ProcessId, c.Errno, c)
                : null;
        try
        {
            inject.UndoOnAbort(-1);
            inject.Check($"close of the userfaultfd (descriptor {fd})", InjectionArchitecture.Current!.Close, (ulong)fd);
            return null;
        }
        catch (EngineException ex) when (ex.Error is not (EngineError.ProcessExited or EngineError.ProcessExecuted))
        {
            int pid = inject.ProcessId;
            return new EngineException(cause is EngineException c ? c.Error : EngineError.ProcIOError,
                $"{cause.Message.TrimEnd('.')}. But the close of the userfaultfd made in process {pid} (descriptor {fd}) failed ({ex.Message}): it stays open there, tracking nothing any command records, until the process closes it or exits.",
                pid, ex.Errno, cause);
        }
        catch (EngineException) { return null; } // gone: the descriptor went with the process
    }

    /// <summary>The state of <paramref name="pid"/>; ProcessExited when the process is gone or a zombie (its tracking ended with it), else WriteTrackingNotEnabled when there is none.</summary>
    public static WriteTrackingState Require(int pid) => WriteTrackingStore.Load(pid)
        ?? throw (Ended(pid)
            ? new EngineException(EngineError.ProcessExited, $"Process {pid} has exited: its write tracking ended with it.", pid)
            : new EngineException(EngineError.WriteTrackingNotEnabled, $"Write tracking is not enabled in process {pid}; run Enable-WriteTracking -Id {pid} first.", pid));

    /// <summary>
    /// Whether <paramref name="pid"/> exited: gone, or a zombie leader with no live thread on two looks a moment apart. A zombie
    /// leader with threads live is also an exec under way (round 22), which ends the tracking but not the process; and while
    /// the exec'ing thread takes the leader's id a listing of the threads may miss it for an instant (stop 36's CI run, then 1
    /// in 600 Disables of a target exec'ing every 3 ms said ProcessExited).
    /// </summary>
    private static bool Ended(int pid)
    {
        if (!InjectionSupport.HasExited(pid)) return false;
        if (ProcPageSource.LiveThreads(pid) > 0) return !ExecWait.LeaderReplaced(pid);
        System.Threading.Thread.Sleep(ExecLookAgain);
        return ProcPageSource.LiveThreads(pid) > 0 ? !ExecWait.LeaderReplaced(pid) : InjectionSupport.HasExited(pid);
    }

    /// <summary>How long <see cref="Ended"/> waits before it looks at the threads again.</summary>
    private static readonly TimeSpan ExecLookAgain = TimeSpan.FromMilliseconds(2);

    /// <summary>Registers more ranges with the target's userfaultfd; returns, per range, whether the kernel took it.</summary>
    public static bool[] Register(ProcPageSource source, WriteTrackingState state, IReadOnlyList<AddressRange> ranges, System.Threading.CancellationToken cancel = default) =>
        Array.ConvertAll(RegisterErrors(source, state, ranges, cancel), e => e == 0);

    /// <summary>
    /// As <see cref="Register"/>, with the kernel's answer per range: 0 where it took the range, else its errno (EBUSY: a VMA
    /// of the range is registered with another userfaultfd; EINVAL: one the kernel will not track, or the range no longer
    /// what it was when listed, the process having mapped or unmapped there since).
    /// </summary>
    public static int[] RegisterErrors(ProcPageSource source, WriteTrackingState state, IReadOnlyList<AddressRange> ranges, System.Threading.CancellationToken cancel = default)
    {
        if (ranges.Count == 0) return Array.Empty<int>();
        if (InjectionSupport.Check(source.ProcessId, source.Features) is { } refused) throw refused;
        using var inject = RemoteSyscalls.Attach(source, cancel);
        return RegisterAll(inject, state.Descriptor, ranges, state);
    }

    /// <summary>
    /// Throws WriteTrackingNotEnabled unless descriptor <see cref="WriteTrackingState.Descriptor"/> of the process is
    /// still the userfaultfd the state recorded (its inode): checked with the thread stopped, before each injected
    /// call that names it, so a number the process closed and reused (another thread may still run) is never touched.
    /// </summary>
    private static void EnsureDescriptor(int pid, WriteTrackingState state)
    {
        if (WriteTrackingStore.DescriptorInode(pid, state.Descriptor) != state.Inode)
            throw new EngineException(EngineError.WriteTrackingNotEnabled,
                $"Descriptor {state.Descriptor} of process {pid} is no longer the userfaultfd write tracking made (the process closed it); nothing was injected into it.", pid);
    }

    private static int[] RegisterAll(RemoteSyscalls inject, int fd, IReadOnlyList<AddressRange> ranges, WriteTrackingState? state = null)
    {
        var arch = InjectionArchitecture.Current!;
        ulong scratch = inject.ArgumentArea;
        var done = new int[ranges.Count];
        for (int i = 0; i < ranges.Count; i++)
        {
            if (state is not null) EnsureDescriptor(inject.ProcessId, state);
            var arg = new UffdAbi.RegisterArg { Start = ranges[i].Start, Len = ranges[i].Length, Mode = UffdAbi.ModeWp };
            inject.Write(scratch, MemoryMarshal.AsBytes(new ReadOnlySpan<UffdAbi.RegisterArg>(in arg)));
            long r = inject.Call(arch.Ioctl, (ulong)fd, UffdAbi.IoctlRegister, scratch);
            InjectionArchitecture.IsError((ulong)r, out done[i]); // EINVAL and the like: a range the kernel will not track
        }
        return done;
    }

    /// <summary>
    /// Stops tracking: UFFDIO_UNREGISTER of <paramref name="ranges"/> (those still registered), then close() of
    /// the descriptor, and the state file is removed. Returns false when tracking was not enabled.
    /// </summary>
    public static bool Disable(ProcPageSource source, IReadOnlyList<AddressRange> ranges, System.Threading.CancellationToken cancel = default)
    {
        int pid = source.ProcessId;
        var state = WriteTrackingStore.Load(pid);
        if (state is null) return false;
        if (InjectionSupport.Check(pid, source.Features) is { } refused)
            // Its main thread called pthread_exit after the Enable: the tracking lives on in the other threads (round 31).
            throw refused.Error == EngineError.WriteProtectNotSupported && InjectionSupport.HasExited(pid) && ProcPageSource.LiveThreads(pid) > 0
                ? new EngineException(EngineError.WriteProtectNotSupported,
                    $"Process {pid} runs on, but its main thread has exited (pthread_exit) since its write tracking was enabled: the kernel no longer shows the process's mappings through /proc/{pid}, so nothing can be injected to disable it. Its userfaultfd (descriptor {state.Descriptor}) stays in the process's other threads, and its state is kept, until the process exits.", pid, inner: refused)
                : refused;
        var arch = InjectionArchitecture.Current!;
        using (var inject = RemoteSyscalls.Attach(source, cancel))
        {
            // Should this PowerShell die half-way, the target closes the userfaultfd itself: the tracking ends whole
            // (the state file's descriptor is then gone, which reads as no tracking).
            EnsureDescriptor(pid, state);
            inject.UndoOnAbort(state.Descriptor);
            ulong scratch = inject.ArgumentArea;
            foreach (var range in ranges)
            {
                EnsureDescriptor(pid, state);
                var arg = new UffdAbi.RangeArg { Start = range.Start, Len = range.Length };
                inject.Write(scratch, MemoryMarshal.AsBytes(new ReadOnlySpan<UffdAbi.RangeArg>(in arg)));
                inject.Call(arch.Ioctl, (ulong)state.Descriptor, UffdAbi.IoctlUnregister, scratch); // a range registered elsewhere or not at all: the close below ends it
            }
            inject.UndoOnAbort(-1); // closed once: by the call below, never again by the trampoline (the number may be reused)
            EnsureDescriptor(pid, state);
            inject.Check("close of the userfaultfd", arch.Close, (ulong)state.Descriptor);
        }
        WriteTrackingStore.Delete(pid);
        return true;
    }

    /// <summary>
    /// The mappings of <paramref name="source"/> registered for userfaultfd write-protect ("uw" in smaps
    /// VmFlags), when the process has one userfaultfd (this tracking's): they are unregistered one by one on
    /// <see cref="Disable"/>. With more than one, none: close() ends this tracking's registrations alone.
    /// </summary>
    public static List<AddressRange> RegisteredRanges(ProcPageSource source)
    {
        var ranges = new List<AddressRange>();
        if (WriteTrackingStore.UserfaultfdDescriptors(source.ProcessId).Length != 1) return ranges;
        foreach (var m in source.ReadMappings(true))
            if (m.VmFlags.Contains(UffdWriteProtectFlag)) ranges.Add(new AddressRange(m.Start, m.End));
        return ranges;
    }

    /// <summary>
    /// The VMAs of <paramref name="mappings"/> (read with smaps) registered for userfaultfd write-protect that meet
    /// <paramref name="ranges"/>, as one string: equal only where the same VMAs are registered (<see cref="WriteTrackingState.OwnRegistrations"/>).
    /// </summary>
    internal static string RegistrationDigest(IReadOnlyList<MemoryMapping> mappings, IReadOnlyList<AddressRange> ranges)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        Span<byte> pair = stackalloc byte[2 * sizeof(ulong)];
        int r = 0;
        foreach (var m in mappings)
        {
            if (!m.VmFlags.Contains(UffdWriteProtectFlag)) continue;
            while (r < ranges.Count && ranges[r].End <= m.Start) r++;
            if (r == ranges.Count || ranges[r].Start >= m.End) continue;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(pair, m.Start);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(pair[sizeof(ulong)..], m.End);
            hash.AppendData(pair);
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    /// <summary>VM_UFFD_WP as smaps VmFlags prints it.</summary>
    public const string UffdWriteProtectFlag = "uw";

    /// <summary>
    /// Records a reset (the written pages are about to be collected and re-protected): a new
    /// <see cref="WriteTrackingState.ResetId"/>, saved before the kernel re-protects anything. A record that cannot be
    /// saved stops the reset (the write's error, <see cref="WriteTrackingStore.Save"/>; the state as it was): a reset no other
    /// command can see would make an image chain counting from the last one miss the writes it takes away.
    /// </summary>
    public static void RecordReset(WriteTrackingState state)
    {
        var (id, at) = (state.ResetId, state.LastReset);
        state.ResetId = Guid.NewGuid();
        state.LastReset = DateTime.UtcNow;
        try { WriteTrackingStore.Save(state); }
        catch (Exception ex) when (ex is EngineException or System.IO.IOException or UnauthorizedAccessException)
        {
            (state.ResetId, state.LastReset) = (id, at);
            if (ex is EngineException) throw;
            throw new EngineException(EngineError.ProcIOError,
                $"The write tracking of process {state.ProcessId}: its reset could not be recorded in the state folder ({ex.Message}); nothing was re-protected, so no write is lost.", state.ProcessId, inner: ex);
        }
    }
}
