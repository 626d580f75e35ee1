using System;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Injection;
using SoftDirty.Tracking;

namespace SoftDirty.Commands;

/// <summary>
/// Enable-WriteTracking: registers another process's writable memory for userfaultfd async write-protect
/// from outside (syscall injection), so that WriteProtect tracks it exactly, across commands, until
/// Disable-WriteTracking. Refusals (ptrace not permitted, already traced, seccomp, old kernel) change nothing.
/// </summary>
[Cmdlet(VerbsLifecycle.Enable, "WriteTracking", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(WriteTrackingState))]
public sealed class EnableWriteTrackingCommand : PipedIdCmdlet
{
    /// <summary>The ids of the processes to track.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    [ProcessId]
    public int[] Id { get; set; } = Array.Empty<int>();

    /// <inheritdoc/>
    protected override void ProcessRecord() => ForEachSource(Targets(Id, null), Enable);

    private void Enable(IPageSource source)
    {
        var proc = (ProcPageSource)source;
        WriteTrackingState? existing;
        // Another command's injection is not taken for a debugger; where no state folder exists, no command of it injects, and
        // none is made before ShouldProcess (-WhatIf and a -Confirm answered No change nothing).
        using (WriteTrackingStore.LockWhereFolder(proc.ProcessId, Cancellation))
        {
            if (InjectionSupport.Check(proc.ProcessId, proc.Features) is { } refused) throw refused;
            existing = WriteTrackingStore.Load(proc.ProcessId);
        }
        // Enabled by a running watch or migration for itself alone: kept now, so that its end does not disable it.
        if (existing is { Kept: false } && ShouldProcess($"process {proc.ProcessId} ({proc.Name})", "Keep its write tracking enabled between commands"))
            using (WriteTrackingStore.Lock(proc.ProcessId, Cancellation)) existing = WriteTrackingStore.MarkKept(proc.ProcessId) ?? existing;
        if (existing is not null)
        {
            WriteVerbose($"Write tracking is already enabled in process {proc.ProcessId} (userfaultfd {existing.Descriptor}).");
            WriteObject(existing);
            return;
        }
        if (!ShouldProcess($"process {proc.ProcessId} ({proc.Name})", "Inject userfaultfd and register its writable mappings for async write-protect")) return;
        using var tracker = new WriteProtectTracker(proc, cancel: Cancellation);
        tracker.Reset(Cancellation);
        tracker.KeepEnabled(Cancellation);
        WriteObject(tracker.RemoteState);
    }
}
