using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Management.Automation;
using System.Threading;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// What every SoftDirty cmdlet shares: turning engine errors into ErrorRecords, Ctrl+C, throttled progress
/// and opening page sources. Cmdlets stay thin: they bind parameters and call the engine.
/// </summary>
public abstract class SoftDirtyCmdlet : PSCmdlet
{
    /// <summary>Parameter set of cmdlets that take real process ids.</summary>
    public const string IdSet = "Id";
    /// <summary>Parameter set of cmdlets that take an emulated process.</summary>
    public const string EmulatorSet = "Emulator";

    private readonly CancellationTokenSource _stop = new();
    private bool _platformChecked;

    /// <summary>Cancelled when the user presses Ctrl+C.</summary>
    protected CancellationToken Cancellation => _stop.Token;

    protected override void StopProcessing() => _stop.Cancel();

    /// <summary>The /proc cmdlets stop with a terminating PlatformNotSupported off Linux.</summary>
    protected void EnsureLinux()
    {
        if (_platformChecked) return;
        try { ProcPageSource.EnsureLinux(); }
        catch (SoftDirtyException ex) { ThrowTerminatingError(ToErrorRecord(ex)); }
        _platformChecked = true;
    }

    /// <summary>Opens the real process <paramref name="pid"/>, or writes the error and returns null.</summary>
    protected IPageSource? OpenProcess(int pid)
    {
        EnsureLinux();
        try { return ProcPageSource.Open(pid); }
        catch (SoftDirtyException ex) { WriteError(ToErrorRecord(ex)); return null; }
    }

    /// <summary>-Length needs -Address, and -Address excludes -Mapping: a terminating InvalidArgument otherwise.</summary>
    protected void CheckRangeParameters(ulong? address, ulong? length, string[]? mapping)
    {
        if (address is null && length is not null)
            ThrowTerminatingError(ToErrorRecord(new SoftDirtyException(SoftDirtyError.InvalidArgument, "-Length needs -Address.", length)));
        if (address is not null && mapping is not null)
            ThrowTerminatingError(ToErrorRecord(new SoftDirtyException(SoftDirtyError.InvalidArgument, "Give either -Address with -Length or -Mapping, not both.", mapping)));
    }

    /// <summary>
    /// The spans -Address/-Length or -Mapping select (every mapping without either). An address range outside
    /// every mapping throws InvalidArgument; no matching name writes MappingNotFound and returns null. With
    /// <paramref name="roundLength"/> the length is rounded up to a page, as PAGEMAP_SCAN rounds its end;
    /// else it must be page-aligned and pages outside any mapping are skipped with a warning.
    /// </summary>
    protected List<PageSpan>? SelectSpans(IPageSource source, IReadOnlyList<MemoryMapping> mappings,
        ulong? address, ulong? length, string[]? mapping, bool roundLength = false)
    {
        ulong pageSize = (ulong)source.PageSize;
        if (address is { } start)
        {
            ulong len = length ?? pageSize;
            CheckNoWrap(start, len, roundLength ? pageSize : 1);
            if (roundLength) len = (len + pageSize - 1) / pageSize * pageSize;
            var spans = PageMapReader.SpansOfRange(mappings, start, len, source.PageSize, out var unmapped);
            if (spans.Count == 0)
                throw new SoftDirtyException(SoftDirtyError.InvalidArgument,
                    $"0x{start:x}-0x{start + len:x} lies outside every mapping of process {source.ProcessId} ({source.Name}); see Get-MemoryMapping -Id {source.ProcessId}.", start);
            if (unmapped != 0 && !roundLength)
                WriteWarning($"{unmapped / pageSize} page(s) of 0x{start:x}-0x{start + len:x} lie outside any mapping of process {source.ProcessId} and are skipped.");
            return spans;
        }
        if (mapping is { Length: > 0 })
        {
            var spans = PageMapReader.SpansOf(mappings, new MappingSelector(mapping).IsMatch);
            if (spans.Count == 0)
            {
                WriteError(SoftDirtyError.MappingNotFound,
                    $"No mapping of process {source.ProcessId} ({source.Name}) matches '{string.Join("', '", mapping)}'; see Get-MemoryMapping -Id {source.ProcessId}.", source.ProcessId);
                return null;
            }
            return spans;
        }
        if (mappings.Count == 0)
        {
            WriteError(SoftDirtyError.MappingNotFound,
                $"Process {source.ProcessId} ({source.Name}) has no user address space (a kernel thread, or a zombie): there are no pages to read.", source.ProcessId);
            return null;
        }
        return PageMapReader.SpansOf(mappings);
    }

    /// <summary>[start, start + length) rounded up to <paramref name="granule"/> must end inside the 64-bit address space.</summary>
    protected static void CheckNoWrap(ulong start, ulong length, ulong granule)
    {
        ulong room = ulong.MaxValue - start;
        if (length > room || (granule > 1 && length > ulong.MaxValue - (granule - 1)) || (granule > 1 && (length + granule - 1) / granule * granule > room))
            throw new SoftDirtyException(SoftDirtyError.InvalidArgument,
                $"0x{start:x} + 0x{length:x} wraps past the end of the 64-bit address space; give a -Length that ends inside it.", length);
    }

    /// <summary>
    /// The mapping selector of a workflow cmdlet (-Mapping, and -Address/-Length where it has them), checked as
    /// Get-PageMap checks it: a wrapping range is InvalidArgument, names that match no mapping MappingNotFound,
    /// a range that overlaps no mapping InvalidArgument. Null: every mapping.
    /// </summary>
    protected static Func<MemoryMapping, bool>? CheckedSelector(IPageSource source, string[]? mapping, ulong? address = null, ulong? length = null)
    {
        if (address is { } a) CheckNoWrap(a, length ?? 1, 1);
        var selector = WorkflowSelector.Create(mapping, address, length);
        if (selector is null) return null;
        var mappings = source.ReadMappings(false);
        bool any = false;
        foreach (var m in mappings) if (m.Kind != MappingKind.Vsyscall && selector(m)) { any = true; break; }
        if (any) return selector;
        if (mapping is { Length: > 0 })
            throw new SoftDirtyException(SoftDirtyError.MappingNotFound,
                $"No mapping of process {source.ProcessId} ({source.Name}) matches '{string.Join("', '", mapping)}'{(address is null ? "" : $" in 0x{address:x}-0x{address + (length ?? 1):x}")}; see Get-MemoryMapping -Id {source.ProcessId}.", source.ProcessId);
        throw new SoftDirtyException(SoftDirtyError.InvalidArgument,
            $"0x{address:x}-0x{address + (length ?? 1):x} lies outside every mapping of process {source.ProcessId} ({source.Name}); see Get-MemoryMapping -Id {source.ProcessId}.", address);
    }

    private static readonly HashSet<string> _warnedNoSoftDirty = new();

    /// <summary>
    /// Warns, once per session and kernel, that soft-dirty bits stay clear on <paramref name="source"/>'s kernel
    /// (what about is the cmdlet's part of the sentence). Returns whether soft-dirty is supported.
    /// </summary>
    protected bool WarnIfNoSoftDirty(IPageSource source, string what)
    {
        var f = source.Features;
        if (f.SoftDirty) return true;
        string kernel = (f.Emulated ? "emulated " : "") + f.KernelRelease;
        bool first;
        lock (_warnedNoSoftDirty) first = _warnedNoSoftDirty.Add(kernel);
        if (first)
            WriteWarning($"Kernel {kernel} has no soft-dirty bits: {what} is always false here (once per session; see Get-SoftDirtySupport).");
        else
            WriteVerbose($"Kernel {kernel} has no soft-dirty bits: {what} is always false here.");
        return false;
    }

    /// <summary>The emulated process of this record (<see cref="ProcessOrEmulatorCmdlet"/> adds one piped into the Id set).</summary>
    protected virtual EmulatedProcess? EmulatorOf(EmulatedProcess? emulator) => emulator;

    /// <summary>The targets of one pipeline record: the emulated process, or each real pid.</summary>
    protected IEnumerable<IPageSource?> Targets(int[] ids, EmulatedProcess? emulator)
    {
        emulator = EmulatorOf(emulator);
        if (ParameterSetName == EmulatorSet || emulator is not null)
        {
            if (emulator is not null) yield return new BorrowedSource(emulator);
            yield break;
        }
        foreach (var id in ids) yield return OpenProcess(id);
    }

    /// <summary>
    /// The one target of a workflow cmdlet: an emulated process wrapped with its workload (so samples and
    /// rounds advance emulated time), or the real pid.
    /// </summary>
    protected IPageSource? WorkflowTarget(int id, EmulatedProcess? emulator, SoftDirty.Workflows.EmulatedWorkloadSpec? workload)
    {
        emulator = EmulatorOf(emulator);
        if (emulator is null) return OpenProcess(id);
        try { return new SoftDirty.Workflows.EmulatedTarget(emulator, workload); }
        catch (SoftDirtyException ex) { WriteError(ToErrorRecord(ex)); return null; }
    }

    /// <summary>Runs per-target work; an engine failure becomes a non-terminating error and the next target runs.</summary>
    protected void ForEachSource(IEnumerable<IPageSource?> sources, Action<IPageSource> work)
    {
        foreach (var source in sources)
        {
            if (source is null) continue;
            try { work(source); }
            catch (SoftDirtyException ex) { WriteError(ToErrorRecord(ex)); }
            catch (OperationCanceledException) when (Cancellation.IsCancellationRequested) { throw new PipelineStoppedException(); }
            finally { source.Dispose(); }
        }
    }

    public static ErrorRecord ToErrorRecord(SoftDirtyException ex) =>
        new(ex, ex.Error.ToString(), CategoryOf(ex.Error), ex.Target);

    /// <summary>
    /// The ErrorCategory of each engine error: the one its enum member names (<see cref="CategorizedAttribute"/>),
    /// whose names are PowerShell's own.
    /// </summary>
    public static ErrorCategory CategoryOf(SoftDirtyError error) =>
        Enum.Parse<ErrorCategory>(CategorizedAttribute.Of(error).ToString());

    /// <summary>A non-terminating error built here (not from the engine).</summary>
    protected void WriteError(SoftDirtyError error, string message, object? target) =>
        WriteError(ToErrorRecord(new SoftDirtyException(error, message, target)));

    /// <summary>Progress that shows only for work that lasts, at most five updates a second.</summary>
    protected sealed class Progress
    {
        private static int _nextActivity = 0x5D00;
        private readonly SoftDirtyCmdlet _cmdlet;
        private readonly ProgressRecord _record;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private long _lastShown = -1;

        public Progress(SoftDirtyCmdlet cmdlet, string activity, string status)
        {
            _cmdlet = cmdlet;
            _record = new ProgressRecord(Interlocked.Increment(ref _nextActivity), activity, status);
        }

        public void Report(ulong done, ulong total, string? status = null)
        {
            long now = _clock.ElapsedMilliseconds;
            if (now < 500 || (_lastShown >= 0 && now - _lastShown < 200)) return;
            _lastShown = now;
            if (status is not null) _record.StatusDescription = status;
            _record.PercentComplete = total == 0 ? -1 : (int)Math.Min(100, done * 100 / total);
            _record.RecordType = ProgressRecordType.Processing;
            _cmdlet.WriteProgress(_record);
        }

        public void Complete()
        {
            if (_lastShown < 0) return;
            _record.RecordType = ProgressRecordType.Completed;
            _cmdlet.WriteProgress(_record);
        }
    }
}
