using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Tracking;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Invoke-PreCopyMigration: the rounds of a live migration's pre-copy on a process: one PreCopyRound per
/// round (live rounds, then the stop-and-copy round), then a PreCopySummary.
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "PreCopyMigration", DefaultParameterSetName = IdSet, SupportsShouldProcess = true)]
[OutputType(typeof(PreCopyRound), typeof(PreCopySummary))]
public sealed class InvokePreCopyMigrationCommand : WorkflowCmdlet
{
    /// <summary>Bytes per second of the link (1GB, 100MB work).</summary>
    [Parameter(Mandatory = true)]
    [ValidateRange(1.0, double.MaxValue)]
    public double Bandwidth { get; set; }

    /// <summary>The most live rounds before the stop-and-copy round.</summary>
    [Parameter]
    [ValidateRange(1, 1000)]
    public int MaxIterations { get; set; } = 30;

    /// <summary>Stop the live rounds once at most this many pages are dirty.</summary>
    [Parameter]
    public ulong StopThreshold { get; set; } = 256;

    /// <summary>Write each round as a memory image (round-01 full, then increments) in this directory.</summary>
    [Parameter]
    public string? Destination { get; set; }

    /// <summary>How each round finds the pages written since the last.</summary>
    [Parameter]
    public TrackingMethod Method { get; set; } = TrackingMethod.Auto;

    /// <inheritdoc/>
    protected override void ProcessRecord() => ForEachSource(new[] { Target() }, Migrate);

    private void Migrate(IPageSource source)
    {
        if (!ShouldProcess($"{source.Name} ({source.ProcessId})", "Run pre-copy rounds and stop the process (ptrace) for the final round")) return;
        var selector = WorkflowSelector.Checked(source, Mapping);
        using var tracker = DirtyTracker.Create(source, Method, PageHashAlgorithm.Fast128, selector);
        WriteVerbose(tracker.Description);
        var options = new PreCopyOptions
        {
            Bandwidth = Bandwidth, MaxIterations = MaxIterations, StopThreshold = StopThreshold,
            Destination = Destination is null ? null : FileSystemPath(Destination),
            FreezeFinal = source.ProcessId != System.Environment.ProcessId, Selector = selector,
        };
        var progress = new Progress(this, $"Pre-copy migration of {source.Name} ({source.ProcessId})", "round 1");
        int rounds = 0;
        foreach (var record in PreCopyMigration.Run(tracker, options, Cancellation, s => progress.Report((ulong)rounds, (ulong)MaxIterations + 1, s)))
        {
            if (record is PreCopyRound) rounds++;
            WriteObject(record);
        }
        progress.Complete();
    }
}
