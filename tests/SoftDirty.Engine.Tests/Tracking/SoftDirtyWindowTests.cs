using System;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Tests.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// The process is stopped for the moment between reading soft-dirty and clearing it (found in the eighth attack
/// round: a page written in that moment was missing from that increment and from every later one of the chain).
/// What the window does for each kind of process; the whole effect is tested in the soft-dirty VM
/// (SoftDirty.Tests.ps1, "A soft-dirty image chain of a process that writes while it is saved").
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class SoftDirtyWindowTests
{
    private const HostNeeds Ptrace = HostNeeds.Linux | HostNeeds.SyscallInjection;

    [HostFact(Ptrace)]
    public void AnotherProcess_IsStoppedForTheWindow_AndRunsAfter()
    {
        using var t = new WtTarget();
        t.Send("threads 1"); // a thread that runs all the time, besides the one waiting for commands
        using var src = ProcPageSource.Open(t.Pid);
        using (var window = SoftDirtyWindow.Stop(src, default, out bool exact, out string? why))
        {
            Assert.NotNull(window);
            Assert.True(exact, why);
            Assert.True(ProcessFreeze.AllStopped(t.Pid));
        }
        Assert.False(ProcessFreeze.AllStopped(t.Pid));
        Assert.NotEmpty(t.Send("spins")); // it answers commands again
    }

    [HostFact(Ptrace)]
    public void AProcessThisThreadFroze_IsLeftFrozen()
    {
        using var t = new WtTarget();
        using var src = ProcPageSource.Open(t.Pid);
        using (ProcessFreeze.Freeze(src))
        {
            using (SoftDirtyWindow.Stop(src, default, out bool exact, out _)) // its lock only
                Assert.True(exact);
            Assert.True(ProcessFreeze.AllStopped(t.Pid)); // the window resumed nothing the caller stopped
        }
        Assert.False(ProcessFreeze.AllStopped(t.Pid));
    }

    [HostFact(HostNeeds.Linux)]
    public void ThisProcess_CannotBeStopped_AndSaysSo()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        using var window = SoftDirtyWindow.Stop(self, default, out bool exact, out string? why); // its lock only
        Assert.False(exact);
        Assert.Contains("itself", why);
    }

    [Fact]
    public void AnEmulatedProcess_NeedsNoStop_OnlyItsLock()
    {
        var e = new EmulatedProcess();
        using (var window = SoftDirtyWindow.Stop(e, default, out bool exact, out string? why))
        {
            Assert.NotNull(window); // the soft-dirty lock (SoftDirtyLockTests)
            Assert.True(exact);
            Assert.Null(why);
        }
    }
}
