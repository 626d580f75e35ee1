using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>
/// A self-contained SVG of dirty-page series: the dirty rate over time (top; pages/s on the left axis, MiB/s
/// on the right, seconds below, one line per series with a legend) and, per series, a heat strip of the
/// address space (time left to right, addresses top (low) to bottom (high); the share of each row written in
/// each interval in red, darker for more, with a colour legend). The address axis shows only the parts ever
/// written: runs of written pages less than 16 MiB apart form one band, each band gets rows in proportion to
/// its size (at least one), dashed lines mark the gaps cut out; or, with a focus range, that range alone in
/// 64 equal rows. Colours come from CSS classes with a prefers-color-scheme: dark variant; the data colours
/// (Okabe-Ito lines, red heat) read on both backgrounds.
/// </summary>
internal static class DirtyChart
{
    public const int Width = 960;
    public const int Left = 130, Right = 870;
    public const int Rows = 64;
    /// <summary>The fill of a written heat-strip cell (its opacity says how much of the row was written).</summary>
    public const string HeatColour = "#d7301f";
    private const ulong BandGap = 16UL << 20;
    private const double MiB = 1 << 20;
    private const int TitleY = 26, LegendTop = 46, LegendRowHeight = 16, RatePanelHeight = 180, HeatPanelHeight = 220;
    private const int LabelGap = 12, AxisGap = 16, CharWidth = 7;
    private static readonly string[] Palette = { "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#8c6bb1", "#999999" };
    private static readonly double[] HeatSteps = { 0.2, 0.4, 0.6, 0.8, 1.0 };
    private static readonly CultureInfo Ci = CultureInfo.InvariantCulture;
    private static readonly string[] BandAxisNote =
    {
        "Address axis: only the written address ranges, low addresses at the top. Each band gets rows in proportion",
        "to its size (at least one); dashed lines mark cut-out gaps of 16 MiB or more between bands.",
    };

    /// <summary>One series, as Watch-DirtyPage samples or pre-copy rounds of one process.</summary>
    public static string Render(IReadOnlyList<IDirtyTimelinePoint> points, string title, AddressRange? focus = null) =>
        Render(new[] { new ChartSeries("", points.Select(ToPoint).ToList()) }, title, focus);

    public static ChartPoint ToPoint(IDirtyTimelinePoint p) => new(p.Elapsed, p.Rate, p.PageSize, p.Ranges.ToArray());

    public static string Render(IReadOnlyList<ChartSeries> series, string title, AddressRange? focus = null)
    {
        var sb = new StringBuilder();
        var all = series.SelectMany(s => s.Points).ToList();
        bool legend = series.Count > 1 || series.Any(s => s.Label.Length > 0);
        // The legend wraps into rows of entries; the panels start below it.
        var legendRows = new List<List<(string Label, string Colour)>>();
        if (legend)
        {
            double x = Left;
            legendRows.Add(new());
            for (int i = 0; i < series.Count; i++)
            {
                double w = 24 + CharWidth * series[i].Label.Length + 18;
                if (x + w > Right && legendRows[^1].Count > 0) { legendRows.Add(new()); x = Left; }
                legendRows[^1].Add((series[i].Label, Colour(i)));
                x += w;
            }
        }
        int rateTop = LegendTop + LegendRowHeight * legendRows.Count + 14;
        int rateBottom = rateTop + RatePanelHeight;
        int heatTop = rateBottom + 64;
        int strips = Math.Max(1, series.Count);
        int stripHeight = strips == 1 ? HeatPanelHeight : Math.Max(90, HeatPanelHeight * 2 / 3);
        int stripGap = 30;
        int heatBottom = heatTop + strips * stripHeight + (strips - 1) * stripGap;
        int height = heatBottom + 96;

        sb.Append(Ci, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{height}\" viewBox=\"0 0 {Width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append("<style>\n")
          .Append(".bg{fill:#ffffff}.fg{fill:#1a1a1a}.dim{fill:#555555}.axis{stroke:#444444}.grid{stroke:#dddddd}.strip{fill:#f4f4f4;stroke:#444444}.cut{stroke:#888888}\n")
          .Append("@media (prefers-color-scheme: dark){.bg{fill:#16181d}.fg{fill:#e6e6e6}.dim{fill:#aaaaaa}.axis{stroke:#aaaaaa}.grid{stroke:#30343c}.strip{fill:#23262d;stroke:#aaaaaa}.cut{stroke:#777777}}\n")
          .Append("</style>\n");
        sb.Append(Ci, $"<rect class=\"bg\" width=\"{Width}\" height=\"{height}\"/>\n");
        sb.Append(Ci, $"<text class=\"fg title\" x=\"{Width / 2}\" y=\"{TitleY}\" text-anchor=\"middle\" font-size=\"16\">{Escape(title)}</text>\n");
        if (all.Count == 0)
        {
            sb.Append(Ci, $"<text class=\"fg\" x=\"{Width / 2}\" y=\"{rateTop + 40}\" text-anchor=\"middle\">no samples</text>\n</svg>\n");
            return sb.ToString();
        }

        // Series legend.
        for (int r = 0; r < legendRows.Count; r++)
        {
            double x = Left;
            int y = LegendTop + r * LegendRowHeight;
            foreach (var (label, colour) in legendRows[r])
            {
                sb.Append(Ci, $"<line class=\"legend series\" x1=\"{x:0.#}\" y1=\"{y - 4}\" x2=\"{x + 18:0.#}\" y2=\"{y - 4}\" stroke=\"{colour}\" stroke-width=\"3\"/>");
                sb.Append(Ci, $"<text class=\"fg legend series\" x=\"{x + 24:0.#}\" y=\"{y}\">{Escape(label)}</text>\n");
                x += 24 + CharWidth * label.Length + 18;
            }
        }

        // Axes: time (s) shared by both panels, rate in pages/s (left) and MiB/s (right).
        double tMax = Math.Max(all.Max(p => p.Elapsed), 1e-9);
        var xTicks = NiceTicks(tMax, 6);
        double t1 = Math.Max(tMax, xTicks[^1]);
        double X(double t) => Left + (Right - Left) * t / t1;
        var yTicks = NiceTicks(Math.Max(all.Max(p => p.Rate), 1), 5);
        double rMax = yTicks[^1];
        double Y(double r) => rateBottom - (rateBottom - rateTop) * r / rMax;
        int pageSize = all[0].PageSize > 0 ? all[0].PageSize : 4096;
        double yStep = yTicks.Count > 1 ? yTicks[1] - yTicks[0] : rMax;

        foreach (var v in yTicks)
        {
            double y = Y(v);
            sb.Append(Ci, $"<line class=\"grid\" x1=\"{Left}\" y1=\"{y:0.#}\" x2=\"{Right}\" y2=\"{y:0.#}\"/>");
            sb.Append(Ci, $"<text class=\"fg tick y\" x=\"{Left - 6}\" y=\"{y + 4:0.#}\" text-anchor=\"end\">{FormatNumber(v, yStep)}</text>");
            sb.Append('\n');
        }
        // The right axis: its own nice ticks in MiB/s, placed on the pages/s scale.
        double mibMax = rMax * pageSize / MiB;
        var mibTicks = NiceTicks(mibMax, 5).Where(v => v <= mibMax * (1 + 1e-9)).ToList();
        double mibStep = mibTicks.Count > 1 ? mibTicks[1] - mibTicks[0] : mibMax;
        foreach (var v in mibTicks)
            sb.Append(Ci, $"<text class=\"fg tick y2\" x=\"{Right + 6}\" y=\"{Y(v * MiB / pageSize) + 4:0.#}\">{FormatNumber(v, mibStep)}</text>\n");
        double xStep = xTicks.Count > 1 ? xTicks[1] - xTicks[0] : t1;
        foreach (var v in xTicks)
        {
            double x = X(v);
            sb.Append(Ci, $"<line class=\"grid\" x1=\"{x:0.#}\" y1=\"{rateTop}\" x2=\"{x:0.#}\" y2=\"{rateBottom}\"/>");
            sb.Append(Ci, $"<text class=\"fg tick x\" x=\"{x:0.#}\" y=\"{rateBottom + AxisGap + 4}\" text-anchor=\"middle\">{FormatNumber(v, xStep)}</text>\n");
        }
        sb.Append(Ci, $"<line class=\"axis\" x1=\"{Left}\" y1=\"{rateBottom}\" x2=\"{Right}\" y2=\"{rateBottom}\"/><line class=\"axis\" x1=\"{Left}\" y1=\"{rateTop}\" x2=\"{Left}\" y2=\"{rateBottom}\"/><line class=\"axis\" x1=\"{Right}\" y1=\"{rateTop}\" x2=\"{Right}\" y2=\"{rateBottom}\"/>\n");
        sb.Append(Ci, $"<text class=\"fg axis-title y\" transform=\"translate({Left - 62},{(rateTop + rateBottom) / 2}) rotate(-90)\" text-anchor=\"middle\">dirty rate (pages/s)</text>\n");
        sb.Append(Ci, $"<text class=\"fg axis-title y2\" transform=\"translate({Right + 62},{(rateTop + rateBottom) / 2}) rotate(90)\" text-anchor=\"middle\">dirty rate (MiB/s, {pageSize / 1024} KiB pages)</text>\n");
        sb.Append(Ci, $"<text class=\"fg axis-title x\" x=\"{(Left + Right) / 2}\" y=\"{rateBottom + AxisGap + 22}\" text-anchor=\"middle\">time since the first sample (s)</text>\n");

        for (int i = 0; i < series.Count; i++)
        {
            var line = new StringBuilder();
            double prev = 0;
            foreach (var p in series[i].Points)
            {
                line.Append(Ci, $"{X(prev):0.#},{Y(p.Rate):0.#} {X(p.Elapsed):0.#},{Y(p.Rate):0.#} ");
                prev = p.Elapsed;
            }
            sb.Append(Ci, $"<polyline class=\"rate\" fill=\"none\" stroke=\"{Colour(i)}\" stroke-width=\"2\" points=\"{line.ToString().TrimEnd()}\"/>\n");
        }

        // Heat strips, one per series.
        var notes = new List<string>();
        for (int i = 0; i < series.Count; i++)
        {
            int top = heatTop + i * (stripHeight + stripGap);
            Strip(sb, series[i], focus, top, top + stripHeight, X, series.Count > 1 ? Colour(i) : null, notes);
        }
        foreach (var v in xTicks)
            sb.Append(Ci, $"<text class=\"fg tick x heat\" x=\"{X(v):0.#}\" y=\"{heatBottom + AxisGap + 2}\" text-anchor=\"middle\">{FormatNumber(v, xStep)}</text>");
        sb.Append('\n');

        // Heat legend and the address scale.
        int ly = heatBottom + AxisGap + 22;
        sb.Append(Ci, $"<text class=\"fg legend heat\" x=\"{Left}\" y=\"{ly}\">share of a row's bytes written in the interval:</text>\n");
        double sx = Left + 300;
        double previous = 0;
        foreach (var step in HeatSteps)
        {
            sb.Append(Ci, $"<rect class=\"legend heat swatch\" x=\"{sx:0.#}\" y=\"{ly - 11}\" width=\"14\" height=\"14\" fill=\"{HeatColour}\" fill-opacity=\"{Opacity(step):0.##}\"/>");
            sb.Append(Ci, $"<text class=\"fg legend heat\" x=\"{sx + 18:0.#}\" y=\"{ly}\">{previous * 100:0}-{step * 100:0}%</text>\n");
            sx += 80;
            previous = step;
        }
        var scale = new List<string>(focus is { } f
            ? new[] { $"Address axis: 0x{f.Start:x}-0x{f.End:x} ({FormatBytes(f.Size)}) in {Rows} equal rows of {FormatBytes(f.Size / Rows)}, low addresses at the top." }
            : BandAxisNote);
        if (notes.Count > 0) scale.Add(string.Join(" ", notes));
        for (int i = 0; i < scale.Count; i++)
            sb.Append(Ci, $"<text class=\"dim legend scale\" x=\"{Left}\" y=\"{ly + 20 + 16 * i}\" font-size=\"11\">{Escape(scale[i])}</text>\n");
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    private static void Strip(StringBuilder sb, ChartSeries s, AddressRange? focus, int top, int bottom, Func<double, double> x, string? colour, List<string> notes)
    {
        var bands = focus is { } fixedRange ? new List<(AddressRange Band, int Rows)> { (fixedRange, Rows) } : Bands(s.Points);
        string what = s.Label.Length > 0 ? $"{s.Label}: " : "";
        sb.Append(Ci, $"<text class=\"fg panel-title\" x=\"{Left}\" y=\"{top - 8}\">{Escape(what)}written address ranges per interval</text>\n");
        if (colour is not null) sb.Append(Ci, $"<rect x=\"{Left - 10}\" y=\"{top}\" width=\"4\" height=\"{bottom - top}\" fill=\"{colour}\"/>\n");
        sb.Append(Ci, $"<rect class=\"strip\" x=\"{Left}\" y=\"{top}\" width=\"{Right - Left}\" height=\"{bottom - top}\"/>\n");
        if (bands.Count == 0) return;
        var rows = RowsOf(bands);
        double rowH = (double)(bottom - top) / rows.Count;
        double prev = 0;
        foreach (var p in s.Points)
        {
            double x0 = x(prev), x1 = Math.Max(x(p.Elapsed), x0 + 1);
            prev = p.Elapsed;
            var ranges = p.Ranges.OrderBy(r => r.Start).ToArray();
            for (int r = 0; r < rows.Count; r++)
            {
                double f = Coverage(ranges, rows[r]);
                if (f <= 0) continue;
                sb.Append(Ci, $"<rect x=\"{x0:0.##}\" y=\"{top + r * rowH:0.##}\" width=\"{x1 - x0:0.##}\" height=\"{rowH:0.##}\" fill=\"{HeatColour}\" fill-opacity=\"{Opacity(f):0.##}\"/>\n");
            }
        }
        // Band labels at their first row, pushed apart so that none overlaps; those that do not fit are counted.
        int row = 0, skipped = 0;
        double free = top;
        foreach (var (band, n) in bands)
        {
            double y = top + row * rowH;
            if (row > 0) sb.Append(Ci, $"<line class=\"cut\" x1=\"{Left}\" y1=\"{y:0.#}\" x2=\"{Right}\" y2=\"{y:0.#}\" stroke-dasharray=\"4 3\"/>\n");
            double ly = Math.Max(y + 10, free + 10);
            if (ly <= bottom)
            {
                sb.Append(Ci, $"<text class=\"fg band-label\" x=\"{Left - 14}\" y=\"{ly:0.#}\" text-anchor=\"end\" font-size=\"10\">0x{band.Start:x}<title>0x{band.Start:x}-0x{band.End:x} ({FormatBytes(band.Size)})</title></text>\n");
                free = ly - 10 + LabelGap;
            }
            else skipped++;
            row += n;
        }
        if (skipped > 0) notes.Add($"{what}{skipped} band(s) too thin to label.");
    }

    /// <summary>The written address space as bands, each with its row count.</summary>
    public static List<(AddressRange Band, int Rows)> Bands(IReadOnlyList<IDirtyTimelinePoint> points) => Bands(points.Select(ToPoint).ToList());

    public static List<(AddressRange Band, int Rows)> Bands(IReadOnlyList<ChartPoint> points)
    {
        var all = points.SelectMany(p => p.Ranges).OrderBy(r => r.Start).ToList();
        var bands = new List<AddressRange>();
        foreach (var r in all)
        {
            if (bands.Count > 0 && r.Start <= bands[^1].End + BandGap) { if (r.End > bands[^1].End) bands[^1] = new AddressRange(bands[^1].Start, r.End); }
            else bands.Add(r);
        }
        if (bands.Count == 0) return new();
        int rows = Math.Max(Rows, bands.Count);
        double total = bands.Sum(b => (double)b.Size);
        var counts = bands.Select(b => Math.Max(1, (int)Math.Floor(b.Size / total * (rows - bands.Count)))).ToList();
        // Give what is left to the largest band.
        int left = rows - counts.Sum();
        if (left > 0) counts[bands.IndexOf(bands.OrderByDescending(b => b.Size).First())] += left;
        return bands.Zip(counts).ToList();
    }

    /// <summary>Ticks 0, step, 2 step, ... up to the first at or above <paramref name="max"/>, step a 1-2-5 multiple of a power of ten (at least <paramref name="target"/> ticks).</summary>
    public static List<double> NiceTicks(double max, int target)
    {
        double raw = max / Math.Max(1, target - 1);
        double magnitude = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        // The largest 1-2-5 step not above max / (target - 1): at least target - 1 intervals, at most about 2.5 times that.
        double step = new[] { 5.0, 2, 1 }.Select(m => m * magnitude).First(s => s <= raw * (1 + 1e-9));
        var ticks = new List<double>();
        for (int i = 0; ; i++)
        {
            double v = Math.Round(i * step, 12);
            ticks.Add(v);
            if (v >= max * (1 - 1e-9)) break;
        }
        return ticks;
    }

    /// <summary>A tick label: thousands separated, as many decimals as the step needs, never E-notation.</summary>
    public static string FormatNumber(double v, double step)
    {
        int decimals = step >= 1 || step <= 0 ? 0 : Math.Min(6, (int)Math.Ceiling(-Math.Log10(step) - 1e-9));
        return v.ToString("N" + decimals.ToString(Ci), Ci);
    }

    /// <summary>A size as the chart's other numbers are written, in the invariant culture ("1.5 MiB", never "1,5 MiB" under de-DE).</summary>
    private static string FormatBytes(ulong bytes) =>
        bytes >= 1UL << 30 ? string.Create(Ci, $"{bytes / (double)(1UL << 30):0.#} GiB")
        : bytes >= 1UL << 20 ? string.Create(Ci, $"{bytes / MiB:0.#} MiB")
        : bytes >= 1UL << 10 ? string.Create(Ci, $"{bytes / 1024.0:0.#} KiB")
        : string.Create(Ci, $"{bytes} B");

    private static double Opacity(double share) => 0.25 + 0.75 * Math.Min(1, share);

    private static string Colour(int i) => Palette[i % Palette.Length];

    private static List<AddressRange> RowsOf(List<(AddressRange Band, int Rows)> bands)
    {
        var rows = new List<AddressRange>();
        foreach (var (b, n) in bands)
            for (int i = 0; i < n; i++)
            {
                ulong s = b.Start + (ulong)((double)b.Size * i / n), e = i == n - 1 ? b.End : b.Start + (ulong)((double)b.Size * (i + 1) / n);
                rows.Add(new AddressRange(s, Math.Max(e, s + 1)));
            }
        return rows;
    }

    private static double Coverage(AddressRange[] sorted, AddressRange row)
    {
        ulong covered = 0;
        foreach (var r in sorted)
        {
            if (r.End <= row.Start) continue;
            if (r.Start >= row.End) break;
            covered += Math.Min(r.End, row.End) - Math.Max(r.Start, row.Start);
        }
        return (double)covered / row.Size;
    }

    /// <summary>
    /// Text as SVG character data: markup escaped, and every character XML 1.0 forbids (control characters a
    /// process name may hold, lone surrogates, U+FFFE/U+FFFF) replaced with U+FFFD, so the chart stays well-formed.
    /// So are the characters XML allows but a viewer does not draw as themselves: the C1 controls and DEL (some terminals act
    /// on them in a chart shown with cat), and the format characters (Unicode Cf: every bidirectional
    /// control, U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069, which in a process name would reorder the rest
    /// of its line, the pid after it, "(1234)" drawn as "(4321)"; the zero-width and tag characters) and the line and
    /// paragraph separators.
    /// </summary>
    internal static string Escape(string s)
    {
        var sb = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                if (CharUnicodeInfo.GetUnicodeCategory(s, i) == UnicodeCategory.Format) sb.Append('\uFFFD'); else sb.Append(c).Append(s[i + 1]);
                i++;
                continue;
            }
            bool allowed = c is '\t' or '\n' or '\r'
                || (((c >= ' ' && c < '\uD800') || (c >= '\uE000' && c <= '\uFFFD'))
                    && CharUnicodeInfo.GetUnicodeCategory(c) is not (UnicodeCategory.Control or UnicodeCategory.Format
                        or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator));
            sb.Append(!allowed ? '\uFFFD' : c switch { '&' => "&amp;", '<' => "&lt;", '>' => "&gt;", _ => c.ToString() });
        }
        return sb.ToString();
    }
}
