using System;
using System.Collections.Generic;
using System.Threading;
using SoftDirty.Emulation;
using SoftDirty.Images;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>What an emulated process does between samples and rounds: a workload over a range, in accesses per emulated second.</summary>
public sealed class EmulatedWorkloadSpec
{
    public ulong Address { get; init; }
    public ulong Length { get; init; }
    public WorkloadPattern Pattern { get; init; } = WorkloadPattern.HotSet;
    /// <summary>Accesses per emulated second.</summary>
    public double AccessesPerSecond { get; init; } = 10_000;
    /// <summary>The share of accesses that write.</summary>
    public double WriteRatio { get; init; } = 0.5;
    public int Seed { get; init; } = 1;

    /// <summary>Far above what any CPU writes (about 1e9 stores a second per core): a rate above it is a typo, not a workload.</summary>
    public const double MaxAccessesPerSecond = 1e10;

    /// <summary>Throws InvalidArgument for a rate or ratio no workload has, or a range that wraps.</summary>
    public void Validate()
    {
        if (!double.IsFinite(AccessesPerSecond) || AccessesPerSecond < 0 || AccessesPerSecond > MaxAccessesPerSecond)
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument, $"The workload's AccessesPerSecond {AccessesPerSecond} is out of range (0 to {MaxAccessesPerSecond:g}).", AccessesPerSecond);
        if (!double.IsFinite(WriteRatio) || WriteRatio < 0 || WriteRatio > 1)
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument, $"The workload's WriteRatio {WriteRatio} is out of range (0 to 1).", WriteRatio);
        if (Length == 0 || Length > ulong.MaxValue - Address)
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument, $"The workload's range 0x{Address:x} + 0x{Length:x} is empty or wraps past the end of the address space.", Length);
    }
}

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
            if (count > 0) EmulatedWorkload.Run(Process, w.Address, w.Length, w.Pattern, count, w.WriteRatio, _seed++);
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

/// <summary>
/// Restores a memory image chain into an emulated process: each mapping mapped at its address, each page
/// written. Only into free address space: a mapping of the image that overlaps memory the process has is
/// refused (ImageExists) before anything is mapped, as a non-empty destination directory is. Disposed
/// without <see cref="Complete"/> (a failure or Ctrl+C after <see cref="Prepare"/>), the mappings it made are
/// unmapped again: the process is left as it was.
/// </summary>
public sealed class EmulatedProcessRestoreTarget : IRestoreTarget, IDisposable
{
    private readonly List<(ImageMapping Mapping, Protection Prot)> _mappings = new();
    private bool _complete;

    public EmulatedProcessRestoreTarget(EmulatedProcess process) => Process = process;

    public EmulatedProcess Process { get; }
    public ulong PagesWritten { get; private set; }

    public void Prepare(IReadOnlyList<ImageMapping> mappings, int pageSize)
    {
        var existing = Process.ReadMappings(false);
        foreach (var m in mappings)
            foreach (var e in existing)
                if (m.Start < e.End && e.Start < m.End)
                    throw new SoftDirtyException(SoftDirtyError.ImageExists,
                        $"Emulated process {Process.ProcessId} ({Process.Name}) already has memory at 0x{e.Start:x}-0x{e.End:x}, where the image maps 0x{m.Start:x}-0x{m.End:x}; a restore replaces nothing. Restore into a new emulated process (New-EmulatedProcess).", Process.ProcessId);
        foreach (var m in mappings)
        {
            var (prot, shared) = MemoryMapping.ParsePermissions(m.Permissions);
            // Mapped writable (anonymous: the bytes come from the image), the protection set in Complete.
            _mappings.Add((m, prot));
            Process.Mmap(m.Start, m.End - m.Start, Protection.Read | Protection.Write, shared ? MmapFlags.Shared | MmapFlags.Fixed : MmapFlags.Fixed);
        }
    }

    public void WritePage(ulong address, ReadOnlySpan<byte> page)
    {
        Process.Write(address, page);
        PagesWritten++;
    }

    public void Complete()
    {
        foreach (var (m, prot) in _mappings)
            if (prot != (Protection.Read | Protection.Write)) Process.Mprotect(m.Start, m.End - m.Start, prot);
        _complete = true;
    }

    /// <summary>Unmaps what <see cref="Prepare"/> mapped unless the restore completed.</summary>
    public void Dispose()
    {
        if (_complete) return;
        _complete = true;
        foreach (var (m, _) in _mappings)
        {
            try { Process.Munmap(m.Start, m.End - m.Start); }
            catch (SoftDirtyException) { } // not mapped (Mmap refused it): nothing to undo
        }
    }
}
