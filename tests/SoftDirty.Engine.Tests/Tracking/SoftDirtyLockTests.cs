using System;
using System.Linq;
using System.Threading;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Two commands' soft-dirty record-and-clear never interleave (noticed after the eighth attack round): command A
/// (Clear-SoftDirty, a save) recorded its epoch, command B (a watch sample, an increment) read, recorded and cleared,
/// then A cleared. The epoch on record was B's, so B's next read trusted soft-dirty though A's clear had taken the
/// bits of every page written between B's clear and A's: those pages were missing from B's watch, chain or
/// migration for good. Both now hold the process's soft-dirty lock (<see cref="TrackingEpoch.Lock"/>).
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class SoftDirtyLockTests : IDisposable
{
    private const int Page = 4096;

    public void Dispose() => InjectionSteps.Current = null;

    /// <summary>Runs <paramref name="work"/> on a thread of its own and returns what it threw (null: nothing).</summary>
    private static Exception? OnAnotherThread(Action work, Action<string>? onStep = null)
    {
        Exception? thrown = null;
        var thread = new Thread(() =>
        {
            InjectionSteps.Current = onStep is null ? null : new InjectionSteps { OnStep = onStep };
            try { work(); }
            catch (Exception ex) { thrown = ex; }
            finally { InjectionSteps.Current = null; }
        });
        thread.Start();
        Assert.True(thread.Join(TimeSpan.FromMinutes(2)), "hang guard: the other thread never ended");
        return thrown;
    }

    [Fact]
    public void AClearBetweenAnotherCommandsReadAndClear_CannotHideAWrite()
    {
        var p = new EmulatedProcess("lock", KernelProfile.Get(KernelProfile.DefaultName));
        ulong a = p.Mmap(null, 8 * Page, Protection.Read | Protection.Write).Start;
        p.Write(a, 4 * Page); // pages 0-3 present; page 5 is written later
        using var watch = new SoftDirtyTracker(p);
        watch.Reset();
        p.Write(a, 16);

        DirtyPageSet? first = null;
        Thread? other = null;
        using var waitingOrDone = new ManualResetEventSlim();
        Exception? otherFailed = null;
        // Command A records its epoch; command B's whole collection runs now (or waits for A's lock); page 5 is written;
        // then A clears.
        InjectionSteps.Current = new InjectionSteps
        {
            OnStep = s =>
            {
                if (s != TrackingEpoch.RecordedStep || other is not null) return;
                other = new Thread(() =>
                {
                    InjectionSteps.Current = new InjectionSteps { OnStep = w => { if (w == TrackingEpoch.LockWaitStep) waitingOrDone.Set(); } };
                    try { first = watch.Collect(); }
                    catch (Exception ex) { otherFailed = ex; }
                    finally { InjectionSteps.Current = null; waitingOrDone.Set(); }
                });
                other.Start();
                Assert.True(waitingOrDone.Wait(TimeSpan.FromMinutes(2)), "hang guard: the watch neither waited nor ended");
                p.Write(a + 5 * Page, 16);
            },
        };
        p.ClearRefs(ClearRefsType.SoftDirty); // command A: Clear-SoftDirty
        InjectionSteps.Current = null;
        Assert.NotNull(other);
        Assert.True(other!.Join(TimeSpan.FromMinutes(2)), "hang guard: the watch never ended");
        Assert.Null(otherFailed);

        var second = watch.Collect();
        var seen = TrackingRound6Tests.PagesIn(first!.Ranges, a, 8, Page).Concat(TrackingRound6Tests.PagesIn(second.Ranges, a, 8, Page));
        Assert.Contains(5UL, seen); // written after the watch's previous look: in one of its collections
    }

    [HostFact(HostNeeds.Linux)]
    public void ARealProcesssLock_KeepsOtherThreadsOut_IsReentrant_AndCtrlCEndsTheWait()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var outer = TrackingEpoch.Lock(self, default);
        Assert.NotNull(outer); // the per-user epoch folder is usable here (a temp folder of this user)
        try
        {
            TrackingEpoch.Lock(self, default)!.Dispose(); // re-entered on this thread without a wait, released once

            bool waited = false;
            using var cts = new CancellationTokenSource();
            var thrown = OnAnotherThread(() => TrackingEpoch.Lock(self, cts.Token)?.Dispose(),
                s => { if (s == TrackingEpoch.LockWaitStep) { waited = true; cts.Cancel(); } });
            Assert.True(waited);
            Assert.IsAssignableFrom<OperationCanceledException>(thrown);
        }
        finally { outer!.Dispose(); }

        bool waitedAfter = false;
        var after = OnAnotherThread(() => { using var l = TrackingEpoch.Lock(self, default); Assert.NotNull(l); },
            s => { if (s == TrackingEpoch.LockWaitStep) waitedAfter = true; });
        Assert.Null(after);
        Assert.False(waitedAfter); // released: taken at once
    }
}
