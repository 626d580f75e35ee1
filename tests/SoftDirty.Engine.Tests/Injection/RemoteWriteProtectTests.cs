using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using SoftDirty;
using SoftDirty.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Injection;

/// <summary>
/// WriteProtect of other real processes, registered from outside by syscall injection, on native targets
/// (tests/native/wttarget.c): the target goes on exactly as it would have, and the tracker reports exactly
/// the pages the target says it wrote.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class RemoteWriteProtectTests : IDisposable
{
    private const int ReadSyscall = 0, ClockNanosleepSyscall = 230, FutexSyscall = 202;
    private readonly string _stateDir = Path.Combine(Path.GetTempPath(), "sd-wt-" + Guid.NewGuid().ToString("N"));
    private readonly string? _oldStateDir = Environment.GetEnvironmentVariable(WriteTrackingStore.FolderVariable);

    public RemoteWriteProtectTests() => Environment.SetEnvironmentVariable(WriteTrackingStore.FolderVariable, _stateDir);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(WriteTrackingStore.FolderVariable, _oldStateDir);
        if (Directory.Exists(_stateDir)) Directory.Delete(_stateDir, true);
    }

    private static ulong[] PagesIn(IEnumerable<AddressRange> ranges, ulong start, int pages, int pageSize) =>
        ranges.SelectMany(r => Enumerable.Range(0, (int)(r.Length / (ulong)pageSize)).Select(i => r.Start + (ulong)i * (ulong)pageSize))
            .Where(a => a >= start && a < start + (ulong)pages * (ulong)pageSize).Select(a => (a - start) / (ulong)pageSize).ToArray();

    private static ulong[] Indexes(string answer) => answer == "-" ? Array.Empty<ulong>() : answer.Split(',').Select(ulong.Parse).ToArray();

    private static string[] UffdFlagged(int pid)
    {
        using var src = ProcPageSource.Open(pid);
        return src.ReadMappings(true).Where(m => m.VmFlags.Contains(RemoteWriteProtect.UffdWriteProtectFlag)).Select(m => m.ToString()).ToArray();
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void EnableCollectDisable_TargetBlockedInRead_ReadsItsCommandsAndKeepsItsState()
    {
        using var t = new WtTarget();
        ulong region = t.Map(64);
        t.Send($"pattern {region:x} 64 7 40");
        var sum = t.Send("sum")[0];
        var fds = t.OpenDescriptors();
        t.WaitInSyscall(ReadSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        using (var tracker = new WriteProtectTracker(src))
        {
            tracker.Reset();
            Assert.Single(WriteTrackingStore.UserfaultfdDescriptors(t.Pid));
            Assert.NotEmpty(UffdFlagged(t.Pid));
            Assert.Equal(sum, t.Send("sum")[0]); // the read() restarted and got the whole command; memory untouched
            t.Send($"write {region:x} 3 2");
            Assert.Equal(new ulong[] { 3, 4 }, PagesIn(tracker.Collect().Ranges, region, 64, t.PageSize));
            Assert.Empty(PagesIn(tracker.Collect().Ranges, region, 64, t.PageSize));
            t.WaitInSyscall(ReadSyscall);
        }
        Assert.Equal(fds, t.OpenDescriptors());
        Assert.Empty(WriteTrackingStore.UserfaultfdDescriptors(t.Pid));
        Assert.Empty(UffdFlagged(t.Pid));
        Assert.Null(WriteTrackingStore.Load(t.Pid));
        t.Send($"write {region:x} 5");
        Assert.Equal("OK", t.Send("exit").Length == 0 ? "OK" : "?");
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void EnableAndDisable_DuringNanosleep_SleepIsRestartedAndEndsWhenItShould()
    {
        using var t = new WtTarget();
        t.Map(16);
        const int ms = 400;
        t.Start($"sleep {ms}");
        t.WaitInSyscall(ClockNanosleepSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        {
            var state = RemoteWriteProtect.Enable(src, new[] { new AddressRange(0, 0) }.Take(0).ToList());
            Assert.True(RemoteWriteProtect.Disable(src, RemoteWriteProtect.RegisteredRanges(src)));
        }
        var answer = t.Receive("sleep");
        Assert.Equal("0", answer[0]); // restarted through restart_syscall, as after a signal without a handler: not EINTR
        Assert.True(long.Parse(answer[2], System.Globalization.CultureInfo.InvariantCulture) >= ms * 1_000_000L, $"slept {answer[2]} ns of {ms} ms: the restarted sleep kept its end");
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void EnableAndDisable_DuringFutexWait_WaitTimesOutAsItWould()
    {
        using var t = new WtTarget();
        const int ms = 400;
        t.Start($"futex {ms}");
        t.WaitInSyscall(FutexSyscall);
        using (var src = ProcPageSource.Open(t.Pid))
        using (var tracker = new WriteProtectTracker(src))
            tracker.Reset();
        var answer = t.Receive("futex");
        Assert.Equal(new[] { "-1", SoftDirty.Errno.ETIMEDOUT.ToString(System.Globalization.CultureInfo.InvariantCulture) }, answer.Take(2).ToArray());
        Assert.True(long.Parse(answer[2], System.Globalization.CultureInfo.InvariantCulture) >= ms * 1_000_000L, $"waited {answer[2]} ns of {ms} ms");
    }

    /// <summary>How long the spinning threads of a target are given to show they run: far longer than any scheduling delay.</summary>
    private static readonly System.TimeSpan SpinWait = System.TimeSpan.FromSeconds(10);

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void MultiThreadedBusyTarget_IsTrackedExactlyAndKeepsRunning()
    {
        using var t = new WtTarget();
        ulong region = t.Map(128);
        Assert.Equal("3", t.Send("threads 3")[0]);
        using (var src = ProcPageSource.Open(t.Pid))
        using (var tracker = new WriteProtectTracker(src))
        {
            tracker.Reset();
            for (int seed = 1; seed <= 5; seed++)
            {
                var wrote = Indexes(t.Send($"pattern {region:x} 128 {seed} 30")[0]);
                Assert.Equal(wrote, PagesIn(tracker.Collect().Ranges, region, 128, t.PageSize));
            }
        }
        // They go on: their count grows. Asked again until it does, for as long as a busy machine may take to run them (20 ms
        // was once not enough on 2 cores at a load of 5); a thread left stopped never adds to it.
        ulong Spins() => ulong.Parse(t.Send("spins")[0], System.Globalization.CultureInfo.InvariantCulture);
        ulong before = Spins();
        bool grew = false;
        for (var clock = System.Diagnostics.Stopwatch.StartNew(); !grew && clock.Elapsed < SpinWait; System.Threading.Thread.Sleep(20)) grew = Spins() > before;
        Assert.True(grew, $"the spinning threads go on after disable (no spin in {SpinWait.TotalSeconds} s)");
        Assert.Empty(WriteTrackingStore.UserfaultfdDescriptors(t.Pid));
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void Exactness_100Patterns_10CollectionsEach_NewMappingsCountedAsSuch()
    {
        using var t = new WtTarget();
        const int pages = 256;
        ulong region = t.Map(pages);
        var rng = new Random(12345);
        using var src = ProcPageSource.Open(t.Pid);
        using var tracker = new WriteProtectTracker(src);
        tracker.Reset();
        int collections = 0;
        for (int pattern = 0; pattern < 100; pattern++)
        {
            ulong? fresh = null;
            if (pattern % 10 == 9)
            {
                fresh = t.Map(8);
                t.Send($"write {fresh:x} 2 3");
            }
            for (int c = 0; c < 10; c++)
            {
                int n = rng.Next(0, 24);
                var wrote = Indexes(t.Send($"pattern {region:x} {pages} {rng.Next(1, int.MaxValue)} {n}")[0]);
                var set = tracker.Collect();
                collections++;
                Assert.Equal(wrote, PagesIn(set.Ranges, region, pages, t.PageSize));
                Assert.Empty(PagesIn(set.NewMappingRanges, region, pages, t.PageSize));
                if (fresh is { } f && c == 0)
                {
                    var whole = Enumerable.Range(0, 8).Select(i => (ulong)i).ToArray(); // new since the last look: wholly, once
                    Assert.Equal(whole, PagesIn(set.NewMappingRanges, f, 8, t.PageSize));
                    Assert.Equal(whole, PagesIn(set.Ranges, f, 8, t.PageSize));
                }
                else if (fresh is { } g && c == 1)
                {
                    Assert.Empty(PagesIn(set.Ranges, g, 8, t.PageSize));
                    t.Send($"write {g:x} 6"); // tracked like the others from now on
                    Assert.Equal(new ulong[] { 6 }, PagesIn(tracker.Collect().Ranges, g, 8, t.PageSize));
                }
            }
        }
        Assert.Equal(1000, collections);
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void TrackingOutlivesTheTracker_ANewTrackerResumesFromTheLastReset()
    {
        using var t = new WtTarget();
        ulong region = t.Map(32);
        using var src = ProcPageSource.Open(t.Pid);
        Assert.Equal(t.Pid, RemoteWriteProtect.Enable(src, new List<AddressRange>()).ProcessId);
        using (var first = new WriteProtectTracker(src)) first.Reset();
        Assert.NotNull(WriteTrackingStore.Load(t.Pid)); // not owned: still enabled
        t.Send($"write {region:x} 9 2");
        using (var second = new WriteProtectTracker(src))
        {
            second.Resume();
            Assert.Equal(new ulong[] { 9, 10 }, PagesIn(second.Collect().Ranges, region, 32, t.PageSize));
        }
        Assert.True(RemoteWriteProtect.Disable(src, RemoteWriteProtect.RegisteredRanges(src)));
        Assert.Empty(WriteTrackingStore.UserfaultfdDescriptors(t.Pid));
        Assert.False(RemoteWriteProtect.Disable(src, new List<AddressRange>()));
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void SeccompFilterDenyingUserfaultfd_IsRefusedAndLeavesNothingBehind()
    {
        using var t = new WtTarget();
        t.Map(8);
        t.Send("seccomp");
        var fds = t.OpenDescriptors();
        string maps = File.ReadAllText($"/proc/{t.Pid}/maps");
        var sum = t.Send("sum")[0];
        t.WaitInSyscall(ReadSyscall);
        using var src = ProcPageSource.Open(t.Pid);
        var ex = Assert.Throws<EngineException>(() => new WriteProtectTracker(src));
        Assert.Equal(EngineError.SeccompForbids, ex.Error);
        Assert.Equal(fds, t.OpenDescriptors());
        Assert.Equal(maps, File.ReadAllText($"/proc/{t.Pid}/maps"));
        Assert.Null(WriteTrackingStore.Load(t.Pid));
        Assert.Equal(sum, t.Send("sum")[0]);
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void AlreadyTracedProcess_IsRefusedUntouched()
    {
        using var t = new WtTarget();
        int child = int.Parse(t.Send("traced")[0], System.Globalization.CultureInfo.InvariantCulture);
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (InjectionSupport.Check(child, KernelProbe.Current) is null && DateTime.UtcNow < deadline) System.Threading.Thread.Sleep(1);
            using var src = ProcPageSource.Open(child);
            var ex = Assert.Throws<EngineException>(() => new WriteProtectTracker(src));
            Assert.Equal(EngineError.ProcessAlreadyTraced, ex.Error);
            Assert.Contains(t.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture), ex.Message);
            Assert.False(WriteProtectTracker.IsSupported(src, out var why));
            Assert.Contains("ProcessAlreadyTraced", why);
            Assert.Equal(TrackingMethod.Hash, DirtyTracker.Resolve(src, TrackingMethod.Auto, out _));
        }
        finally { SoftDirty.Native.Kill(child, SoftDirty.Signal.SIGKILL); }
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void ChildOfThisProcess_IsTrackedExactlyAndFrozen_AndItsExitCodeStillReachesProcess()
    {
        // A direct child that .NET's Process started: its ptrace stops must not reach .NET's reaping (ChildStopGuard).
        using var child = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(WtTarget.PathOf("wttarget")) { RedirectStandardInput = true, RedirectStandardOutput = true })!;
        string[] Send(string command)
        {
            child.StandardInput.WriteLine(command);
            child.StandardInput.Flush();
            var line = child.StandardOutput.ReadLine() ?? throw new InvalidOperationException($"wttarget exited during '{command}'");
            Assert.True(line.StartsWith("OK", StringComparison.Ordinal), $"'{command}' answered '{line}'");
            return line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).ToArray();
        }
        try
        {
            var ready = child.StandardOutput.ReadLine()!.Split(' ');
            int pageSize = int.Parse(ready[2], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Null(InjectionSupport.Check(child.Id, KernelProbe.Current));
            ulong region = Convert.ToUInt64(Send("map 64")[0], 16);
            Send($"pattern {region:x} 64 5 30");
            var fds = Directory.GetFileSystemEntries($"/proc/{child.Id}/fd").Length;
            using (var src = ProcPageSource.Open(child.Id))
            {
                using (var tracker = new WriteProtectTracker(src))
                {
                    tracker.Reset();
                    for (int round = 0; round < 10; round++)
                    {
                        var wrote = Indexes(Send($"pattern {region:x} 64 {round + 100} {round * 3}")[0]);
                        Assert.Equal(wrote, PagesIn(tracker.Collect().Ranges, region, 64, pageSize));
                        Assert.False(child.HasExited, "the child's ptrace stops were taken for its exit");
                    }
                }
                Assert.Empty(WriteTrackingStore.UserfaultfdDescriptors(child.Id));
                var sum = Send("sum")[0];
                using (var freeze = ProcessFreeze.Freeze(src))
                {
                    Assert.Equal('t', ProcessFreeze.ThreadState($"/proc/{child.Id}/stat"));
                    // Injection while frozen uses the freeze's stop (the kernel refuses a second attach).
                    using (var tracker = new WriteProtectTracker(src))
                    {
                        tracker.Reset();
                        Assert.Empty(PagesIn(tracker.Collect().Ranges, region, 64, pageSize));
                    }
                    Assert.Equal('t', ProcessFreeze.ThreadState($"/proc/{child.Id}/stat"));
                    Assert.False(child.HasExited, "the freeze's ptrace stop was taken for the child's exit");
                }
                Assert.Equal(sum, Send("sum")[0]); // it goes on exactly: memory untouched, its command read whole
            }
            Assert.Equal(fds, Directory.GetFileSystemEntries($"/proc/{child.Id}/fd").Length);
            Send("exit 7");
            Assert.True(child.WaitForExit(10000));
            Assert.Equal(7, child.ExitCode);
        }
        finally { if (!child.HasExited) { child.Kill(); child.WaitForExit(5000); } }
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void ExitedProcess_IsNotFound()
    {
        var t = new WtTarget();
        int pid = t.Pid;
        t.Send("exit");
        t.Dispose();
        var refused = InjectionSupport.Check(pid, KernelProbe.Current);
        Assert.NotNull(refused);
        Assert.Contains(refused!.Error, new[] { EngineError.ProcessNotFound, EngineError.ProcessExited });
    }

    /// <summary>
    /// Ctrl+C while injection waits for a vfork to end (the target's one thread waits in vfork for a child that sleeps): the
    /// wait ends at once, nothing attached and nothing saved. Before, the wait took no cancellation: it ran its whole bound
    /// (<see cref="VforkWait.Bound"/>) and ended in ProcIOError whatever Ctrl+C said.
    /// </summary>
    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    public void EnableWhileTheOnlyThreadWaitsInVfork_CtrlCEndsTheWait_NothingAttached()
    {
        using var t = new WtTarget();
        t.Send("vfork 60000");
        var deadline = DateTime.UtcNow.AddSeconds(30);
        int child;
        while (!VforkWait.Waits(t.Pid, t.Pid, out child))
        {
            Assert.True(DateTime.UtcNow < deadline, "wttarget's thread never waited in vfork");
            System.Threading.Thread.Sleep(1);
        }
        using var cts = new System.Threading.CancellationTokenSource();
        // Ctrl+C as injection is about to pick its thread (the mappings read, nothing attached yet).
        InjectionSteps.Current = new InjectionSteps { OnStep = s => { if (s == "read the mappings") cts.Cancel(); } };
        try
        {
            using var src = ProcPageSource.Open(t.Pid);
            Assert.Throws<OperationCanceledException>(() => new WriteProtectTracker(src, cancel: cts.Token));
        }
        finally { InjectionSteps.Current = null; }
        Assert.True(cts.IsCancellationRequested, "the step hook never ran: the test no longer reaches the vfork wait");
        Assert.True(VforkWait.Waits(t.Pid, t.Pid, out _), "the thread still waits in vfork");
        Assert.Contains("TracerPid:\t0", File.ReadAllText($"/proc/{t.Pid}/status"), StringComparison.Ordinal);
        Assert.Null(WriteTrackingStore.Load(t.Pid));
        if (child > 0) System.Diagnostics.Process.GetProcessById(child).Kill();
    }

    private static string SmapsBlock(ulong start, ulong end, string flags) =>
        $"{start:x}-{end:x} rw-p 00000000 00:00 0 \nSize: {(end - start) / 1024} kB\nVmFlags: {flags} \n";

    /// <summary>
    /// The registrations a look compares with the tracking's own (round 32: a userfaultfd the process hides registered a
    /// range after the enabling, and the module re-protected it): only VMAs registered for write-protect that meet the
    /// tracked ranges count, and a VMA registered anew, or a registration that moved, changes the digest.
    /// </summary>
    [Fact]
    public void RegistrationDigest_ChangesWithTheWriteProtectRegistrationsOfTheTrackedRanges()
    {
        var ranges = new[] { new AddressRange(0x10000, 0x20000), new AddressRange(0x40000, 0x50000) };
        string Digest(params string[] blocks) => RemoteWriteProtect.RegistrationDigest(MapsParser.Parse(string.Concat(blocks)), ranges);
        string tracked = SmapsBlock(0x10000, 0x20000, "rd wr mr mw me ac uw");
        string plain = SmapsBlock(0x40000, 0x50000, "rd wr mr mw me ac");
        string before = Digest(tracked, plain);
        // A VMA outside the tracked ranges, or one not registered for write-protect, is not part of it.
        Assert.Equal(before, Digest(tracked, plain, SmapsBlock(0x60000, 0x70000, "rd wr mr mw me ac uw")));
        Assert.Equal(before, Digest(tracked, SmapsBlock(0x40000, 0x50000, "rd wr mr mw me ac um")));
        // The untracked VMA registered (by whichever userfaultfd), or the registered one split, is another set of registrations.
        Assert.NotEqual(before, Digest(tracked, SmapsBlock(0x40000, 0x50000, "rd wr mr mw me ac uw")));
        Assert.NotEqual(before, Digest(SmapsBlock(0x10000, 0x18000, "rd wr mr mw me ac uw"), SmapsBlock(0x18000, 0x20000, "rd wr mr mw me ac uw"), plain));
        Assert.NotEqual(before, Digest(plain));
    }
}
