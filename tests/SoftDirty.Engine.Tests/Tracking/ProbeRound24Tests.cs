using System;
using System.Threading;
using SoftDirty.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Round 24: the kernel probe (Get-SoftDirtySupport, -Refresh) clears this process's soft-dirty under its lock; a wait for
/// that lock, held by another command of this PowerShell (a watch of itself in another runspace), could not be ended by
/// Ctrl+C. Runs alone: the lock of this test process is held.
/// </summary>
[Collection(MemoryMeasurement.Name)]
public sealed class ProbeRound24Tests
{
    [HostFact]
    public void AProbeWaitingForThisProcesssSoftDirtyLockEndsWhenCancelled()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        using var held = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        // Another thread's hold: a lock of its own open file (the lock is re-entrant only on one thread).
        var holder = new Thread(() =>
        {
            using (TrackingEpoch.Lock(self, default))
            {
                held.Set();
                release.Wait();
            }
        });
        holder.Start();
        held.Wait();
        using var cts = new CancellationTokenSource();
        bool waited = false;
        InjectionSteps.Current = new InjectionSteps { OnStep = step => { if (step == TrackingEpoch.LockWaitStep) { waited = true; cts.Cancel(); } } };
        try
        {
            Assert.Throws<OperationCanceledException>(() => KernelProbe.Refresh(cts.Token));
            Assert.True(waited, "the probe waited for the lock the other thread holds");
        }
        finally
        {
            InjectionSteps.Current = null;
            release.Set();
            holder.Join();
        }
        Assert.False(string.IsNullOrEmpty(KernelProbe.Refresh(CancellationToken.None).KernelRelease)); // and probes once it is free
    }
}
