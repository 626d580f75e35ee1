using System;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Tracking;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Watch-DirtyPage: one sample per interval of the pages a process wrote (dirty pages and bytes, rate,
/// method, pages scanned, the dirty ranges), emitted as each is taken; Ctrl+C ends it cleanly. ShouldProcess where the
/// method changes the process (SoftDirty clears its bits, WriteProtect injects a userfaultfd); Hash only reads it.
/// </summary>
[Cmdlet(VerbsCommon.Watch, "DirtyPage", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = IdSet)]
[OutputType(typeof(DirtyPageSample))]
public sealed class WatchDirtyPageCommand : WorkflowCmdlet
{
    /// <summary>Seconds between samples.</summary>
    [Parameter(Position = 1)]
    [ValidateRange(0.001, 86400)]
    public double Interval { get; set; } = 1;

    /// <summary>Samples to take (10 when neither -Count nor -Duration is given).</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int Count { get; set; }

    /// <summary>Seconds to watch.</summary>
    [Parameter]
    [ValidateRange(0.001, 31536000)]
    public double Duration { get; set; }

    /// <summary>How written pages are found.</summary>
    [Parameter]
    public TrackingMethod Method { get; set; } = TrackingMethod.Auto;

    /// <summary>The page hash of the Hash method.</summary>
    [Parameter]
    public PageHashAlgorithm HashAlgorithm { get; set; } = PageHashAlgorithm.Fast128;

    // -Address/-Length stay here, not PageRangeCmdlet's: they select the mappings that overlap (not pages). A piped
    // mapping's or range's Start and Size bind them, as in Get-PageMap: without that, Get-MemoryMapping -Mapping '[heap]' |
    // Watch-DirtyPage bound -Id alone and watched (and counted) the whole process, saying nothing.
    /// <summary>Watch only the mappings that overlap [Address, Address + Length); a piped mapping's or range's Start binds here.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Start")]
    [ArgumentCompleter(typeof(AddressCompleter))]
    public ulong? Address { get; set; }

    /// <summary>The length of the -Address range in bytes; a piped mapping's or range's Size binds here.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [Alias("Size")]
    public ulong? Length { get; set; }

    /// <inheritdoc/>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Count)) && MyInvocation.BoundParameters.ContainsKey(nameof(Duration)))
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument, "Give -Count or -Duration, not both.", Duration)));
        if (Length is not null && Address is null)
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument, "-Length needs -Address.", Length)));
    }

    /// <inheritdoc/>
    protected override void ProcessRecord() => ForEachSource(new[] { Target() }, Watch);

    private void Watch(IPageSource source)
    {
        // Before the tracker is made: a WriteProtect tracker injects its userfaultfd as it is made (round 32: -WhatIf watched,
        // clearing soft-dirty bits and injecting, as Watch-DirtyPage had no ShouldProcess).
        var changes = DirtyTracker.Resolve(source, Method, out _) switch
        {
            TrackingMethod.SoftDirty => "clear its soft-dirty bits at each sample",
            TrackingMethod.WriteProtect => "write-protect its memory at each sample, through a userfaultfd (injected where Enable-WriteTracking has not made one)",
            _ => null,
        };
        if (changes is not null && !ShouldProcess($"{source.Name} ({source.ProcessId})", $"Watch dirty pages: {changes}")) return;
        using var tracker = DirtyTracker.Create(source, Method, HashAlgorithm, WorkflowSelector.FollowingFiles(source, WorkflowSelector.Checked(source, Mapping, Address, Length), Address, Length), Cancellation);
        WriteVerbose(tracker.Description);
        int? count = MyInvocation.BoundParameters.ContainsKey(nameof(Duration)) ? null : Count > 0 ? Count : 10;
        TimeSpan? duration = count is null ? TimeSpan.FromSeconds(Duration) : null;
        var progress = new Progress(this, $"Watching dirty pages of {source.Name} ({source.ProcessId}) with {tracker.Method}", "first snapshot");
        foreach (var sample in DirtyWatch.Run(tracker, TimeSpan.FromSeconds(Interval), count, duration, Cancellation, WriteWarning))
        {
            WriteObject(sample);
            if (count is { } c) progress.Report((ulong)sample.Index, (ulong)c, $"sample {sample.Index} of {c}: {sample.DirtyPages:N0} dirty pages");
            else progress.Report((ulong)(sample.Elapsed * 1000), (ulong)(Duration * 1000), $"{sample.Elapsed:N1} of {Duration:N1} s: {sample.DirtyPages:N0} dirty pages");
        }
        progress.Complete();
    }
}
