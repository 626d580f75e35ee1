using System.Collections.Generic;
using System.IO;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Tracking;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Export-DirtyPageChart: Watch-DirtyPage samples or pre-copy rounds to a self-contained SVG: the dirty rate
/// over time and a heat strip of the written address space.
/// </summary>
[Cmdlet(VerbsData.Export, "DirtyPageChart", SupportsShouldProcess = true)]
[OutputType(typeof(FileInfo))]
public sealed class ExportDirtyPageChartCommand : SoftDirtyCmdlet
{
    /// <summary>DirtyPageSample or PreCopyRound objects (a PreCopySummary is passed over).</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    [AllowNull]
    public object? InputObject { get; set; }

    /// <summary>The SVG file to write.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public string Path { get; set; } = "";

    [Parameter]
    public string? Title { get; set; }

    /// <summary>Draw the heat strip over [Address, Address + Length) only (default: the written parts of the address space).</summary>
    [Parameter]
    [ArgumentCompleter(typeof(AddressCompleter))]
    public ulong? Address { get; set; }

    [Parameter]
    public ulong? Length { get; set; }

    private readonly List<IDirtyTimelinePoint> _points = new();

    protected override void ProcessRecord()
    {
        var o = InputObject is PSObject ps ? ps.BaseObject : InputObject;
        switch (o)
        {
            case IDirtyTimelinePoint p: _points.Add(p); break;
            case PreCopySummary: case null: break;
            default:
                WriteError(SoftDirtyError.InvalidArgument, $"Export-DirtyPageChart draws DirtyPageSample and PreCopyRound objects, not {o.GetType().FullName}.", o);
                break;
        }
    }

    protected override void EndProcessing()
    {
        var path = GetUnresolvedProviderPathFromPSPath(Path);
        if (!ShouldProcess(path, $"Write a chart of {_points.Count} points")) return;
        var title = Title ?? (_points.Count > 0 && _points[0] is DirtyPageSample s ? $"Dirty pages of {s.Name} ({s.ProcessId}), {s.Method}" : "Pre-copy migration rounds");
        if ((Address is null) != (Length is null) || Length == 0)
            ThrowTerminatingError(ToErrorRecord(new SoftDirtyException(SoftDirtyError.InvalidArgument, "Give -Address and -Length together (Length more than 0).", Length)));
        AddressRange? focus = Address is { } a ? new AddressRange(a, a + Length!.Value) : null;
        File.WriteAllText(path, DirtyChart.Render(_points, title, focus));
        WriteObject(new FileInfo(path));
    }
}
