using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using SoftDirty.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Ptrace finds threads by path (/proc/PID/task): a process that exits after its source was opened may pass its pid to
/// another process, which a freeze (-Freeze, the soft-dirty window) or a syscall injection (write tracking) must never
/// stop or run calls in. Checked once the thread is stopped, through the source's /proc/PID descriptor.
/// </summary>
public sealed class PidReuseAttachTests
{
    /// <summary>Before the check the freeze stopped the new process and reported success.</summary>
    [PidChoiceFact]
    public void AFreezeNeverStopsTheProcessThatReusedThePid()
    {
        for (int attempt = 0; attempt < PidReuse.Attempts; attempt++)
        {
            using var a = PidReuse.Start("sleep", "600");
            using var source = ProcPageSource.Open(a.Id);
            using var b = PidReuse.Replace(a, "cat");
            if (b is null) continue; // another process took the pid first on this busy machine
            try
            {
                var error = Assert.Throws<EngineException>(() => ProcessFreeze.Freeze(source).Dispose());
                Assert.Equal(EngineError.ProcessExited, error.Error);
                Assert.NotEqual('t', State(b.Id)); // let go again, not left in a ptrace stop
                return;
            }
            finally { b.Kill(); b.WaitForExit(); }
        }
        Assert.Fail($"no pid could be reused in {PidReuse.Attempts} attempts");
    }

    /// <summary>
    /// The pid reused between the injection's choice of thread and its PTRACE_SEIZE (the step hook stands for that
    /// moment): before the check the calls (a trampoline, registers, a signal mask) went to the new process.
    /// </summary>
    [PidChoiceFact(HostNeeds.SyscallInjection)]
    public void AnInjectionNeverRunsInTheProcessThatReusedThePid()
    {
        for (int attempt = 0; attempt < PidReuse.Attempts; attempt++)
        {
            var a = PidReuse.Start("sleep", "600");
            using var source = ProcPageSource.Open(a.Id);
            Process? b = null;
            var steps = new InjectionSteps { OnStep = step => { if (step == "pick a thread") b = PidReuse.Replace(a, "cat"); } };
            InjectionSteps.Current = steps;
            try
            {
                var error = Record.Exception(() => RemoteSyscalls.Attach(source).Dispose());
                if (b is null) continue; // another process took the pid first on this busy machine
                var engine = Assert.IsType<EngineException>(error);
                Assert.Equal(EngineError.ProcessExited, engine.Error);
                Assert.NotEqual('t', State(b.Id));
                return;
            }
            finally
            {
                InjectionSteps.Current = null;
                if (!a.HasExited) a.Kill();
                a.Dispose();
                if (b is not null) { b.Kill(); b.WaitForExit(); b.Dispose(); }
            }
        }
        Assert.Fail($"no pid could be reused in {PidReuse.Attempts} attempts");
    }

    private static char State(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[stat.LastIndexOf(')') + 2];
    }
}
