using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Management.Automation;
using System.Threading;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Images;

namespace SoftDirty.Commands;

/// <summary>
/// The plumbing every cmdlet of the module shares, as a thin shell over the engine (SoftDirty.Engine):
/// engine errors as ErrorRecords, Ctrl+C, throttled progress and opening page sources. Named for what it
/// does, not after the module, so that SoftDirty in a type name means the concept or the module.
/// Cmdlets stay thin: they bind parameters and call the engine.
/// </summary>
[SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "The token source holds no unmanaged resource: see _stop.")]
public abstract class EngineCmdlet : PSCmdlet
{
    /// <summary>Parameter set of cmdlets that take real process ids.</summary>
    public const string IdSet = "Id";
    /// <summary>Parameter set of cmdlets that take an emulated process.</summary>
    public const string EmulatorSet = "Emulator";

    // Lives as long as the cmdlet; a token source that never had CancelAfter or its WaitHandle used holds
    // nothing to release, so the cmdlet need not be IDisposable for it (CA1001).
    private readonly CancellationTokenSource _stop = new();
    private bool _platformChecked;

    /// <summary>Cancelled when the user presses Ctrl+C.</summary>
    protected CancellationToken Cancellation => _stop.Token;

    /// <summary>Ctrl+C: cancels <see cref="Cancellation"/>.</summary>
    protected override void StopProcessing() => _stop.Cancel();

    /// <summary>
    /// A path parameter as a file-system path. A NUL character, which no file name can hold, stops the command
    /// with InvalidArgument (it reached users as System.ArgumentException). So does a path of another provider
    /// (Env:, Variable:, Function:, or a relative path while the current location is one of them), or of a drive
    /// that does not exist: PowerShell resolves those to a bare name, which the file system then took relative to
    /// the process's working directory, so an image or a restore landed silently somewhere no one asked for.
    /// </summary>
    protected string FileSystemPath(string path)
    {
        if (path.Contains('\0', StringComparison.Ordinal))
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument, "The path contains a NUL character, which no file name can hold.", path.Replace("\0", "\\0", StringComparison.Ordinal))));
        string resolved;
        ProviderInfo provider;
        try { resolved = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out provider, out _); }
        catch (Exception ex) when (ex is ProviderNotFoundException or DriveNotFoundException or ProviderInvocationException or NotSupportedException or ArgumentException)
        {
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument, $"The path {path} cannot be resolved: {ex.Message}", path)));
            throw; // not reached: ThrowTerminatingError throws
        }
        if (provider.ImplementingType != typeof(Microsoft.PowerShell.Commands.FileSystemProvider))
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument,
                $"The path {path} is on the PowerShell provider {provider.Name}, not the file system: give a file-system path (a folder, or a drive of the FileSystem provider such as one made with New-PSDrive).", path)));
        return resolved;
    }

    /// <summary>The /proc cmdlets stop with a terminating PlatformNotSupported off Linux.</summary>
    protected void EnsureLinux()
    {
        if (_platformChecked) return;
        try { ProcPageSource.EnsureLinux(); }
        catch (EngineException ex) { ThrowTerminatingError(ToErrorRecord(ex)); }
        _platformChecked = true;
    }

    /// <summary>Opens the real process <paramref name="pid"/>, or writes the error and returns null.</summary>
    private protected IPageSource? OpenProcess(int pid)
    {
        EnsureLinux();
        if (RefusedPipedId(pid) is { } refused) { WriteError(ToErrorRecord(refused)); return null; }
        try { return ProcPageSource.Open(pid); }
        catch (EngineException ex) { WriteError(ToErrorRecord(ex)); return null; }
    }

    /// <summary>Why the pid of this record, bound from a piped object's Id, is not to be opened (<see cref="PipedIdCmdlet"/>); null to open it.</summary>
    private protected virtual EngineException? RefusedPipedId(int pid) => null;

    /// <summary>The targets of one pipeline record: the emulated process, or each real pid.</summary>
    private protected IEnumerable<IPageSource?> Targets(int[] ids, EmulatedProcess? emulator)
    {
        if (ParameterSetName == EmulatorSet || emulator is not null)
        {
            if (emulator is not null) yield return new BorrowedSource(emulator);
            yield break;
        }
        foreach (var id in ids) yield return OpenProcess(id);
    }

    /// <summary>Runs per-target work; an engine failure becomes a non-terminating error and the next target runs.</summary>
    private protected void ForEachSource(IEnumerable<IPageSource?> sources, Action<IPageSource> work)
    {
        foreach (var source in sources)
        {
            if (source is null) continue;
            using (source) Guarded(() => work(source));
        }
    }

    /// <summary>
    /// Runs one piece of work: an engine failure becomes a non-terminating error, and Ctrl+C during it stops
    /// the pipeline.
    /// </summary>
    protected void Guarded(Action work)
    {
        try { work(); }
        catch (EngineException ex) { WriteError(ToErrorRecord(ex)); }
        catch (OperationCanceledException) when (Cancellation.IsCancellationRequested) { throw new PipelineStoppedException(); }
    }

    /// <summary>
    /// What -PassThru emits for a target: the emulated process itself, or the real process as a
    /// System.Diagnostics.Process (ProcessExited if it is gone).
    /// </summary>
    private protected static object PassThruObject(IPageSource source)
    {
        if (source is BorrowedSource borrowed) return borrowed.Inner;
        if (source is ProcPageSource)
        {
            try { return Process.GetProcessById(source.ProcessId); }
            catch (ArgumentException) { throw new EngineException(EngineError.ProcessExited, $"Process {source.ProcessId} exited.", source.ProcessId); }
        }
        return source;
    }

    /// <summary>
    /// The ErrorRecord of an engine error: its EngineError name as the ErrorId, and its category. A message or a
    /// target that names a process or a path with control characters is shown with them escaped
    /// (<see cref="DisplayText"/>): not only in the message (ErrorDetails, the concise view) but in the record's
    /// exception, target and CategoryInfo too, which the normal and detailed views and Get-Error print (an image's
    /// hostile mapping path set root's terminal title there). The record then holds a copy of the exception, of the
    /// same type, with that text escaped.
    /// </summary>
    public static ErrorRecord ToErrorRecord(EngineException ex)
    {
        var shown = Shown(ex);
        var record = new ErrorRecord(shown, shown.Error.ToString(), CategoryOf(shown.Error), shown.Target);
        if (!ReferenceEquals(shown, ex)) record.ErrorDetails = new ErrorDetails(shown.Message);
        return record;
    }

    /// <summary><paramref name="ex"/>, or a copy of it whose message, target and file are escaped where they hold hidden characters.</summary>
    private static EngineException Shown(EngineException ex)
    {
        var message = DisplayText.Visible(ex.Message)!;
        var target = ex.Target is string s ? DisplayText.Visible(s) : ex.Target;
        var file = ex is ImageException image ? DisplayText.Visible(image.File) : null;
        var inner = ex.InnerException;
        // An inner exception (an IOException naming the file) is printed by Get-Error too: dropped if it holds such text.
        for (var e = inner; e is not null; e = e.InnerException)
            if (!ReferenceEquals(DisplayText.Visible(e.Message), e.Message)) { inner = null; break; }
        if (ReferenceEquals(message, ex.Message) && ReferenceEquals(target, ex.Target) && ReferenceEquals(inner, ex.InnerException)
            && (ex is not ImageException i || ReferenceEquals(file, i.File)))
            return ex;
        return ex is ImageException img
            ? new ImageException(img.Error, message, file!, img.Offset, inner)
            : new EngineException(ex.Error, message, target, ex.Errno, inner);
    }

    /// <summary>
    /// The ErrorCategory of each engine error: the one its enum member names (<see cref="CategorizedAttribute"/>),
    /// whose names are PowerShell's own.
    /// </summary>
    public static ErrorCategory CategoryOf(EngineError error) =>
        Enum.Parse<ErrorCategory>(CategorizedAttribute.Of(error).ToString());

    // What if / Confirm prompts, verbose and warning lines and progress name processes (comm, which their owner sets)
    // and files: shown with control characters and bidi overrides escaped, as the views and errors show them, so that
    // -WhatIf or -Verbose on another user's process cannot send sequences to the terminal.

    /// <summary><see cref="Cmdlet.ShouldProcess(string, string)"/> with the text escaped (<see cref="DisplayText"/>).</summary>
    public new bool ShouldProcess(string target, string action) => base.ShouldProcess(DisplayText.Visible(target), DisplayText.Visible(action));

    /// <summary><see cref="Cmdlet.WriteVerbose"/> with the text escaped (<see cref="DisplayText"/>); nothing is escaped where no one will see it.</summary>
    public new void WriteVerbose(string text)
    {
        if (VerboseEnabled) base.WriteVerbose(DisplayText.Visible(text)!);
    }

    private bool? _verboseEnabled;

    /// <summary>
    /// Whether verbose messages are kept: -Verbose, or else $VerbosePreference other than SilentlyContinue and Ignore
    /// (what PowerShell decides by). Messages built from many values are built only then: on a loop of small reads
    /// their formatting cost more than the read. Where the preference cannot be read, true.
    /// </summary>
    protected bool VerboseEnabled => _verboseEnabled ??= ReadVerbosePreference();

    private bool ReadVerbosePreference()
    {
        try
        {
            if (MyInvocation.BoundParameters.TryGetValue("Verbose", out var bound))
                return bound is SwitchParameter s ? s.IsPresent : LanguagePrimitives.IsTrue(bound);
            return !LanguagePrimitives.TryConvertTo<ActionPreference>(GetVariableValue("VerbosePreference"), out var preference)
                || preference is not (ActionPreference.SilentlyContinue or ActionPreference.Ignore);
        }
        catch (Exception ex) when (ex is PSInvalidOperationException or NullReferenceException) { return true; }
    }

    /// <summary><see cref="Cmdlet.WriteWarning"/> with the text escaped (<see cref="DisplayText"/>).</summary>
    public new void WriteWarning(string text) => base.WriteWarning(DisplayText.Visible(text)!);

    /// <summary>A non-terminating error built here (not from the engine).</summary>
    protected void WriteError(EngineError error, string message, object? target) =>
        WriteError(ToErrorRecord(new EngineException(error, message, target)));

    /// <summary>Progress that shows only for work that lasts, at most five updates a second.</summary>
    protected sealed class Progress
    {
        private static int _nextActivity = 0x5D00;
        private readonly EngineCmdlet _cmdlet;
        private readonly string _activity, _status;
        // Made when first shown: most work ends before half a second, and a loop of small reads pays nothing for a bar.
        private ProgressRecord? _record;
        private readonly long _started = Stopwatch.GetTimestamp();
        private long _lastShown = -1;

        /// <summary>A progress bar of <paramref name="cmdlet"/>, not shown until the work has lasted half a second.</summary>
        public Progress(EngineCmdlet cmdlet, string activity, string status)
        {
            _cmdlet = cmdlet;
            _activity = activity;
            _status = status;
        }

        /// <summary>Shows <paramref name="done"/> of <paramref name="total"/> (and a new status), if it is time to.</summary>
        public void Report(ulong done, ulong total, string? status = null)
        {
            if (Due()) Show(done, total, status);
        }

        /// <summary>
        /// As <see cref="Report(ulong, ulong, string?)"/> with the status made by <paramref name="status"/> only when shown: a
        /// loop that reports once a chunk (a save of a sparse process: a chunk a present region) formats nothing in between.
        /// </summary>
        public void Report(ulong done, ulong total, Func<ulong, ulong, string> status)
        {
            if (Due()) Show(done, total, status(done, total));
        }

        /// <summary>The status of work counted in pages: "DONE of TOTAL pages".</summary>
        public static string PagesStatus(ulong done, ulong total) => $"{done:N0} of {total:N0} pages";

        private bool Due()
        {
            long now = (long)Stopwatch.GetElapsedTime(_started).TotalMilliseconds;
            if (now < 500 || (_lastShown >= 0 && now - _lastShown < 200)) return false;
            _lastShown = now;
            return true;
        }

        private void Show(ulong done, ulong total, string? status)
        {
            var record = _record ??= new ProgressRecord(Interlocked.Increment(ref _nextActivity), DisplayText.Visible(_activity), DisplayText.Visible(_status));
            if (status is not null) record.StatusDescription = DisplayText.Visible(status);
            record.PercentComplete = total == 0 ? -1 : (int)Math.Min(100, done * 100 / total);
            record.RecordType = ProgressRecordType.Processing;
            _cmdlet.WriteProgress(record);
        }

        /// <summary>Removes the bar, if it was shown.</summary>
        public void Complete()
        {
            if (_lastShown < 0 || _record is null) return;
            _record.RecordType = ProgressRecordType.Completed;
            _cmdlet.WriteProgress(_record);
        }
    }
}
