using System;
using System.Collections.Generic;
using System.Threading;
using SoftDirty.Emulation;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>
/// An emulated process as the workflows see it: the page source itself, plus the capabilities a real
/// process lacks. <see cref="IWorkloadDriver"/> runs the workload in emulated time; <see
/// cref="IAsyncWriteProtectSource"/> registers its memory for async write-protect (the emulator's
/// userfaultfd); <see cref="IFreezable"/> stops the workload (what SIGSTOP does to a real one).
/// </summary>
internal sealed class EmulatedTarget : PageSourceWrapper, IWorkloadDriver, IAsyncWriteProtectSource, IFreezable
{
    private int _seed;

    public EmulatedTarget(EmulatedProcess process, EmulatedWorkloadSpec? workload = null) : base(process)
    {
        workload?.Validate();
        Process = process;
        Workload = workload;
        _seed = workload?.Seed ?? 1;
    }

    public EmulatedProcess Process { get; }
    public EmulatedWorkloadSpec? Workload { get; set; }
    public bool Frozen { get; private set; }
    /// <summary>Emulated seconds the workload has run.</summary>
    public double EmulatedSeconds { get; private set; }

    private const double AccessBatch = 1 << 22;

    public void Advance(TimeSpan interval, CancellationToken cancel)
    {
        cancel.ThrowIfCancellationRequested();
        EmulatedSeconds += interval.TotalSeconds;
        if (Frozen || Workload is not { } w) return;
        double total = Math.Round(w.AccessesPerSecond * interval.TotalSeconds);
        // In batches, so that Ctrl+C stops a long interval (one batch per call keeps short runs as they were).
        for (double done = 0; done < total; done += AccessBatch)
        {
            cancel.ThrowIfCancellationRequested();
            long count = (long)Math.Min(AccessBatch, total - done);
            if (count > 0) EmulatedWorkload.Run(Process, w.Address, w.Length, w.Pattern, count, w.WriteRatio, _seed++, cancel);
        }
    }

    /// <summary>The emulator's userfaultfd keeps the registration for the process's life: disposing is a no-op.</summary>
    public IDisposable RegisterAsyncWriteProtect(ulong start, ulong end)
    {
        Process.RegisterUffdWriteProtectAsync(start, end - start);
        return NoOp.Instance;
    }

    public void Freeze() => Frozen = true;
    public void Thaw() => Frozen = false;

    private sealed class NoOp : IDisposable
    {
        public static readonly NoOp Instance = new();
        public void Dispose() { }
    }
}
