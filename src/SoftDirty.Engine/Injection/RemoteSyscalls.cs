using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;

namespace SoftDirty.Injection;

/// <summary>
/// Runs system calls inside another process (the technique of CRIU's compel and of debuggers, written here
/// anew): PTRACE_SEIZE and PTRACE_INTERRUPT one thread, save its registers and signal mask, install a
/// <see cref="RestoreTrampoline"/> and park the thread on it, block every signal, then for each call load
/// number and arguments at the trampoline's syscall instruction and run it between a syscall-entry and a
/// syscall-exit stop (PTRACE_SYSCALL). Arguments that point at memory use <see cref="ArgumentArea"/>, a few
/// bytes of the thread's own stack below the red zone (where a signal frame would go), put back afterwards.
/// <see cref="Dispose"/> restores mask, registers, the stack bytes and the trampoline's bytes exactly and
/// detaches. A thread stopped inside a blocking syscall keeps that call's restart code (-ERESTARTSYS and kin)
/// in its saved registers; while calls run the interrupted-syscall word is cleared so the kernel restarts
/// nothing, and after the exact restore the kernel restarts (or fails with EINTR) the original call on the
/// way back to user space, as it does after a signal without a handler.
/// Killed at any moment (kill -9, the OOM killer), the tracer leaves a thread the kernel resumes in a state
/// that goes on as before: stopped as it was (before the trampoline), or on the trampoline, which restores
/// everything itself; no single-step is ever armed, and syscall stops carry PTRACE_O_TRACESYSGOOD.
/// </summary>
internal sealed unsafe class RemoteSyscalls : IDisposable
{
    private readonly InjectionArchitecture _arch;
    private readonly ulong[] _saved;
    private ulong _savedMask, _blockAll;
    private int _memFd = -1;
    private bool _attached;
    private ChildStopGuard? _childGuard;
    private ProcPageSource? _source; // the process as opened: its pinned memory tells an exec from a death
    private bool _borrowed; // the stop is a freeze's (PtraceFreeze): no attach here, no detach either
    private ulong _site;    // the trampoline's address once installed, else 0
    private byte[]? _siteBytes, _argumentBytes;
    private bool _parked;   // the thread's registers point at the trampoline (state that restores itself)
    private bool _masked;   // the thread's signal mask was changed here
    private SeccompFilter? _filter; // the thread's seccomp filters, where it has any: every call is judged first
    private long _undo = -1;        // what the trampoline's undo slot says (see UndoOnAbort)
    private SyscallUserDispatch? _dispatch; // the thread's syscall user dispatch, where it is on: every call is judged first
    private IReadOnlyList<MemoryMapping> _mappings = Array.Empty<MemoryMapping>(); // as at attach: where a selector may be read
    private System.Threading.CancellationToken _cancel; // Ctrl+C: ends a wait for a stop that does not come (see Wait)
    private long? _inFlight; // the injected call resumed and not seen back at its syscall-exit stop (see CallInFlight)

    /// <summary>
    /// Whether an injected call was resumed and its thread never came back to this tracer's stop (a wait that timed out or was
    /// cancelled: a thread its cgroup's freezer holds runs the call only once thawed). The thread is then left parked on the
    /// trampoline with the call's arguments, as if this PowerShell had died: it makes the call when it runs again, and its
    /// restore code puts it back and closes what <see cref="UndoOnAbort"/> named (round 34).
    /// </summary>
    public bool CallInFlight => _inFlight is not null;

    private RemoteSyscalls(int pid, int tid, InjectionArchitecture arch)
    {
        ProcessId = pid;
        ThreadId = tid;
        _arch = arch;
        _saved = new ulong[arch.RegisterWords];
        _tracer = TracerThread.Enter();
    }

    /// <summary>The thread that makes this injection's ptrace requests; left (<see cref="LeaveTracer"/>) once it lets go.</summary>
    private TracerThread? _tracer;

    /// <summary>Ends this injection's ptrace scope: the last scope of the command ends its tracer, which lets go of what it still traces.</summary>
    private void LeaveTracer()
    {
        var tracer = _tracer;
        _tracer = null;
        tracer?.Leave();
    }

    public int ProcessId { get; }
    /// <summary>The thread that runs the calls (the first live thread of the process).</summary>
    public int ThreadId { get; }
    /// <summary>The saved registers showed a blocking syscall interrupted with a restart code.</summary>
    public bool InterruptedSyscall { get; private set; }
    /// <summary>
    /// <see cref="ArgumentAreaSize"/> writable bytes in the target for the structures calls point at: on the
    /// thread's stack, below the 128-byte red zone the x86-64 ABI lets code use under the stack pointer.
    /// </summary>
    public ulong ArgumentArea { get; private set; }
    /// <summary>The size of <see cref="ArgumentArea"/>: room for the largest userfaultfd ioctl argument (32 bytes) twice.</summary>
    public const int ArgumentAreaSize = 64;
    /// <summary>The x86-64 System V ABI's red zone below the stack pointer.</summary>
    private const ulong RedZone = 128;

    /// <summary>
    /// Stops one thread of <paramref name="source"/>'s process for injection. Call <see cref="InjectionSupport.Check"/>
    /// first: this throws with the kernel's errno only. <paramref name="cancel"/> (Ctrl+C) ends the wait for a vfork to end
    /// where every live thread waits in one (nothing attached then).
    /// </summary>
    public static RemoteSyscalls Attach(ProcPageSource source, System.Threading.CancellationToken cancel = default)
    {
        var arch = InjectionArchitecture.Current
            ?? throw new EngineException(EngineError.WriteProtectNotSupported, $"Syscall injection is implemented for x86-64 only; this is {RuntimeInformation.ProcessArchitecture}.", source.ProcessId);
        int pid = source.ProcessId;
        // The memory as it is now, pinned: an exec from another thread before the thread is held replaces it, and the
        // mappings read here are then another program's (round 23: "no executable mapping with room", 3 in 2,100 Enables).
        source.PinMemory();
        var mappings = source.ReadMappings(false);
        InjectionSteps.Mark("read the mappings");
        int tid = FirstLiveThread(pid, cancel);
        InjectionSteps.Mark("pick a thread");
        var r = new RemoteSyscalls(pid, tid, arch);
        r._source = source;
        r._cancel = cancel;
        r._childGuard = ChildStopGuard.For(pid); // a child of this process: its stops kept from .NET's reaping
        r._borrowed = SoftDirty.Tracking.PtraceFreeze.HoldsHere(pid, tid); // in a ptrace stop of this thread's freeze already
        if (!r._borrowed && Ptrace.Call(Ptrace.Seize, tid, 0, (nint)Ptrace.TraceSysGood) != 0)
        {
            var failed = r.Fail("PTRACE_SEIZE");
            r.Dispose();
            throw failed;
        }
        r._attached = true;
        try
        {
            if (r._borrowed && Ptrace.Call(Ptrace.SetOptions, tid, 0, (nint)Ptrace.TraceSysGood) != 0) throw r.Fail("PTRACE_SETOPTIONS");
            if (!r._borrowed)
            {
                if (Ptrace.Call(Ptrace.Interrupt, tid, 0, 0) != 0) throw r.Fail("PTRACE_INTERRUPT");
                r.WaitForInterrupt();
            }
            InjectionSteps.Mark("PTRACE_SEIZE, PTRACE_INTERRUPT, wait");
            // The thread was found by path: the process may have exited since the source was opened and its pid (or the
            // thread its id) gone to another process, which must never receive the injected calls.
            if (!source.OwnsThread(tid))
                throw new EngineException(EngineError.ProcessExited, $"Process {pid} ({source.Name}) exited before write tracking could be set up in it (thread {tid} is no longer its own).", pid, Errno.ESRCH);
            source.EnsureSameMemory("syscall injection was set up");
            // Read while an exec was building this memory (only its stack there yet; the thread stops only once it is back in
            // user space, the program loaded): read again (round 23: "no executable mapping with room", 2 in 900 Enables).
            if (!RestoreTrampoline.FindSite(mappings, r.TryRead).Any()) mappings = source.ReadMappings(false);
            // The thread's own memory file: writes to code need FOLL_FORCE, which the kernel may grant only to the tracer of that task.
            r._memFd = Native.Open($"/proc/{pid}/task/{tid}/mem", Native.O_RDWR | Native.O_CLOEXEC);
            if (r._memFd < 0) throw r.Fail("open /proc/PID/task/TID/mem");
            r.StopOutsideTrampoline(RestoreTrampoline.FindSite(mappings, r.TryRead).ToList());
            r.InterruptedSyscall = arch.InterruptedWithRestart(r._saved);
            ulong mask;
            if (Ptrace.Call(Ptrace.GetSigMask, tid, sizeof(ulong), (nint)(&mask)) != 0) throw r.Fail("PTRACE_GETSIGMASK");
            r._savedMask = mask;
            r.ReadSeccompFilter();
            r._dispatch = SyscallUserDispatch.Read(tid, out _); // before 6.2 unknown: a dispatch then shows as SIGSYS (CallOnce)
            r._mappings = mappings;
            r.ReserveArguments(mappings);
            r.InstallTrampoline(mappings);
            r.JudgeRestore();
            r.JudgeDispatch();
            InjectionSteps.Mark("save registers and mask, install the restore trampoline");
            r.Park();
            r.BlockSignals();
            return r;
        }
        catch (Exception ex)
        {
            var killed = r.KilledInstead(ex);
            r.Dispose();
            if (killed is not null) throw killed;
            throw;
        }
    }

    private void BlockSignals()
    {
        ulong all = ulong.MaxValue;
        if (Ptrace.Call(Ptrace.SetSigMask, ThreadId, sizeof(ulong), (nint)(&all)) != 0) throw Fail("PTRACE_SETSIGMASK");
        _masked = true;
        ulong now;
        if (Ptrace.Call(Ptrace.GetSigMask, ThreadId, sizeof(ulong), (nint)(&now)) != 0) throw Fail("PTRACE_GETSIGMASK");
        _blockAll = now; // the kernel keeps SIGKILL and SIGSTOP unblockable
    }

    /// <summary>
    /// Reads the registers of a stop outside every trampoline site. A thread a killed tracer left on its
    /// trampoline is still restoring itself there for a few instructions (its stack pointer may even point into
    /// the trampoline): it is let run on and stopped again until it is out.
    /// </summary>
    private void StopOutsideTrampoline(List<ulong> sites)
    {
        for (int attempt = 0; ; attempt++)
        {
            GetRegisters(_saved);
            ulong ip = _saved[_arch.InstructionPointer];
            if (!sites.Exists(site => ip >= site && ip < site + (ulong)RestoreTrampoline.Size)) return;
            if (attempt == TrampolineExitAttempts)
                throw new EngineException(EngineError.ProcIOError, $"Thread {ThreadId} of process {ProcessId} stays in restore code at 0x{ip:x}; nothing was changed.", ProcessId);
            if (Ptrace.Call(Ptrace.Cont, ThreadId, 0, 0) != 0) throw Fail("PTRACE_CONT");
            System.Threading.Thread.Sleep(1);
            if (Ptrace.Call(Ptrace.Interrupt, ThreadId, 0, 0) != 0) throw Fail("PTRACE_INTERRUPT");
            WaitForInterrupt();
        }
    }

    /// <summary>How often a thread found in restore code is let run on before injection gives up.</summary>
    private const int TrampolineExitAttempts = 100;

    /// <summary>rt_sigprocmask and SIG_SETMASK, as the trampoline issues them.</summary>
    private static readonly long SigProcMaskCall = InjectionArchitecture.X64.SigProcMask;
    private const ulong SigSetMask = 2;

    /// <summary>
    /// Reads the thread's seccomp filters when it has any (Seccomp: 2 in its status), at attach and again before
    /// every call (a filter, once there, stays: a thread only gains filters). A filter may answer a call
    /// it does not allow by killing the process, so a thread whose filters cannot be read (the kernel gives
    /// them only to a tracer with CAP_SYS_ADMIN) is refused before anything is changed.
    /// </summary>
    private void ReadSeccompFilter()
    {
        string? mode = null;
        var status = $"/proc/{ProcessId}/task/{ThreadId}/status";
        try
        {
            foreach (var line in File.ReadLines(status))
                if (line.StartsWith("Seccomp:", StringComparison.Ordinal)) { mode = line["Seccomp:".Length..].Trim(); break; }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Unread, the mode is unknown, not "no filter": a call its filter kills would kill the process (round 29: out of
            // descriptors here, the target of Enable-WriteTracking was killed by its filter).
            ProcReadFailure.ThrowIfLimit(ex, status);
            if (Exited()) throw new EngineException(EngineError.ProcessExited, $"Process {ProcessId} exited during syscall injection.", ProcessId, Errno.ESRCH, ex);
            throw new EngineException(EngineError.ProcIOError,
                $"Reading {status} failed ({ex.Message}): whether a seccomp filter of process {ProcessId} kills the calls to be injected is unknown, so none was injected; it was left as it was.", ProcessId, ex is IOException ? ex.HResult : Errno.EACCES, ex);
        }
        if (mode != "2") return;
        _filter = SeccompFilter.Read(ThreadId, out int e)
            ?? throw new EngineException(EngineError.SeccompForbids,
                $"Process {ProcessId} has a seccomp filter, which may answer a syscall it does not allow by killing the process; reading the filter to be sure needs CAP_SYS_ADMIN ({Errno.Describe(e)}). It was left as it was.", ProcessId, e);
    }

    /// <summary>
    /// Judges the calls the trampoline makes when the thread resumes on it (close of the undo descriptor, then
    /// rt_sigprocmask), with the arguments the trampoline gives them: the restore path must stay allowed too.
    /// These must not merely be harmless but succeed: a close that fails leaves the descriptor behind, an
    /// rt_sigprocmask that fails leaves the thread with every signal blocked for good.
    /// </summary>
    private void JudgeRestore()
    {
        if (_undo != -1) Judge(_arch.Close, _site + RestoreTrampoline.CloseReturn, mustRun: true, _undo == RestoreTrampoline.UndoResult ? 0 : (ulong)_undo);
        Judge(SigProcMaskCall, _site + RestoreTrampoline.SigProcMaskReturn, mustRun: true, SigSetMask, _site + RestoreTrampoline.MaskSlot, 0, sizeof(ulong));
    }

    /// <summary>
    /// Throws SeccompForbids when the thread's filters would kill, trap or suspend it for this call, issued by a
    /// syscall instruction that ends at <paramref name="at"/> (seccomp_data.instruction_pointer is the address
    /// the call returns to), with <paramref name="args"/> and zeros in the argument registers after them.
    /// With <paramref name="mustRun"/> the call must run (Allow, Log), not only do no harm (an Errno or Trace
    /// answer fails it).
    /// </summary>
    private void Judge(long number, ulong at, bool mustRun, params ulong[] args)
    {
        if (_filter is null) return;
        var action = _filter.Decide(number, at, args);
        if (!SeccompFilter.IsHarmless(action) || (mustRun && action is not (SeccompFilter.Action.Allow or SeccompFilter.Action.Log)))
            throw new EngineException(EngineError.SeccompForbids,
                $"Process {ProcessId}'s seccomp filter answers syscall {number} with {action}{(mustRun ? " (a call the restore code must be able to make should this PowerShell die)" : "")}; it was not run, and the process was left as it was.", ProcessId);
    }

    /// <summary>
    /// Throws SyscallDispatchForbids when the thread's syscall user dispatch would not let a call at the trampoline run
    /// (the injected call, and the close and rt_sigprocmask of the restore code): the kernel would force SIGSYS on the
    /// thread, or kill the process for a selector byte it cannot read or does not know. The selector byte is read again
    /// before every call: the process's own code sets it.
    /// </summary>
    private void JudgeDispatch()
    {
        if (_dispatch is null) return;
        byte? selector = null;
        if (_dispatch.Selector != 0 && TryRead(_dispatch.Selector, 1) is { } b
            && _mappings.Any(m => _dispatch.Selector >= m.Start && _dispatch.Selector < m.End && (m.Protection & Protection.Read) != 0))
            selector = b[0];
        foreach (ulong at in new[] { _site + RestoreTrampoline.Resume, _site + RestoreTrampoline.SigProcMaskReturn }.Concat(_undo != -1 ? new[] { _site + RestoreTrampoline.CloseReturn } : Array.Empty<ulong>()))
            if (_dispatch.Refusal(at, selector) is { } why)
                throw new EngineException(EngineError.SyscallDispatchForbids,
                    $"Thread {ThreadId} of process {ProcessId} {why} (syscall user dispatch, PR_SET_SYSCALL_USER_DISPATCH); no call was injected, and the process was left as it was.", ProcessId);
    }

    /// <summary>The restart the trampoline makes when the thread resumes on it: the call to re-issue, or null.</summary>
    private ulong? RestartCall()
    {
        if (!InterruptedSyscall) return null;
        return (long)_saved[_arch.Result] == -Errno.ERESTART_RESTARTBLOCK ? InjectionArchitecture.RestartSyscall : _saved[_arch.InterruptedSyscall];
    }

    /// <summary>Writes the trampoline at the first site the kernel lets this tracer write and read back; keeps the bytes it replaced.</summary>
    private void InstallTrampoline(IReadOnlyList<MemoryMapping> mappings)
    {
        var code = RestoreTrampoline.Build(_saved, _savedMask, RestartCall());
        int refused = 0;
        foreach (ulong site in RestoreTrampoline.FindSite(mappings, TryRead))
        {
            if (TryRead(site, code.Length) is not { } original) continue;
            if (TryWrite(site, code) && TryRead(site, code.Length) is { } back && back.AsSpan().SequenceEqual(code))
            {
                _site = site;
                _siteBytes = original;
                return;
            }
            TryWrite(site, original);
            refused++;
        }
        throw new EngineException(EngineError.WriteProtectNotSupported,
            refused > 0
                ? $"Process {ProcessId}: the kernel refused to write the restore code into its executable mappings (proc_mem.force_override=never?); nothing was changed."
                : $"Process {ProcessId} has no executable mapping with room for the restore code after its image; nothing was changed.", ProcessId);
    }

    /// <summary>Reserves <see cref="ArgumentArea"/> below the red zone, inside the writable mapping that holds the stack pointer.</summary>
    private void ReserveArguments(IReadOnlyList<MemoryMapping> mappings)
    {
        ulong sp = _saved[_arch.StackPointer];
        ulong area = (sp - RedZone - ArgumentAreaSize) & ~15UL;
        foreach (var m in mappings)
            if (area >= m.Start && area + ArgumentAreaSize <= m.End && sp <= m.End && (m.Protection & Protection.Write) != 0 && !m.Shared
                && TryRead(area, ArgumentAreaSize) is { } original)
            {
                ArgumentArea = area;
                _argumentBytes = original;
                return;
            }
        throw new EngineException(EngineError.ProcIOError,
            $"Thread {ThreadId} of process {ProcessId} has no room on its stack below 0x{sp:x} for the arguments of injected calls; nothing was changed.", ProcessId);
    }

    /// <summary>Points the thread at the trampoline's restore code, the state it may be left in at any moment from now on.</summary>
    private void Park()
    {
        var regs = (ulong[])_saved.Clone();
        regs[_arch.InstructionPointer] = _site + RestoreTrampoline.Resume;
        if (_arch.InterruptedSyscall >= 0) regs[_arch.InterruptedSyscall] = InjectionArchitecture.NoSyscall; // the trampoline restarts it itself
        SetRegisters(regs);
        _parked = true;
    }

    /// <summary>
    /// Names a descriptor the trampoline closes if the tracer dies before <see cref="Dispose"/> (a userfaultfd
    /// made but not yet recorded); -1 for none.
    /// </summary>
    public void UndoOnAbort(long descriptor)
    {
        if (descriptor >= 0) Judge(_arch.Close, _site + RestoreTrampoline.CloseReturn, mustRun: true, (ulong)descriptor);
        Span<byte> word = stackalloc byte[sizeof(long)];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(word, descriptor);
        Write(_site + RestoreTrampoline.UndoSlot, word);
        _undo = descriptor;
    }

    /// <summary>Runs one syscall in the target; returns the raw result word (a negative errno on failure).</summary>
    public long Call(long number, params ulong[] args)
    {
        try { return CallOnce(number, args); }
        catch (Exception ex) when (KilledInstead(ex) is { } killed) { throw killed; }
    }

    private long CallOnce(long number, ulong[] args)
    {
        if (args.Length > _arch.Arguments.Length) throw new ArgumentException("Too many syscall arguments.", nameof(args));
        // Filters are read again before every call: another thread may have installed one for every thread
        // (SECCOMP_FILTER_FLAG_TSYNC) since the last, which also binds the trampoline's own calls.
        ReadSeccompFilter();
        JudgeRestore();
        Judge(number, _site + RestoreTrampoline.Resume, mustRun: false, args);
        JudgeDispatch();
        var regs = (ulong[])_saved.Clone();
        regs[_arch.InstructionPointer] = _site + RestoreTrampoline.CallSite;
        regs[_arch.SyscallNumber] = (ulong)number;
        if (_arch.InterruptedSyscall >= 0) regs[_arch.InterruptedSyscall] = InjectionArchitecture.NoSyscall;
        // Every argument register is set, unused ones to zero: seccomp_data holds all six, as the filters were judged.
        for (int i = 0; i < _arch.Arguments.Length; i++) regs[_arch.Arguments[i]] = i < args.Length ? args[i] : 0;
        SetRegisters(regs);
        ulong after = _site + RestoreTrampoline.Resume;
        bool entered = false;
        int resumeSignal = 0;
        while (true)
        {
            if (Ptrace.Call(Ptrace.Syscall, ThreadId, 0, resumeSignal) != 0) throw Fail("PTRACE_SYSCALL");
            _inFlight = number;
            resumeSignal = 0;
            int status = Wait();
            _inFlight = null;
            if (!Ptrace.Stopped(status)) throw Gone(status);
            int signal = Ptrace.StopSignal(status);
            if (signal == Ptrace.SyscallStop)
            {
                if (!entered) { entered = true; continue; } // syscall-entry stop: the call runs on the next resume
                break;                                       // syscall-exit stop
            }
            // A group stop (SIGSTOP from elsewhere) or PTRACE_INTERRUPT: resume; the call has not run, or is still to finish.
            if (Ptrace.Event(status) == Ptrace.EventStop) continue;
            // A signal-delivery stop: only the unblockable SIGSTOP can come while every signal is blocked; deliver it,
            // which ends in a group stop above. Anything else is a fault of the injected code: never delivered.
            if (signal == Signal.SIGSTOP) { resumeSignal = signal; continue; }
            // SIGSYS of a syscall user dispatch the kernel could not tell of (before 6.2): the call was not run; the signal,
            // forced while blocked, reset the SIGSYS handler to the default already (nothing here can tell the old one).
            if (signal == SyscallUserDispatch.SigSys && SigInfoCode() == SyscallUserDispatch.DispatchCode)
                throw new EngineException(EngineError.SyscallDispatchForbids,
                    $"Injected syscall {number} in process {ProcessId} was dispatched to its SIGSYS handler by syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH), which this kernel does not let a tracer read (Linux 6.2 does); it was not run, and not delivered, but the kernel reset the process's SIGSYS handler to the default.", ProcessId);
            throw new EngineException(EngineError.ProcIOError,
                $"Injected syscall {number} in process {ProcessId} stopped with signal {signal}, not at a syscall stop.", ProcessId);
        }
        GetRegisters(regs);
        if (regs[_arch.InstructionPointer] != after)
            throw new EngineException(EngineError.ProcIOError,
                $"Injected syscall {number} in process {ProcessId} ended at 0x{regs[_arch.InstructionPointer]:x}, not after the trampoline's syscall instruction.", ProcessId);
        // Returning to user space after a syscall that was interrupted with a restart code, without a handler to
        // run, restores the saved signal mask (sigsuspend, ppoll): that mask is the one to put back at the end.
        ulong mask;
        if (Ptrace.Call(Ptrace.GetSigMask, ThreadId, sizeof(ulong), (nint)(&mask)) == 0 && mask != _blockAll)
        {
            _savedMask = mask;
            Span<byte> word = stackalloc byte[sizeof(ulong)];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(word, mask);
            Write(_site + RestoreTrampoline.MaskSlot, word);
            BlockSignals();
        }
        return (long)regs[_arch.Result];
    }

    /// <summary>Runs one syscall and throws, naming it, when it fails.</summary>
    public long Check(string what, long number, params ulong[] args)
    {
        long r = Call(number, args);
        if (InjectionArchitecture.IsError((ulong)r, out int e))
            throw new EngineException(EngineError.ProcIOError, $"{what} in process {ProcessId} failed: {Errno.Describe(e)}", ProcessId, e);
        return r;
    }

    public void Write(ulong address, ReadOnlySpan<byte> data)
    {
        if (!TryWrite(address, data)) throw Fail("write to /proc/PID/mem");
    }

    public void Read(ulong address, Span<byte> data)
    {
        if (MemoryCall(false, address, data) != data.Length) throw Fail("read of /proc/PID/mem");
    }

    private bool TryWrite(ulong address, ReadOnlySpan<byte> data) => MemoryCall(true, address, data) == data.Length;

    private byte[]? TryRead(ulong address, int length)
    {
        var data = new byte[length];
        return MemoryCall(false, address, data) == length ? data : null;
    }

    /// <summary>
    /// A pread or pwrite of the thread's memory file, made by the tracer thread (<see cref="TracerThread.Run"/>): a kernel that
    /// grants FOLL_FORCE to the tracer alone (proc_mem.force_override=ptrace) refuses a write to code from any other thread.
    /// </summary>
    private nint MemoryCall(bool write, ulong address, ReadOnlySpan<byte> data)
    {
        int fd = _memFd;
        var length = (nuint)data.Length;
        fixed (byte* p = data)
        {
            nint buffer = (nint)p;
            Func<nint> call = write
                ? () => Native.Pwrite(fd, (byte*)buffer, length, (long)address)
                : () => Native.Pread(fd, (byte*)buffer, length, (long)address);
            return _tracer is { } tracer ? tracer.Run(call) : call();
        }
    }

    private void WaitForInterrupt()
    {
        while (true)
        {
            int status = Wait();
            if (!Ptrace.Stopped(status)) throw Gone(status);
            if (Ptrace.Event(status) == Ptrace.EventStop) return;
            // A signal-delivery stop that came first: deliver the signal as it would have been, then the
            // interrupt (still pending) stops the thread.
            if (Ptrace.Call(Ptrace.Cont, ThreadId, 0, Ptrace.StopSignal(status)) != 0) throw Fail("PTRACE_CONT");
        }
    }

    /// <summary>
    /// Waits until the thread is in a ptrace stop; returns a waitpid-style status. The stop's status is
    /// consumed here with waitpid (WNOHANG, polled: a blocking waitpid could wait forever for a status that
    /// someone else took), at once, so that no other waitpid of this process takes it for an exit
    /// (<see cref="ChildStopGuard"/>). Only when the thread has sat in a ptrace stop (state "t") for
    /// <see cref="StatusGrace"/> without waitpid reporting it is the stop read from /proc and PTRACE_GETSIGINFO.
    /// </summary>
    private int Wait()
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var spin = new System.Threading.SpinWait();
        TimeSpan? stoppedSince = null;
        while (true)
        {
            if (Ptrace.TakeStop(ThreadId, keepExits: _childGuard is not null) is { } status) return status;
            char state = ThreadState();
            if (state == 'Z' || state == 'X' || state == '?')
                throw Vanished() == EngineError.ProcessExecuted ? ExecutedDuring($"thread {ThreadId} ended (state {state})", Errno.ESRCH)
                    : new EngineException(EngineError.ProcessExited, $"Process {ProcessId} exited during syscall injection.", ProcessId);
            if (state == 't')
            {
                stoppedSince ??= clock.Elapsed;
                if (clock.Elapsed - stoppedSince.Value >= StatusGrace && StopFromSigInfo() is { } stop) return stop;
            }
            // A stop that does not come within StatusGrace is not merely late (a busy machine delays it by microseconds): a
            // thread its cgroup's freezer holds, or one asleep in the kernel, stops only once it runs again. Ctrl+C then ends
            // the wait; it waited out StopTimeout before (round 34: 10 s after Ctrl+C with the target's cgroup frozen).
            if (clock.Elapsed >= StatusGrace && _cancel.IsCancellationRequested) throw new OperationCanceledException(_cancel);
            if (clock.Elapsed > StopTimeout)
                throw new EngineException(EngineError.ProcIOError, _inFlight is { } call
                    ? $"Thread {ThreadId} of process {ProcessId} did not come back from injected syscall {call} within {StopTimeout.TotalSeconds} s: {SoftDirty.Tracking.ProcessFreeze.WhyNotRunning(ThreadId)}. It is left to make the call when it runs again, and its restore code then puts it back as it was."
                    : $"Thread {ThreadId} of process {ProcessId} did not stop within {StopTimeout.TotalSeconds} s of PTRACE_INTERRUPT: {SoftDirty.Tracking.ProcessFreeze.WhyNotRunning(ThreadId)}. Nothing was injected; the thread is let go and runs on once it runs again.", ProcessId);
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    /// <summary>How long a thread may take to reach a ptrace stop.</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How long a thread may sit in a ptrace stop before its waitpid status counts as taken by someone else.</summary>
    public static readonly TimeSpan StatusGrace = TimeSpan.FromMilliseconds(20);

    /// <summary>The held thread's state letter; '?' where it is gone. ResourceLimit where this process is out of descriptors or memory (round 30: said ProcessExited).</summary>
    private char ThreadState() =>
        SoftDirty.Tracking.ProcessFreeze.ThreadState($"/proc/{ProcessId}/task/{ThreadId}/stat") ?? '?';

    /// <summary>The waitpid-style status of the current ptrace stop from its siginfo; null when the thread is not (yet) in one.</summary>
    private int? StopFromSigInfo()
    {
        byte* info = stackalloc byte[Ptrace.SigInfoSize];
        if (Ptrace.Call(Ptrace.GetSigInfo, ThreadId, 0, (nint)info) != 0) return null;
        int signo = *(int*)info, code = *(int*)(info + 8);
        int ev = (code >> 8) == Ptrace.EventStop ? Ptrace.EventStop : 0;
        if (code == Ptrace.SyscallStop) signo = code; // a syscall stop's si_code is its stop signal, SIGTRAP | 0x80
        return (ev << 16) | ((signo & 0xff) << 8) | 0x7f;
    }

    /// <summary>The si_code of the signal of the current signal-delivery stop; 0 when it cannot be read.</summary>
    private int SigInfoCode()
    {
        byte* info = stackalloc byte[Ptrace.SigInfoSize];
        return Ptrace.Call(Ptrace.GetSigInfo, ThreadId, 0, (nint)info) == 0 ? *(int*)(info + 8) : 0;
    }

    private EngineException Gone(int status)
    {
        _attached = false; // a dead tracee needs no detach
        if (Vanished() == EngineError.ProcessExecuted) return ExecutedDuring($"thread {ThreadId} ended (wait status 0x{status:x})", Errno.ESRCH);
        return new EngineException(EngineError.ProcessExited,
            Ptrace.Exited(status) ? $"Process {ProcessId} exited during syscall injection." : $"Process {ProcessId} was killed (signal {status & 0x7f}) during syscall injection.", ProcessId);
    }

    private void GetRegisters(ulong[] regs)
    {
        fixed (ulong* p = regs)
        {
            var iov = new Ptrace.IoVec { Base = p, Length = (nuint)(regs.Length * sizeof(ulong)) };
            if (Ptrace.Call(Ptrace.GetRegSet, ThreadId, (nint)Ptrace.NtPrStatus, (nint)(&iov)) != 0) throw Fail("PTRACE_GETREGSET");
            // A 32-bit (ia32) thread has a register set of its own, shorter: nothing here applies to it.
            if (iov.Length != (nuint)(regs.Length * sizeof(ulong)))
                throw new EngineException(EngineError.WriteProtectNotSupported,
                    $"Process {ProcessId} is not an {_arch.Name} process (its registers are {iov.Length} bytes); it was left as it was.", ProcessId);
        }
    }

    private void SetRegisters(ulong[] regs)
    {
        fixed (ulong* p = regs)
        {
            var iov = new Ptrace.IoVec { Base = p, Length = (nuint)(regs.Length * sizeof(ulong)) };
            if (Ptrace.Call(Ptrace.SetRegSet, ThreadId, (nint)Ptrace.NtPrStatus, (nint)(&iov)) != 0) throw Fail("PTRACE_SETREGSET");
        }
    }

    /// <summary>Whether the thread is gone, or its process gone or exiting.</summary>
    private bool Exited() => !Directory.Exists($"/proc/{ProcessId}/task/{ThreadId}") || InjectionSupport.HasExited(ProcessId);

    private EngineException Fail(string what)
    {
        int e = Marshal.GetLastPInvokeError();
        if (_attached && Vanished() is { } gone)
            return gone == EngineError.ProcessExecuted ? ExecutedDuring($"{what}: {Errno.Name(e)}", e)
                : new EngineException(EngineError.ProcessExited, $"Process {ProcessId} was killed during syscall injection ({what}: {Errno.Name(e)}).", ProcessId, e);
        // ESRCH, or EPERM from PTRACE_SEIZE of a process that is exiting: gone, or a zombie (its task folder stays); or of a
        // leader an exec from another thread was replacing (round 22: said PtraceNotPermitted or ProcessExited).
        if (e is Errno.ESRCH or Errno.EPERM && (Exited() || _source?.MemoryReplacedNow == true))
            return _source?.ExecutedOrExited("syscall injection") is { Error: EngineError.ProcessExecuted } ? ExecutedDuring($"{what}: {Errno.Name(e)}", e)
                : new EngineException(EngineError.ProcessExited, $"Process {ProcessId} exited during syscall injection ({what}).", ProcessId, e);
        // A debugger that attached after the command's check (InjectionSupport.Check) and before this seize: the kernel says EPERM,
        // as it does for a tracer it does not permit, and the error said PtraceNotPermitted "Operation not permitted" (round 35).
        if (e == Errno.EPERM && what == "PTRACE_SEIZE" && InjectionSupport.TracerOf(ThreadId) is { } tracer)
            return new EngineException(EngineError.ProcessAlreadyTraced,
                $"Process {ProcessId} is already traced by {InjectionSupport.Tracer(tracer)}, or use -Method Hash: a process has one tracer at a time (it was attached to while this command ran).", ProcessId, e);
        var error = e == Errno.EPERM && what == "PTRACE_SEIZE" ? EngineError.PtraceNotPermitted : EngineError.ProcIOError;
        return new EngineException(error, $"{what} on process {ProcessId} (thread {ThreadId}) failed: {Errno.Describe(e)}", ProcessId, e);
    }

    /// <summary>
    /// ProcessExited in place of <paramref name="ex"/> when the process was killed while this thread was held
    /// (SIGKILL from elsewhere, the OOM killer); null otherwise. A killed tracee leaves its ptrace stop at once and
    /// whatever was being done to it fails with what its exit had reached: ESRCH from ptrace, EACCES opening its
    /// memory, a short read of memory already torn down (no room for arguments, no site for the trampoline).
    /// </summary>
    private EngineException? KilledInstead(Exception ex) =>
        ex is EngineException { Error: not (EngineError.ProcessExited or EngineError.ProcessExecuted) } failure && _attached && Vanished() is { } gone
            ? gone == EngineError.ProcessExecuted ? ExecutedDuring(failure.Message, failure.Errno, failure)
                : new EngineException(EngineError.ProcessExited, $"Process {ProcessId} was killed during syscall injection; what was under way failed: {failure.Message}", ProcessId, inner: failure)
            : null;

    /// <summary>
    /// Whether the process was killed (ProcessExited: within <see cref="ExecWait.Bound"/> no thread of it is left alive) or
    /// exec'd another program (ProcessExecuted: an exec from another thread kills the held thread too, and the process lives
    /// on; round 22: said ProcessExited, ProcIOError or WriteProtectNotSupported); null where neither shows. Asked only after a
    /// failure on a thread this tracer holds, which nothing but death or such an exec takes out of its ptrace stop.
    /// </summary>
    private EngineError? Vanished()
    {
        if (_source is not null) return _source.ExecutedOrExited("syscall injection")?.Error;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (ProcPageSource.LiveThreads(ProcessId) > 0)
        {
            if (clock.Elapsed >= ExecWait.Bound) return null;
            System.Threading.Thread.Sleep(1);
        }
        return EngineError.ProcessExited;
    }

    /// <summary>ProcessExecuted for an injection an exec from another thread ended: the program it was made for is gone, and so is whatever it had set up there.</summary>
    private EngineException ExecutedDuring(string failure, int errno, Exception? inner = null) =>
        new(EngineError.ProcessExecuted, $"Process {ProcessId} exec'd another program during syscall injection (an exec from another thread ends every other thread, the one held too): nothing was left set up in it, and no write tracking was enabled or changed; run the command again on the new program. What was under way failed: {failure}", ProcessId, errno, inner);

    /// <summary>
    /// Restores the signal mask, then the registers (leaving the trampoline in that order, so that the thread is
    /// resumable at every step), the stack bytes and the trampoline's bytes, and detaches. Where the mask cannot be put
    /// back the thread is detached on the trampoline, which restores it.
    /// </summary>
    public void Dispose()
    {
        if (_attached)
        {
            try
            {
                // A call in flight still reads its arguments when the thread runs again, and a thread that reached a stop of it
                // since is at its syscall's entry or exit, where registers put back would be taken for the call's: left parked.
                bool inFlight = CallInFlight;
                if (_argumentBytes is not null && !inFlight) TryWrite(ArgumentArea, _argumentBytes);
                ulong mask = _savedMask;
                bool maskBack = !inFlight && (!_masked || Ptrace.Call(Ptrace.SetSigMask, ThreadId, sizeof(ulong), (nint)(&mask)) == 0);
                _masked = false;
                // A mask not put back is left to the trampoline: the thread stays parked on it, whose restore code sets the
                // mask and the registers itself, as when this PowerShell dies; its bytes stay (after an image, where nothing
                // else runs). Ignored, the thread ran on with every signal blocked for good (round 30).
                if (maskBack || !_parked)
                {
                    if (_parked) SetRegisters(_saved);
                    _parked = false;
                    if (_siteBytes is not null) TryWrite(_site, _siteBytes);
                }
            }
            catch (EngineException) { } // gone meanwhile: nothing left to restore
            // A thread killed meanwhile (an exec by another thread) is reaped: the exec waits for its tracer to.
            if (!_borrowed) Ptrace.Release(ThreadId, 0, leader: ThreadId == ProcessId);
            // A thread that is not the leader and exec'd while attached is this tracer's still, under the leader's id now (the
            // exec hands it that id), and stops there on its way back to user space: let go too, or it stayed stopped and
            // traced until this PowerShell ended (round 22: "already traced by another command of this PowerShell").
            if (!_borrowed && ThreadId != ProcessId && !SoftDirty.Tracking.PtraceFreeze.HoldsHere(ProcessId, ProcessId))
                Ptrace.Release(ProcessId, 0, leader: true);
            _attached = false;
            InjectionSteps.Mark("restore mask, registers, stack and trampoline bytes, PTRACE_DETACH");
        }
        CloseMem();
        _childGuard?.Dispose();
        _childGuard = null;
        LeaveTracer();
    }

    /// <summary>
    /// Lets go of the thread restoring nothing, as the kernel does when the tracer dies (PTRACE_DETACH here):
    /// the thread resumes on the trampoline, which must restore it alone. For tests of exactly that.
    /// </summary>
    internal void Abandon()
    {
        if (_attached && !_borrowed) Ptrace.Call(Ptrace.Detach, ThreadId, 0, 0);
        _attached = false;
        CloseMem();
        _childGuard?.Dispose();
        _childGuard = null;
        LeaveTracer();
    }

    private void CloseMem()
    {
        if (_memFd >= 0) { Native.Close(_memFd); _memFd = -1; }
    }

    private static int FirstLiveThread(int pid, System.Threading.CancellationToken cancel)
    {
        // A listing may miss the exec'ing thread while it takes the leader's id, the others dead or dying (round 23: "no live
        // thread", 2 in 2,100 Enables and Disables): looked at again a moment later, and on while an exec is under way.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int look = 0; ; look++)
        {
            if (FindLiveThread(pid, cancel) is { } tid) return tid;
            if (clock.Elapsed >= ExecWait.Bound || (look > 0 && !ExecWait.UnderWay(pid))) break;
            System.Threading.Thread.Sleep(2);
        }
        throw new EngineException(EngineError.ProcessExited, $"Process {pid} has no live thread.", pid);
    }

    /// <summary>The thread <see cref="FirstLiveThread"/> takes, or null where the listing shows none alive.</summary>
    private static int? FindLiveThread(int pid, System.Threading.CancellationToken cancel)
    {
        try
        {
            var tasks = Directory.GetDirectories($"/proc/{pid}/task");
            Array.Sort(tasks, StringComparer.Ordinal);
            int best = -1;
            (int Tid, int Child)? vfork = null;
            foreach (var t in tasks)
            {
                if (!int.TryParse(Path.GetFileName(t), out int tid)) continue;
                // A thread that exited since the listing (a program starting and joining threads all the time) is
                // passed over: it must not end the search as if the whole process had no live thread.
                char state = SoftDirty.Tracking.ProcessFreeze.ThreadState(Path.Combine(t, "stat")) ?? 'X';
                if (state == 'Z' || state == 'X') continue;
                // An io_uring worker never returns to user space: a call injected there is never made (round 31: taken while
                // the other threads waited in vfork, Enable said the worker's stack, at 0, had no room).
                if (SoftDirty.Tracking.ProcessFreeze.IsIoWorker(Path.Combine(t, "stat"))) continue;
                // A thread held in vfork() until its child execs or exits cannot be stopped meanwhile: another one is taken.
                if (SoftDirty.Tracking.VforkWait.Waits(pid, tid, out int child)) { vfork ??= (tid, child); continue; }
                if (tid == pid) return tid;
                if (best < 0 || tid < best) best = tid;
            }
            if (best > 0) return best;
            // Every live thread waits in vfork (a single-threaded program running another with posix_spawn): the first is
            // waited for, nothing attached, as long as a posix_spawn's child takes to exec (round 18: refused at once before).
            if (vfork is { } held)
                return SoftDirty.Tracking.VforkWait.WaitEnd(pid, held.Tid, cancel, out int still) ? held.Tid
                    : throw SoftDirty.Tracking.VforkWait.Refusal(pid, held.Tid, still > 0 ? still : held.Child, "Syscall injection");
        }
        catch (IOException ex)
        {
            // Out of descriptors or memory this said "no live thread": ProcessExited for a process that runs on (round 30).
            ProcReadFailure.ThrowIfLimit(ex, $"/proc/{pid}/task");
        }
        catch (UnauthorizedAccessException) { }
        return null;
    }
}
