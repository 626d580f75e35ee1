using System;
using System.Collections.Generic;
using SoftDirty.Injection;
using SoftDirty.Tests.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// A command that enables write tracking for itself alone (a watch, a migration) is the tracking's user from the
/// moment its state is saved. Before, it joined in a second save: a PowerShell killed between the two left a tracking
/// that no command counted, so none ever disabled it (the target kept its userfaultfd and its write faults for good).
/// A kill right after the first save is simulated by throwing from that step's mark.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class EnabledForItselfTests : IDisposable
{
    private const HostNeeds Injection = HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection;
    private readonly StateFolderScope _state = new();

    public void Dispose()
    {
        InjectionSteps.Current = null;
        _state.Dispose();
    }

    private sealed class KilledHere : Exception
    {
        public KilledHere(string step) : base(step) { }
    }

    [HostFact(Injection)]
    public void ACommandKilledRightAfterEnabling_LeavesATrackingTheNextCommandEnds()
    {
        using var t = new WtTarget();
        t.Map(4);
        using var src = ProcPageSource.Open(t.Pid);
        InjectionSteps.Current = new InjectionSteps { OnStep = s => { if (s == "state file save") throw new KilledHere(s); } };
        try { Assert.Throws<KilledHere>(() => new WriteProtectTracker(src).Dispose()); }
        finally { InjectionSteps.Current = null; }

        var state = WriteTrackingStore.Load(t.Pid);
        Assert.NotNull(state);
        Assert.True(state.Counted, "the tracking enabled for a command alone was saved as nobody's");
        var user = Assert.Single(state.Users);
        // That PowerShell is gone (a start time no process has stands for it), as after kill -9.
        state.Users = new List<WriteTrackingUser> { user with { StartTime = user.StartTime + 1 } };
        WriteTrackingStore.Save(state);

        // The next command uses the tracking and, the last one to end, disables it.
        new WriteProtectTracker(src).Dispose();
        Assert.Null(WriteTrackingStore.Load(t.Pid));
        Assert.Empty(WriteTrackingStore.UserfaultfdDescriptors(t.Pid));
    }
}
