using System;
using System.IO;
using System.Runtime.InteropServices;

namespace SoftDirty.Injection;

/// <summary>
/// Runs system calls inside another process (the technique of CRIU's compel and of debuggers, written here
/// anew): PTRACE_SEIZE and PTRACE_INTERRUPT one thread, save its registers and signal mask, block every
/// signal, then for each call point the instruction pointer at an existing syscall instruction (the vDSO's,
/// else one in another executable mapping), load number and arguments, single-step and read the result.
/// <see cref="Dispose"/> unmaps the scratch page, restores registers and mask exactly and detaches.
/// A thread stopped inside a blocking syscall keeps that call's restart code (-ERESTARTSYS and kin) in its
/// saved registers; while calls run the interrupted-syscall word is cleared so the kernel restarts nothing,
/// and after the exact restore the kernel restarts (or fails with EINTR) the original call on the way back
/// to user space, as it does after a signal without a handler.
/// </summary>
internal sealed unsafe class RemoteSyscalls : IDisposable
{
    private readonly InjectionArchitecture _arch;
    private readonly ulong[] _saved;
    private readonly ulong _syscallAddress;
    private ulong _savedMask, _blockAll;
    private int _memFd = -1;
    private bool _attached;
    private ChildStopGuard? _childGuard;
    private bool _borrowed; // the stop is a freeze's (PtraceFreeze): no attach here, no detach either

    private RemoteSyscalls(int pid, int tid, InjectionArchitecture arch, ulong syscallAddress)
    {
        ProcessId = pid;
        ThreadId = tid;
        _arch = arch;
        _syscallAddress = syscallAddress;
        _saved = new ulong[arch.RegisterWords];
    }

    public int ProcessId { get; }
    /// <summary>The thread that runs the calls (the first live thread of the process).</summary>
    public int ThreadId { get; }
    /// <summary>The scratch page's address once <see cref="Scratch"/> mapped it, else 0.</summary>
    public ulong ScratchAddress { get; private set; }
    private ulong _scratchLength;
    /// <summary>The saved registers showed a blocking syscall interrupted with a restart code.</summary>
    public bool InterruptedSyscall { get; private set; }

    /// <summary>
    /// Stops one thread of <paramref name="source"/>'s process for injection. Call <see cref="InjectionSupport.Check"/>
    /// first: this throws with the kernel's errno only.
    /// </summary>
    public static RemoteSyscalls Attach(ProcPageSource source)
    {
        var arch = InjectionArchitecture.Current
            ?? throw new EngineException(EngineError.WriteProtectNotSupported, $"Syscall injection is implemented for x86-64 only; this is {RuntimeInformation.ProcessArchitecture}.", source.ProcessId);
        int pid = source.ProcessId;
        ulong address = FindSyscallInstruction(source, arch);
        InjectionSteps.Mark("find a syscall instruction (maps, vDSO)");
        int tid = FirstLiveThread(pid);
        InjectionSteps.Mark("pick a thread");
        var r = new RemoteSyscalls(pid, tid, arch, address);
        r._childGuard = ChildStopGuard.For(pid); // a child of this process: its stops kept from .NET's reaping
        r._borrowed = SoftDirty.Tracking.PtraceFreeze.HoldsHere(pid, tid); // in a ptrace stop of this thread's freeze already
        if (!r._borrowed && Ptrace.Call(Ptrace.Seize, tid, 0, 0) != 0)
        {
            var failed = r.Fail("PTRACE_SEIZE");
            r.Dispose();
            throw failed;
        }
        r._attached = true;
        try
        {
            if (!r._borrowed)
            {
                if (Ptrace.Call(Ptrace.Interrupt, tid, 0, 0) != 0) throw r.Fail("PTRACE_INTERRUPT");
                r.WaitForInterrupt();
            }
            InjectionSteps.Mark("PTRACE_SEIZE, PTRACE_INTERRUPT, wait");
            r.GetRegisters(r._saved);
            r.InterruptedSyscall = arch.InterruptedWithRestart(r._saved);
            ulong mask;
            if (Ptrace.Call(Ptrace.GetSigMask, tid, sizeof(ulong), (nint)(&mask)) != 0) throw r.Fail("PTRACE_GETSIGMASK");
            r._savedMask = mask;
            r.BlockSignals();
            r._memFd = Native.Open($"/proc/{pid}/mem", Native.O_RDWR | Native.O_CLOEXEC);
            if (r._memFd < 0) throw r.Fail("open /proc/PID/mem");
            InjectionSteps.Mark("save registers and mask, open /proc/PID/mem");
            return r;
        }
        catch
        {
            r.Dispose();
            throw;
        }
    }

    /// <summary>SIGTRAP in a signal mask word (signal n is bit n - 1).</summary>
    private const ulong SigTrapBit = 1UL << (Signal.SIGTRAP - 1);

    private void BlockSignals()
    {
        ulong all = ulong.MaxValue;
        if (Ptrace.Call(Ptrace.SetSigMask, ThreadId, sizeof(ulong), (nint)(&all)) != 0) throw Fail("PTRACE_SETSIGMASK");
        ulong now;
        if (Ptrace.Call(Ptrace.GetSigMask, ThreadId, sizeof(ulong), (nint)(&now)) != 0) throw Fail("PTRACE_GETSIGMASK");
        _blockAll = now; // the kernel keeps SIGKILL and SIGSTOP unblockable
    }

    /// <summary>Runs one syscall in the target; returns the raw result word (a negative errno on failure).</summary>
    public long Call(long number, params ulong[] args)
    {
        if (args.Length > _arch.Arguments.Length) throw new ArgumentException("Too many syscall arguments.", nameof(args));
        var regs = (ulong[])_saved.Clone();
        regs[_arch.InstructionPointer] = _syscallAddress;
        regs[_arch.SyscallNumber] = (ulong)number;
        if (_arch.InterruptedSyscall >= 0) regs[_arch.InterruptedSyscall] = InjectionArchitecture.NoSyscall;
        for (int i = 0; i < args.Length; i++) regs[_arch.Arguments[i]] = args[i];
        SetRegisters(regs);
        ulong after = _syscallAddress + (ulong)_arch.SyscallInstruction.Length;
        while (true)
        {
            if (Ptrace.Call(Ptrace.SingleStep, ThreadId, 0, 0) != 0) throw Fail("PTRACE_SINGLESTEP");
            int status = Wait();
            if (!Ptrace.Stopped(status)) throw Gone(status);
            GetRegisters(regs);
            ulong ip = regs[_arch.InstructionPointer];
            if (ip == after) break;
            // A group stop (SIGSTOP from elsewhere) can stop the thread before the instruction ran: step again.
            if (ip == _syscallAddress && Ptrace.Event(status) == Ptrace.EventStop) continue;
            throw new EngineException(EngineError.ProcIOError,
                $"Injected syscall {number} in process {ProcessId} stopped at 0x{ip:x} (signal {Ptrace.StopSignal(status)}), not after the syscall instruction.", ProcessId);
        }
        // Returning to user space after a syscall that was interrupted with a restart code, without a handler to
        // run, restores the saved signal mask (sigsuspend, ppoll): that mask is the one to put back at the end.
        // Each single-step's trap is forced (force_sig_info unblocks SIGTRAP), so SIGTRAP alone does not count:
        // taking that mask for the saved one left the target with every other signal blocked for good.
        ulong mask;
        if (Ptrace.Call(Ptrace.GetSigMask, ThreadId, sizeof(ulong), (nint)(&mask)) == 0 && (mask | SigTrapBit) != (_blockAll | SigTrapBit))
        {
            _savedMask = mask;
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

    /// <summary>An anonymous private read-write mapping in the target, made once, unmapped on dispose.</summary>
    public ulong Scratch(ulong length)
    {
        if (ScratchAddress != 0) return ScratchAddress;
        ulong page = (ulong)Environment.SystemPageSize;
        length = (length + page - 1) / page * page;
        long r = Check("mmap of a scratch page", _arch.Mmap, 0, length, (ulong)(Native.PROT_READ | Native.PROT_WRITE),
            (ulong)(Native.MAP_PRIVATE | Native.MAP_ANONYMOUS), ulong.MaxValue, 0);
        ScratchAddress = (ulong)r;
        _scratchLength = length;
        return ScratchAddress;
    }

    public void Write(ulong address, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
            if (Native.Pwrite(_memFd, p, (nuint)data.Length, (long)address) != data.Length) throw Fail("write to /proc/PID/mem");
    }

    public void Read(ulong address, Span<byte> data)
    {
        fixed (byte* p = data)
            if (Native.Pread(_memFd, p, (nuint)data.Length, (long)address) != data.Length) throw Fail("read of /proc/PID/mem");
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
                throw new EngineException(EngineError.ProcessExited, $"Process {ProcessId} exited during syscall injection.", ProcessId);
            if (state == 't')
            {
                stoppedSince ??= clock.Elapsed;
                if (clock.Elapsed - stoppedSince.Value >= StatusGrace && StopFromSigInfo() is { } stop) return stop;
            }
            if (clock.Elapsed > StopTimeout)
                throw new EngineException(EngineError.ProcIOError, $"Thread {ThreadId} of process {ProcessId} did not stop within {StopTimeout.TotalSeconds} s.", ProcessId);
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    /// <summary>How long a thread may take to reach a ptrace stop.</summary>
    public static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How long a thread may sit in a ptrace stop before its waitpid status counts as taken by someone else.</summary>
    public static readonly TimeSpan StatusGrace = TimeSpan.FromMilliseconds(20);

    private char ThreadState()
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{ProcessId}/task/{ThreadId}/stat");
            int close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length ? stat[close + 2] : '?';
        }
        catch (IOException) { return '?'; }
    }

    /// <summary>The waitpid-style status of the current ptrace stop from its siginfo; null when the thread is not (yet) in one.</summary>
    private int? StopFromSigInfo()
    {
        byte* info = stackalloc byte[Ptrace.SigInfoSize];
        if (Ptrace.Call(Ptrace.GetSigInfo, ThreadId, 0, (nint)info) != 0) return null;
        int signo = *(int*)info, code = *(int*)(info + 8);
        int ev = (code >> 8) == Ptrace.EventStop ? Ptrace.EventStop : 0;
        return (ev << 16) | ((signo & 0xff) << 8) | 0x7f;
    }

    private EngineException Gone(int status)
    {
        _attached = false; // a dead tracee needs no detach
        return new EngineException(EngineError.ProcessExited,
            Ptrace.Exited(status) ? $"Process {ProcessId} exited during syscall injection." : $"Process {ProcessId} was killed (signal {status & 0x7f}) during syscall injection.", ProcessId);
    }

    private void GetRegisters(ulong[] regs)
    {
        fixed (ulong* p = regs)
        {
            var iov = new Ptrace.IoVec { Base = p, Length = (nuint)(regs.Length * sizeof(ulong)) };
            if (Ptrace.Call(Ptrace.GetRegSet, ThreadId, (nint)Ptrace.NtPrStatus, (nint)(&iov)) != 0) throw Fail("PTRACE_GETREGSET");
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
    private bool Exited() => !Directory.Exists($"/proc/{ProcessId}/task/{ThreadId}") || HasExited(ProcessId);

    /// <summary>Whether the process is gone or a zombie (state Z or X, as /proc/PID/status says).</summary>
    private static bool HasExited(int pid) =>
        InjectionSupport.ReadStatus(pid) is not { } status
        || (status.TryGetValue("State", out var state) && (state.StartsWith('Z') || state.StartsWith('X')));

    private EngineException Fail(string what)
    {
        int e = Marshal.GetLastPInvokeError();
        // ESRCH, or EPERM from PTRACE_SEIZE of a process that is exiting: gone, or a zombie (its task folder stays).
        if (e is Errno.ESRCH or Errno.EPERM && Exited())
            return new EngineException(EngineError.ProcessExited, $"Process {ProcessId} exited during syscall injection ({what}).", ProcessId, e);
        var error = e == Errno.EPERM && what == "PTRACE_SEIZE" ? EngineError.PtraceNotPermitted : EngineError.ProcIOError;
        return new EngineException(error, $"{what} on process {ProcessId} (thread {ThreadId}) failed: {Errno.Describe(e)}", ProcessId, e);
    }

    /// <summary>Unmaps the scratch page, restores registers and signal mask exactly, and detaches.</summary>
    public void Dispose()
    {
        if (_attached)
        {
            try
            {
                if (ScratchAddress != 0) Call(_arch.Munmap, ScratchAddress, _scratchLength);
            }
            catch (EngineException) { }
            ScratchAddress = 0;
            if (!_attached) { CloseMem(); _childGuard?.Dispose(); _childGuard = null; return; }
            try { SetRegisters(_saved); } catch (EngineException) { }
            ulong mask = _savedMask;
            Ptrace.Call(Ptrace.SetSigMask, ThreadId, sizeof(ulong), (nint)(&mask));
            if (!_borrowed) Ptrace.Call(Ptrace.Detach, ThreadId, 0, 0);
            _attached = false;
            InjectionSteps.Mark("munmap scratch, restore, PTRACE_DETACH");
        }
        CloseMem();
        _childGuard?.Dispose();
        _childGuard = null;
    }

    private void CloseMem()
    {
        if (_memFd >= 0) { Native.Close(_memFd); _memFd = -1; }
    }

    private static int FirstLiveThread(int pid)
    {
        try
        {
            var tasks = Directory.GetDirectories($"/proc/{pid}/task");
            Array.Sort(tasks, StringComparer.Ordinal);
            int best = -1;
            foreach (var t in tasks)
            {
                if (!int.TryParse(Path.GetFileName(t), out int tid)) continue;
                var stat = File.ReadAllText(Path.Combine(t, "stat"));
                int close = stat.LastIndexOf(')');
                char state = close > 0 && close + 2 < stat.Length ? stat[close + 2] : 'X';
                if (state == 'Z' || state == 'X') continue;
                if (tid == pid) return tid;
                if (best < 0 || tid < best) best = tid;
            }
            if (best > 0) return best;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        throw new EngineException(EngineError.ProcessExited, $"Process {pid} has no live thread.", pid);
    }

    /// <summary>The address of a syscall instruction in an executable mapping: the vDSO first, then the others.</summary>
    private static ulong FindSyscallInstruction(ProcPageSource source, InjectionArchitecture arch)
    {
        var mappings = source.ReadMappings(false);
        foreach (bool vdso in new[] { true, false })
            foreach (var m in mappings)
            {
                if ((m.Kind == MappingKind.Vdso) != vdso || m.Kind == MappingKind.Vsyscall || (m.Protection & Protection.Execute) == 0) continue;
                var bytes = new byte[Math.Min(m.Size, 1UL << 20)];
                int got;
                try { got = source.ReadMemory(m.Start, bytes); }
                catch (EngineException ex) when (ex.Error != EngineError.ProcessExited) { continue; } // unreadable: try the next one
                int at = bytes.AsSpan(0, Math.Max(0, got)).IndexOf(arch.SyscallInstruction);
                if (at >= 0) return m.Start + (ulong)at;
            }
        // A process that exited meanwhile has no readable mappings either: that is not a missing feature.
        if (HasExited(source.ProcessId))
            throw new EngineException(EngineError.ProcessExited, $"Process {source.ProcessId} exited while its syscall instruction was sought.", source.ProcessId);
        throw new EngineException(EngineError.WriteProtectNotSupported, $"Process {source.ProcessId} has no readable syscall instruction in an executable mapping.", source.ProcessId);
    }
}
