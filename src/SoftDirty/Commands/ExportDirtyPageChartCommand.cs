using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Tracking;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Export-DirtyPageChart: Watch-DirtyPage samples or pre-copy rounds to a self-contained SVG: the dirty rate
/// over time and a heat strip of the written address space. Live and deserialized objects (from jobs, remote
/// sessions, Import-Clixml) both work; samples of several processes or hosts each get their own line and strip.
/// </summary>
[Cmdlet(VerbsData.Export, "DirtyPageChart", SupportsShouldProcess = true)]
[OutputType(typeof(FileInfo))]
public sealed class ExportDirtyPageChartCommand : EngineCmdlet
{
    /// <summary>DirtyPageSample or PreCopyRound objects, live or deserialized (a PreCopySummary is passed over).</summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    [AllowNull]
    public object? InputObject { get; set; }

    /// <summary>The SVG file to write; its folder must exist.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public string Path { get; set; } = "";

    /// <summary>The chart's title (default: from the first series).</summary>
    [Parameter]
    public string? Title { get; set; }

    /// <summary>Draw the heat strip over [Address, Address + Length) only (default: the written parts of the address space).</summary>
    [Parameter]
    [ArgumentCompleter(typeof(AddressCompleter))]
    public ulong? Address { get; set; }

    /// <summary>Bytes of the heat strip from -Address.</summary>
    [Parameter]
    public ulong? Length { get; set; }

    private const string SampleType = "SoftDirty.Workflows.DirtyPageSample";
    private const string RoundType = "SoftDirty.Workflows.PreCopyRound";
    private const string SummaryType = "SoftDirty.Workflows.PreCopySummary";
    private const string Deserialized = "Deserialized.";

    private readonly Dictionary<string, (List<ChartPoint> Points, string? Title)> _series = new();
    private readonly List<string> _order = new();
    private int _passedOver;

    /// <inheritdoc/>
    protected override void BeginProcessing()
    {
        if ((Address is null) != (Length is null) || Length == 0)
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.InvalidArgument, "Give -Address and -Length together (Length more than 0).", Length)));
    }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        var ps = InputObject as PSObject;
        var o = ps?.BaseObject ?? InputObject;
        var computer = ps?.Properties["PSComputerName"]?.Value as string;
        switch (o)
        {
            case null: _passedOver++; return;
            case DirtyPageSample s: Add(SeriesKey(computer, s.ProcessId, s.Name), Label(computer, $"{s.Name} ({s.ProcessId})"), s.Index, DirtyChart.ToPoint(s), $"Dirty pages of {s.Name} ({s.ProcessId}), {s.Method}"); return;
            case PreCopyRound r: Add(SeriesKey(computer, -1, "rounds"), Label(computer, "pre-copy rounds"), r.Round, DirtyChart.ToPoint(r), null); return;
            case PreCopySummary: _passedOver++; return;
        }
        var names = ps?.TypeNames ?? (IList<string>)Array.Empty<string>();
        if (names.Contains(Deserialized + SampleType) && ps is not null)
        {
            int pid = Convert.ToInt32(ps.Properties["ProcessId"]?.Value ?? 0, CultureInfo.InvariantCulture);
            var name = ps.Properties["Name"]?.Value as string ?? "";
            if (ToPoint(ps) is { } p) Add(SeriesKey(computer, pid, name), Label(computer, $"{name} ({pid})"), Sequence(ps, "Index"), p, $"Dirty pages of {name} ({pid}), {ps.Properties["Method"]?.Value}");
            return;
        }
        if (names.Contains(Deserialized + RoundType) && ps is not null)
        {
            if (ToPoint(ps) is { } p) Add(SeriesKey(computer, -1, "rounds"), Label(computer, "pre-copy rounds"), Sequence(ps, "Round"), p, null);
            return;
        }
        if (names.Contains(Deserialized + SummaryType)) { _passedOver++; return; }
        WriteError(EngineError.InvalidArgument, $"Export-DirtyPageChart draws DirtyPageSample and PreCopyRound objects (live or deserialized), not {names.FirstOrDefault() ?? o.GetType().FullName}.", o);
    }

    /// <inheritdoc/>
    protected override void EndProcessing()
    {
        int points = _series.Values.Sum(s => s.Points.Count);
        if (points == 0)
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.ChartNoData,
                $"Nothing to draw: no DirtyPageSample or PreCopyRound came in ({_passedOver} other object(s) passed over); no chart was written. Pipe Watch-DirtyPage or Invoke-PreCopyMigration output.", InputObject)));
        var path = FileSystemPath(Path);
        var folder = System.IO.Path.GetDirectoryName(path) ?? "";
        // The folder is opened and checked once (every folder above too, on its descriptor) and the chart is
        // written relative to it: nothing can swap a folder for a link between the check and the write.
        using var target = OpenChartFolder(path, folder);
        try { SafeFiles.RefuseImageFile(target, System.IO.Path.GetFileName(path), "The chart"); }
        catch (EngineException ex) { ThrowTerminatingError(ToErrorRecord(ex)); }
        if (!ShouldProcess(path, $"Write a chart of {points} point(s) in {_series.Count} series")) return;

        var series = _order.Select(k => new ChartSeries(_series.Count > 1 || k.StartsWith('@') ? LabelOf(k) : "", _series[k].Points)).ToList();
        var title = Title ?? (_series.Count == 1 ? _series[_order[0]].Title ?? "Pre-copy migration rounds" : $"Dirty pages of {_series.Count} processes");
        AddressRange? focus = Address is { } a ? new AddressRange(a, a + Length!.Value) : null;
        WarnIfEmpty(focus);
        WriteVerbose($"Drawing {points} point(s) in {_series.Count} series: {string.Join(", ", _order.Select(LabelOf))}.");

        // Written beside the target (0600, new) and renamed into place, so a failed write (full disk) leaves no half chart.
        try { SafeFiles.WriteReplacing(target, System.IO.Path.GetFileName(path), System.Text.Encoding.UTF8.GetBytes(DirtyChart.Render(series, title, focus))); }
        catch (EngineException ex) { ThrowTerminatingError(ToErrorRecord(AsChartError(ex, path))); }
        catch (IOException ex)
        {
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.ChartWriteError, $"Cannot write {path}: {ex.Message}", path, inner: ex)));
        }
        WriteObject(new FileInfo(path));
    }

    /// <summary>A refusal (UnsafeDestination) as it is; any other failure to write as ChartWriteError.</summary>
    private static EngineException AsChartError(EngineException ex, string path) =>
        ex.Error == EngineError.UnsafeDestination ? ex : new EngineException(EngineError.ChartWriteError, $"Cannot write {path}: {ex.Message}", path, ex.Errno, ex);

    /// <summary>The chart's folder, opened and checked (<see cref="SafeDirectory"/>); ChartWriteError where it is missing or cannot be opened.</summary>
    private SafeDirectory OpenChartFolder(string path, string folder)
    {
        SafeDirectory? dir = null;
        try { dir = string.IsNullOrEmpty(folder) ? null : SafeDirectory.Open(folder, "The chart", path, create: false); }
        catch (EngineException ex) { ThrowTerminatingError(ToErrorRecord(AsChartError(ex, path))); }
        if (dir is null)
            ThrowTerminatingError(ToErrorRecord(new EngineException(EngineError.ChartWriteError,
                $"Cannot write {path}: the folder {folder} does not exist.", path)));
        return dir!;
    }

    private void WarnIfEmpty(AddressRange? focus)
    {
        var ranges = _series.Values.SelectMany(s => s.Points).SelectMany(p => p.Ranges).ToList();
        if (ranges.Count == 0)
            WriteWarning("No sample or round recorded a written page: the heat strip is empty.");
        else if (focus is { } f && !ranges.Any(r => r.Start < f.End && f.Start < r.End))
            WriteWarning($"No written page lies in 0x{f.Start:x}-0x{f.End:x} (-Address/-Length): the heat strip is empty.");
    }

    /// <summary>
    /// Adds a point to the series of <paramref name="key"/>. A point whose <paramref name="sequence"/> (a sample's Index,
    /// a round's number; null: unknown) does not follow the last one of that series starts another run of it, drawn as a series of its
    /// own ("run 2"): two watches of one process (or of a reused pid), or the rounds of two migrations, piped into one
    /// chart would otherwise be joined into one line that jumps back in time, mixing processes as if they were one.
    /// </summary>
    private void Add(string key, string label, long? sequence, ChartPoint point, string? title)
    {
        if (_runs.TryGetValue(key, out var run))
        {
            if (sequence <= run.Last) run = (run.Number + 1, null);
            _runs[key] = (run.Number, sequence ?? run.Last);
        }
        else
        {
            run = (1, sequence);
            _runs[key] = run;
        }
        if (run.Number > 1)
        {
            key += "#" + run.Number.ToString(CultureInfo.InvariantCulture);
            label += $" (run {run.Number})";
        }
        if (!_series.TryGetValue(key, out var s))
        {
            s = (new List<ChartPoint>(), title);
            _series[key] = s;
            _order.Add(key);
            _labels[key] = label;
        }
        s.Points.Add(point);
    }

    private readonly Dictionary<string, string> _labels = new();
    /// <summary>Per series key: the run being drawn (1 first) and the last sequence number it got.</summary>
    private readonly Dictionary<string, (int Number, long? Last)> _runs = new();

    /// <summary>A deserialized object's sequence number (Index, Round); null where it has none (its points join the series as they come).</summary>
    private static long? Sequence(PSObject ps, string name)
    {
        try { return Value(ps, name) is { } v ? Convert.ToInt64(v, CultureInfo.InvariantCulture) : null; }
        catch (Exception ex) when (ex is FormatException or InvalidCastException or OverflowException) { return null; }
    }
    private string LabelOf(string key) => _labels[key];

    private static string SeriesKey(string? computer, int pid, string name) => $"{(computer is null ? "" : "@" + computer)}/{pid}/{name}";
    private static string Label(string? computer, string what) => computer is null ? what : $"{what} on {computer}";

    /// <summary>A deserialized sample or round as a chart point; ranges come as objects with Start and End, or as strings ("0x1000-0x3000").</summary>
    private ChartPoint? ToPoint(PSObject ps)
    {
        try
        {
            // Every sample and round has all three: one without (a Select-Object that left it out, an edited file) is refused,
            // never drawn at 0 s or 0 pages/s as if the process had stopped writing.
            double elapsed = Convert.ToDouble(Required(ps, "Elapsed"), CultureInfo.InvariantCulture);
            double rate = Convert.ToDouble(Required(ps, "Rate"), CultureInfo.InvariantCulture);
            int pageSize = Convert.ToInt32(Required(ps, "PageSize"), CultureInfo.InvariantCulture);
            var ranges = new List<AddressRange>();
            if ((ps.Properties["Ranges"]?.Value is PSObject rp ? rp.BaseObject : ps.Properties["Ranges"]?.Value) is IEnumerable items and not string)
                foreach (var item in items)
                    ranges.Add(RangeOf(item));
            // What a live sample cannot hold: a chart of NaN coordinates draws nothing and says nothing.
            if (!double.IsFinite(elapsed) || elapsed < 0 || !double.IsFinite(rate) || rate < 0)
                throw new FormatException($"Elapsed ({elapsed}) and Rate ({rate}) must be finite and not negative.");
            if (pageSize <= 0 || (pageSize & (pageSize - 1)) != 0) throw new FormatException($"PageSize {pageSize} is not a power of two.");
            foreach (var r in ranges)
                if (r.End <= r.Start) throw new FormatException($"The range 0x{r.Start:x}-0x{r.End:x} is empty or wraps.");
            return new ChartPoint(elapsed, rate, pageSize, ranges.ToArray());
        }
        catch (Exception ex) when (ex is FormatException or InvalidCastException or OverflowException)
        {
            WriteError(EngineError.InvalidArgument, $"A deserialized {ps.TypeNames[0]} lacks a readable Elapsed, Rate, PageSize or Ranges: {ex.Message}", ps);
            return null;
        }
    }

    /// <summary>A property's value, which must be there (FormatException naming it where it is absent or null).</summary>
    private static object Required(PSObject ps, string name) => Value(ps, name) ?? throw new FormatException($"it has no {name}.");

    /// <summary>A property's value, unwrapped when a script made it a PSObject (a number computed in a pipeline).</summary>
    private static object? Value(PSObject ps, string name) => ps.Properties[name]?.Value is PSObject p ? p.BaseObject : ps.Properties[name]?.Value;

    private static AddressRange RangeOf(object? item)
    {
        var o = item is PSObject p ? p.BaseObject : item;
        if (o is AddressRange r) return r;
        if (o is string s) return AddressRange.TryParse(s, out var parsed) ? parsed : throw new FormatException($"'{s}' is not a range such as 0x1000-0x3000.");
        if (item is PSObject ps && Value(ps, "Start") is { } start && Value(ps, "End") is { } end)
            return new AddressRange(Convert.ToUInt64(start, CultureInfo.InvariantCulture), Convert.ToUInt64(end, CultureInfo.InvariantCulture));
        throw new FormatException($"'{item}' is not an address range.");
    }
}
