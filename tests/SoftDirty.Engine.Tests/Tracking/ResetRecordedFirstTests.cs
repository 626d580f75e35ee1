using System;
using System.Collections.Generic;
using System.Linq;
using SoftDirty;
using SoftDirty.Injection;
using SoftDirty.Tests.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// A reset (re-protect, soft-dirty clear) is recorded before it is made. Found in the eighth attack round: a
/// Watch-DirtyPage -Method WriteProtect killed (or stopped with Ctrl+C) after the kernel re-protected the pages and
/// before the new reset was saved left the state file saying "no reset since the last image", so the next
/// increment of the chain trusted the write-protect bits and silently missed every write before the watch.
/// A command stopped at the step after the reset is simulated by throwing from that step's mark (and so a kill right
/// after enabling, below).
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class ResetRecordedFirstTests : IDisposable
{
    private const HostNeeds Injection = HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection;
    private readonly StateFolderScope _state = new();

    public void Dispose()
    {
        InjectionSteps.Current = null;
        _state.Dispose();
    }

    private sealed class StoppedHere : Exception
    {
        public StoppedHere(string step) : base(step) { }
    }

    /// <summary>Runs <paramref name="command"/> and stops it with an exception at the end of <paramref name="step"/>.</summary>
    private static void StopAt(string step, Action command)
    {
        InjectionSteps.Current = new InjectionSteps { OnStep = s => { if (s == step) throw new StoppedHere(s); } };
        try { Assert.Throws<StoppedHere>(command); }
        finally { InjectionSteps.Current = null; }
    }

    [HostTheory(Injection)]
    [InlineData(true)]  // a collection (Watch-DirtyPage's samples, a pre-copy round, an increment)
    [InlineData(false)] // a reset (the first look of a watch, a full image)
    public void StoppedAfterTheKernelReProtected_TheResetIsRecorded_AndTheChainComparesInstead(bool collect)
    {
        using var t = new WtTarget();
        ulong region = t.Map(16);
        using var src = ProcPageSource.Open(t.Pid);
        RemoteWriteProtect.Enable(src, new List<AddressRange>());
        using (var first = new WriteProtectTracker(src)) first.Reset();
        var parentReset = WriteTrackingStore.Load(t.Pid)!.ResetId; // what the chain's last image recorded
        t.Send($"write {region:x} 2 3");

        using (var watch = new WriteProtectTracker(src))
        {
            if (collect)
            {
                watch.Resume();
                StopAt(WriteProtectTracker.StepCollected, () => watch.Collect(rearm: true));
            }
            else StopAt(WriteProtectTracker.StepProtected, () => watch.Reset());
        }
        // The write-protect bits of pages 2-4 were taken away: only the record can tell the chain.
        Assert.NotEqual(parentReset, WriteTrackingStore.Load(t.Pid)!.ResetId);
        using var chain = new WriteProtectTracker(src);
        chain.Resume(parentReset);
        var set = chain.Collect();
        Assert.True(set.ResetElsewhere);
        Assert.Equal(new ulong[] { 2, 3, 4 }, TrackingRound6Tests.PagesIn(set.Ranges, region, 16, t.PageSize).Intersect(new ulong[] { 2, 3, 4 }).ToArray());
    }

    [HostFact(HostNeeds.Linux)]
    public void SoftDirtyEpoch_IsRecordedBeforeTheClear()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        string? before = TrackingEpoch.Current(self);
        IPageSource failing = new ClearRefsRefused(self);
        Assert.Throws<StoppedHere>(() => failing.ClearRefs(ClearRefsType.SoftDirty));
        string? after = TrackingEpoch.Current(self);
        Assert.NotNull(after);
        Assert.NotEqual(before, after); // a clear stopped at any point is never one no epoch tells of
    }

    /// <summary>Wraps a source (same process, same epochs) and throws from its clear_refs write: a command stopped just before it.</summary>
    private sealed class ClearRefsRefused : PageSourceWrapper
    {
        public ClearRefsRefused(IPageSource inner) : base(inner) { }
        public override int WriteClearRefs(ReadOnlySpan<byte> text) => throw new StoppedHere("clear_refs");
    }

    /// <summary>
    /// A command that enables write tracking for itself alone (a watch, a migration) is the tracking's user from the moment
    /// its state is saved. Before, it joined in a second save: a PowerShell killed between the two left a tracking that no
    /// command counted, so none ever disabled it (the target kept its userfaultfd and its write faults for good).
    /// </summary>
    [HostFact(Injection)]
    public void KilledRightAfterEnablingForItself_TheNextCommandEndsTheTracking()
    {
        using var t = new WtTarget();
        t.Map(4);
        using var src = ProcPageSource.Open(t.Pid);
        StopAt("state file save", () => new WriteProtectTracker(src).Dispose());

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
