using System.Management.Automation;
using System.Management.Automation.Runspaces;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Tracking;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Invoke-PreCopyMigration: the rounds of a live migration's pre-copy on a process: one PreCopyRound per
/// round (live rounds, then the stop-and-copy round), then a PreCopySummary. The link is simulated
/// (-Bandwidth), or real (-ToSession): each round's image crosses a PowerShell session to the destination
/// machine, where Receive-MemoryImage writes and verifies it, and the transfer is timed.
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "PreCopyMigration", DefaultParameterSetName = IdSet, SupportsShouldProcess = true)]
[OutputType(typeof(PreCopyRound), typeof(PreCopySummary))]
public sealed class InvokePreCopyMigrationCommand : WorkflowCmdlet
{
    /// <summary>Bytes per second of the simulated link (1GB, 100MB work); required without -ToSession, refused with it (that link is measured).</summary>
    [Parameter]
    [ValidateRange(1.0, double.MaxValue)]
    public double Bandwidth { get; set; }

    /// <summary>The most live rounds before the stop-and-copy round.</summary>
    [Parameter]
    [ValidateRange(1, 1000)]
    public int MaxIterations { get; set; } = 30;

    /// <summary>Stop the live rounds once at most this many pages are dirty.</summary>
    [Parameter]
    public ulong StopThreshold { get; set; } = 256;

    /// <summary>Write each round as a memory image (round-01 full, then increments) in this directory; with -ToSession a directory on the destination machine.</summary>
    [Parameter]
    public string? Destination { get; set; }

    /// <summary>
    /// Send each round's image over this session (PowerShell remoting, e.g. over SSH) to -Destination on the
    /// destination machine, which needs the SoftDirty module; the transfers are timed (MB/s, downtime).
    /// </summary>
    [Parameter]
    [ValidateNotNull]
    public PSSession? ToSession { get; set; }

    /// <summary>With -ToSession: restore the final image on the destination into flat files in this directory there (as Restore-MemoryImage does).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? RestorePath { get; set; }

    /// <summary>
    /// With -ToSession: the seconds the destination may be silent (no acknowledgement, heartbeat, output or error) while a
    /// round crosses or is verified there, before the link counts as broken (LinkBroken). A chunk (about 5.6 MB on the
    /// wire) must cross in that time: the default, 60, fails links slower than about 90 KB/s. 15 at the least (the
    /// destination's heartbeat while it verifies comes every 5 seconds).
    /// </summary>
    [Parameter]
    [ValidateRange(SessionImageLink.MinStallSeconds, SessionImageLink.MaxStallSeconds)]
    public int LinkTimeoutSec { get; set; } = SessionImageLink.DefaultStallSeconds;

    /// <summary>The progress activity of each image's transfer over -ToSession.</summary>
    private const int TransferActivityId = 0x5E00;

    /// <inheritdoc/>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        string? problem = ToSession is null
            ? (!MyInvocation.BoundParameters.ContainsKey(nameof(Bandwidth)) ? "-Bandwidth (bytes per second of the simulated link) is required without -ToSession."
              : RestorePath is not null ? "-RestorePath needs -ToSession: restore a local chain with Restore-MemoryImage."
              : MyInvocation.BoundParameters.ContainsKey(nameof(LinkTimeoutSec)) ? "-LinkTimeoutSec needs -ToSession: the simulated link of -Bandwidth never stalls." : null)
            : MyInvocation.BoundParameters.ContainsKey(nameof(Bandwidth)) ? "-Bandwidth models a link; with -ToSession the link is real and measured: leave -Bandwidth out."
            : Destination is null ? "-ToSession needs -Destination: the directory on the destination machine for the images." : null;
        if (problem is not null) ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument, problem, null)));
    }

    /// <summary>A piped mapping's or range's Start, which refuses the record (<see cref="PipedRange"/>); never given by hand.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true, DontShow = true)]
    [Alias("Start")]
    public ulong? PipedStart { get; set; }

    /// <summary>How each round finds the pages written since the last.</summary>
    [Parameter]
    public TrackingMethod Method { get; set; } = TrackingMethod.Auto;

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        if (PipedStart is { } start) { WriteError(EngineError.InvalidArgument, PipedRange.Message("Invoke-PreCopyMigration", start), start); return; }
        ForEachSource(new[] { Target() }, Migrate);
    }

    private void Migrate(IPageSource source)
    {
        if (!ShouldProcess($"{source.Name} ({source.ProcessId})", ToSession is null ? "Run pre-copy rounds and stop the process (ptrace) for the final round"
            : $"Send pre-copy rounds to {Destination} on {ToSession.ComputerName} and stop the process (ptrace) for the final round")) return;
        var selector = WorkflowSelector.FollowingFiles(source, WorkflowSelector.Checked(source, Mapping));
        var link = ToSession is null ? null : SessionImageLink.Open(ToSession, Destination!, RestorePath, LinkTimeoutSec, Cancellation);
        using var tracker = DirtyTracker.Create(source, Method, PageHashAlgorithm.Fast128, selector, Cancellation);
        WriteVerbose(tracker.Description);
        var options = new PreCopyOptions
        {
            Bandwidth = link is null ? Bandwidth : 1, MaxIterations = MaxIterations, StopThreshold = StopThreshold,
            Destination = Destination is null || link is not null ? null : FileSystemPath(Destination), Link = link, RestorePath = link?.RestorePath,
            FreezeFinal = source.ProcessId != System.Environment.ProcessId, Selector = selector,
        };
        var progress = new Progress(this, $"Pre-copy migration of {source.Name} ({source.ProcessId})", "round 1");
        int rounds = 0;
        var sending = new ProgressRecord(TransferActivityId, $"Sending round {rounds + 1} to {link?.Computer}", "starting");
        var shown = System.Diagnostics.Stopwatch.StartNew();
        void Transfer(ulong sent, ulong total)
        {
            // The first chunk of each image, then at most five updates a second: each round's transfer shows when it starts.
            bool first = sent <= SessionImageLink.ChunkBytes;
            if (!first && sent < total && shown.ElapsedMilliseconds < 200) return;
            shown.Restart();
            sending.Activity = $"Sending round {rounds + 1} to {link!.Computer}";
            sending.StatusDescription = $"{sent / (double)(1 << 20):N1} of {total / (double)(1 << 20):N1} MiB";
            sending.PercentComplete = total == 0 ? 100 : (int)(sent * 100 / total);
            sending.RecordType = sent >= total ? ProgressRecordType.Completed : ProgressRecordType.Processing;
            WriteProgress(sending);
        }
        foreach (var record in PreCopyMigration.Run(tracker, options, Cancellation, s => progress.Report((ulong)rounds, (ulong)MaxIterations + 1, s), link is null ? null : Transfer, WriteWarning))
        {
            if (record is PreCopyRound) rounds++;
            WriteObject(record);
        }
        progress.Complete();
    }
}
