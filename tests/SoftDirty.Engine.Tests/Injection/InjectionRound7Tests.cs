using System;
using System.Globalization;
using System.IO;
using System.Linq;
using SoftDirty;
using SoftDirty.Injection;
using Xunit;

namespace SoftDirty.Tests.Injection;

/// <summary>
/// Issue 13, seventh attack round: syscall injection into targets in states the earlier rounds did not try
/// (tests/native/wttarget.c): a signal that arrives while a thread waiting in ppoll is injected, a seccomp
/// filter another thread installs for every thread (TSYNC) while the injection runs, and filters that look at
/// what the kernel gives them of an injected call (every argument register, the instruction pointer).
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class InjectionRound7Tests
{
    private const int PpollSyscall = 271, ReadSyscall = 0, GetPidSyscall = 39, SigUsr1 = 10, SigUsr2 = 12, SigStop = 19, SigCont = 18, RtSigprocmaskSyscall = 14;

    /// <summary>
    /// Whether this process may read another's seccomp filters (CAP_SYS_ADMIN, bit 21 of CapEff): without it a
    /// target with a filter is refused at attach (SeccompForbids), which the filter tests assert instead.
    /// </summary>
    private static bool CanReadFilters =>
        (Convert.ToUInt64(Status(Environment.ProcessId, Environment.ProcessId, "CapEff"), 16) & (1UL << 21)) != 0;

    private static string Status(int pid, int tid, string key) =>
        File.ReadAllLines($"/proc/{pid}/task/{tid}/status").Single(l => l.StartsWith(key + ":", StringComparison.Ordinal))[(key.Length + 1)..].Trim();

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void SignalArrivingWhileAThreadInPpollIsInjected_IsDeliveredAfterwards_AndItsMaskIsAsBefore()
    {
        using var t = new WtTarget();
        t.Start("ppoll 600000");
        t.WaitInSyscall(PpollSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        using (var inject = RemoteSyscalls.Attach(src))
        {
            Assert.Equal(0, Native.Kill(t.Pid, SigUsr1)); // arrives while the thread is parked, every signal blocked
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall));
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall));
        }
        // ppoll ends as the signal would have ended it without the injection: EINTR, the handler run once, and
        // the mask the program had before ppoll back in place.
        var answer = t.Receive("ppoll");
        Assert.Equal(new[] { "-1", Errno.EINTR.ToString(CultureInfo.InvariantCulture), "1", "1" }, answer);
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void FilterInstalledForEveryThreadWhileInjecting_IsJudgedBeforeTheNextCall_AndTheTargetLives()
    {
        using var t = new WtTarget();
        t.Send($"tsyncarm {GetPidSyscall}");
        t.WaitInSyscall(ReadSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        using (var inject = RemoteSyscalls.Attach(src))
        {
            Assert.Equal("0", Status(t.Pid, t.Pid, "Seccomp"));
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall));
            Assert.Equal(0, Native.Kill(t.Pid, SigUsr2)); // blocked in every thread: the helper's sigwait takes it
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (Status(t.Pid, t.Pid, "Seccomp") != "2" && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(1);
            Assert.Equal("2", Status(t.Pid, t.Pid, "Seccomp")); // the injected thread has the filter now
            var e = Assert.Throws<EngineException>(() => inject.Call(GetPidSyscall));
            Assert.Equal(EngineError.SeccompForbids, e.Error);
        }
        Assert.True(Directory.Exists($"/proc/{t.Pid}"), "the target lives on");
    }

    private static string[] SyscallWords(int pid) => File.ReadAllText($"/proc/{pid}/syscall").Trim().Split(' ');

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void FilterOnAnArgumentTheInjectedCallDoesNotTake_SeesZeroThere_NotTheInterruptedCallsValue()
    {
        using var t = new WtTarget();
        t.Send("fds");
        t.WaitInSyscall(ReadSyscall);
        // read(0, buffer, size): the buffer is stdio's, the same for every command; getpid takes no argument.
        ulong buffer = Convert.ToUInt64(SyscallWords(t.Pid)[2], 16);
        t.Send($"seccompkill {GetPidSyscall} {(uint)buffer}");
        t.WaitInSyscall(ReadSyscall);
        Assert.Equal(buffer, Convert.ToUInt64(SyscallWords(t.Pid)[2], 16));
        using (var src = ProcPageSource.Open(t.Pid))
        {
            if (CanReadFilters)
            {
                using var inject = RemoteSyscalls.Attach(src);
                Assert.Equal(t.Pid, inject.Call(GetPidSyscall)); // judged with zeros after its arguments, run with zeros there
            }
            else Assert.Equal(EngineError.SeccompForbids, Assert.Throws<EngineException>(() => RemoteSyscalls.Attach(src).Dispose()).Error);
        }
        Assert.Equal(new[] { "1" }, t.Send("threads 1")); // alive, and reads its commands as before
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void FilterOnTheInstructionPointer_IsJudgedWithTheAddressTheCallReturnsTo()
    {
        using var t = new WtTarget();
        // The trampoline is 16-byte aligned and its syscall instruction (2 bytes) is its first: the kernel gives
        // the filter the address after it, whose low four bits are 2.
        t.Send($"seccompip {GetPidSyscall} 15 {RestoreTrampoline.Resume}");
        t.WaitInSyscall(ReadSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        {
            // Refused at the call where the filter can be read, at attach where it cannot.
            var e = Assert.Throws<EngineException>(() => { using var inject = RemoteSyscalls.Attach(src); inject.Call(GetPidSyscall); });
            Assert.Equal(EngineError.SeccompForbids, e.Error);
        }
        Assert.Equal(new[] { "1" }, t.Send("threads 1"));
    }

    private static char State(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/task/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void SigStopArrivingDuringInjection_LeavesTheProcessStoppedAfterwards_AndSigContResumesItsRead()
    {
        using var t = new WtTarget();
        ulong region = t.Map(4);
        t.Send($"write {region:x} 0 4");
        var sum = t.Send("sum")[0];
        var mask = Status(t.Pid, t.Pid, "SigBlk");
        t.WaitInSyscall(ReadSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        using (var inject = RemoteSyscalls.Attach(src))
        {
            Assert.Equal(0, Native.Kill(t.Pid, SigStop)); // a job-control stop while the thread is parked
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall));
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall));
        }
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (State(t.Pid) != 'T' && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(1);
        Assert.Equal('T', State(t.Pid)); // stopped, as SIGSTOP says, not running on
        Assert.Equal("0", Status(t.Pid, t.Pid, "TracerPid"));
        Assert.Equal(0, Native.Kill(t.Pid, SigCont));
        Assert.Equal(sum, t.Send("sum")[0]); // its read restarted after SIGCONT
        Assert.Equal(mask, Status(t.Pid, t.Pid, "SigBlk"));
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void FilterFailingRtSigprocmask_IsRefusedAtAttach_SoADeadTracerCannotLeaveEverySignalBlocked()
    {
        using var t = new WtTarget();
        // rt_sigprocmask fails with EPERM: harmless for a call, but the trampoline needs it to put the mask back
        // should the injecting PowerShell die, and the thread would keep every signal blocked for good.
        t.Send($"seccomperrno {RtSigprocmaskSyscall}");
        var mask = Status(t.Pid, t.Pid, "SigBlk");
        t.WaitInSyscall(ReadSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        {
            var e = Assert.Throws<EngineException>(() => RemoteSyscalls.Attach(src).Abandon());
            Assert.Equal(EngineError.SeccompForbids, e.Error);
        }
        Assert.Equal(new[] { "1" }, t.Send("threads 1"));
        Assert.Equal(mask, Status(t.Pid, t.Pid, "SigBlk"));
        Assert.Equal("0", Status(t.Pid, t.Pid, "TracerPid"));
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void ProcessStoppedByJobControlBeforeInjection_StaysStoppedAfterwards_AndGoesOnAfterSigCont()
    {
        using var t = new WtTarget();
        ulong region = t.Map(4);
        t.Send($"write {region:x} 0 4");
        var sum = t.Send("sum")[0];
        t.WaitInSyscall(ReadSyscall);
        Assert.Equal(0, Native.Kill(t.Pid, SigStop));
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (State(t.Pid) != 'T' && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(1);
        Assert.Equal('T', State(t.Pid));
        using (var src = ProcPageSource.Open(t.Pid))
        using (var inject = RemoteSyscalls.Attach(src))
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall)); // the calls run (a tracer may resume a stopped thread)
        deadline = DateTime.UtcNow.AddSeconds(10);
        while (State(t.Pid) != 'T' && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(1);
        Assert.Equal('T', State(t.Pid)); // back in its job-control stop: a stopped program is not woken by the module
        Assert.Equal(0, Native.Kill(t.Pid, SigCont));
        Assert.Equal(sum, t.Send("sum")[0]);
    }

    /// <summary>The bytes of every executable mapping of <paramref name="pid"/>, by address.</summary>
    private static System.Collections.Generic.Dictionary<ulong, byte[]> ExecutableBytes(int pid)
    {
        var bytes = new System.Collections.Generic.Dictionary<ulong, byte[]>();
        using var src = ProcPageSource.Open(pid);
        using var mem = new FileStream($"/proc/{pid}/mem", FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
        foreach (var m in src.ReadMappings(false).Where(m => (m.Protection & Protection.Execute) != 0 && m.Start < long.MaxValue)) // not [vsyscall]
        {
            var b = new byte[m.Size];
            mem.Position = (long)m.Start;
            mem.ReadExactly(b);
            bytes[m.Start] = b;
        }
        return bytes;
    }

    [HostFact(HostNeeds.Linux | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void TargetWithoutAVdso_GetsTheTrampolineAfterAnotherImage_PutBackByteForByte_OrRestoringItselfWhenLetGo()
    {
        using var t = new WtTarget();
        t.Send("unmapvdso");
        t.WaitInSyscall(ReadSyscall);
        var before = ExecutableBytes(t.Pid);
        Assert.NotEmpty(before);
        using (var src = ProcPageSource.Open(t.Pid))
        {
            Assert.DoesNotContain(src.ReadMappings(false), m => m.Kind == MappingKind.Vdso);
            using var inject = RemoteSyscalls.Attach(src);
            Assert.Equal(t.Pid, inject.Call(GetPidSyscall));
        }
        var after = ExecutableBytes(t.Pid);
        Assert.Equal(before.Keys.OrderBy(k => k), after.Keys.OrderBy(k => k));
        foreach (var (start, b) in before) Assert.True(b.AsSpan().SequenceEqual(after[start]), $"the executable mapping at 0x{start:x} is as it was");
        Assert.Equal(new[] { "1" }, t.Send("threads 1"));
        t.WaitInSyscall(ReadSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
            RemoteSyscalls.Attach(src).Abandon(); // the trampoline in a library restores the thread alone
        Assert.Equal(new[] { "1" }, t.Send("threads 1"));
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void ProcessWhoseMainThreadExited_IsRefusedAsRunningNotAsExited_AndGoesOn()
    {
        using var t = new WtTarget();
        ulong region = t.Map(4);
        t.Send("mainexit");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (State(t.Pid) != 'Z' && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(1);
        Assert.Equal('Z', State(t.Pid)); // the main thread is a zombie; another serves the commands
        var refused = InjectionSupport.Check(t.Pid, KernelProbe.Current);
        Assert.NotNull(refused);
        Assert.Equal(EngineError.WriteProtectNotSupported, refused!.Error);
        Assert.Contains("main thread has exited", refused.Message, StringComparison.Ordinal);
        Assert.Equal(new[] { "2" }, t.Send($"write {region:x} 0 2")); // left as it was, and running
        Assert.Equal(new[] { "1" }, t.Send("threads 1"));
    }
}
