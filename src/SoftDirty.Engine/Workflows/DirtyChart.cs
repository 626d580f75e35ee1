using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>
/// A self-contained SVG of dirty-page points: the dirty rate over time (top) and a heat strip of the address
/// space (bottom: time left to right, addresses top (low) to bottom (high); the written parts of each interval
/// in red, darker for more). The address axis shows only the parts ever written: runs of written pages less
/// than 16 MiB apart form one band, each band gets rows in proportion to its size (at least one); or, with a
/// focus range, that range alone, in 64 equal rows.
/// </summary>
public static class DirtyChart
{
    public const int Width = 900, Height = 560;
    public const int Left = 120, Right = 880, RateTop = 50, RateBottom = 230, HeatTop = 280, HeatBottom = 530;
    public const int Rows = 64;
    private const ulong BandGap = 16UL << 20;

    public static string Render(IReadOnlyList<IDirtyTimelinePoint> points, string title, AddressRange? focus = null)
    {
        var ci = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(ci, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append(ci, $"<rect width=\"{Width}\" height=\"{Height}\" fill=\"#ffffff\"/>\n");
        sb.Append(ci, $"<text x=\"{Width / 2}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">{Escape(title)}</text>\n");
        if (points.Count == 0)
        {
            sb.Append("<text x=\"450\" y=\"280\" text-anchor=\"middle\">no samples</text>\n</svg>\n");
            return sb.ToString();
        }
        // Time axis: each point covers (previous elapsed, its elapsed].
        double t0 = 0, t1 = Math.Max(points.Max(p => p.Elapsed), 1e-9);
        double X(double t) => Left + (Right - Left) * (t - t0) / (t1 - t0);
        double maxRate = Math.Max(points.Max(p => p.Rate), 1);
        double Y(double r) => RateBottom - (RateBottom - RateTop) * r / maxRate;

        // Rate panel.
        sb.Append(ci, $"<text x=\"{Left}\" y=\"{RateTop - 8}\">dirty rate (pages/s), max {maxRate:N0}</text>\n");
        sb.Append(ci, $"<line x1=\"{Left}\" y1=\"{RateBottom}\" x2=\"{Right}\" y2=\"{RateBottom}\" stroke=\"#444\"/><line x1=\"{Left}\" y1=\"{RateTop}\" x2=\"{Left}\" y2=\"{RateBottom}\" stroke=\"#444\"/>\n");
        sb.Append(ci, $"<text x=\"{Left - 6}\" y=\"{RateTop + 4}\" text-anchor=\"end\">{maxRate:0.##E0}</text><text x=\"{Left - 6}\" y=\"{RateBottom}\" text-anchor=\"end\">0</text>\n");
        var line = new StringBuilder();
        double prev = 0;
        foreach (var p in points)
        {
            line.Append(ci, $"{X(prev):0.#},{Y(p.Rate):0.#} {X(p.Elapsed):0.#},{Y(p.Rate):0.#} ");
            prev = p.Elapsed;
        }
        sb.Append(ci, $"<polyline fill=\"none\" stroke=\"#1f5fd7\" stroke-width=\"2\" points=\"{line.ToString().TrimEnd()}\"/>\n");
        sb.Append(ci, $"<text x=\"{Right}\" y=\"{RateBottom + 16}\" text-anchor=\"end\">{t1:0.###} s</text><text x=\"{Left}\" y=\"{RateBottom + 16}\">0 s</text>\n");

        // Heat strip: bands of the written address space.
        var bands = focus is { } fixedRange ? new List<(AddressRange Band, int Rows)> { (fixedRange, Rows) } : Bands(points);
        sb.Append(ci, $"<text x=\"{Left}\" y=\"{HeatTop - 8}\">written address ranges over time (low addresses at the top){(focus is { } fr ? $", 0x{fr.Start:x}-0x{fr.End:x}" : "")}</text>\n");
        sb.Append(ci, $"<rect x=\"{Left}\" y=\"{HeatTop}\" width=\"{Right - Left}\" height=\"{HeatBottom - HeatTop}\" fill=\"#f4f4f4\" stroke=\"#444\"/>\n");
        if (bands.Count > 0)
        {
            var rows = RowsOf(bands);
            double rowH = (double)(HeatBottom - HeatTop) / rows.Count;
            prev = 0;
            foreach (var p in points)
            {
                double x0 = X(prev), x1 = Math.Max(X(p.Elapsed), x0 + 1);
                prev = p.Elapsed;
                for (int r = 0; r < rows.Count; r++)
                {
                    double f = Coverage(p.Ranges, rows[r]);
                    if (f <= 0) continue;
                    double a = 0.35 + 0.65 * Math.Min(1, f);
                    sb.Append(ci, $"<rect x=\"{x0:0.##}\" y=\"{HeatTop + r * rowH:0.##}\" width=\"{x1 - x0:0.##}\" height=\"{rowH:0.##}\" fill=\"#d7301f\" fill-opacity=\"{a:0.##}\"/>\n");
                }
            }
            int row = 0;
            foreach (var (band, n) in bands)
            {
                double y = HeatTop + row * rowH;
                sb.Append(ci, $"<text x=\"{Left - 6}\" y=\"{y + 10:0.#}\" text-anchor=\"end\" font-size=\"10\">0x{band.Start:x}</text>\n");
                if (row > 0) sb.Append(ci, $"<line x1=\"{Left}\" y1=\"{y:0.#}\" x2=\"{Right}\" y2=\"{y:0.#}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n");
                row += n;
            }
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    /// <summary>The written address space as bands, each with its row count.</summary>
    public static List<(AddressRange Band, int Rows)> Bands(IReadOnlyList<IDirtyTimelinePoint> points)
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

    private static double Coverage(AddressRange[] ranges, AddressRange row)
    {
        ulong covered = 0;
        foreach (var r in ranges)
        {
            if (r.End <= row.Start) continue;
            if (r.Start >= row.End) break;
            covered += Math.Min(r.End, row.End) - Math.Max(r.Start, row.Start);
        }
        return (double)covered / row.Size;
    }

    private static string Escape(string s) => s.Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;");
}
