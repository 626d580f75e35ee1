using System;
using System.Globalization;
using System.Text;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// Recorded prints kept in the repository with runs of pages folded: consecutive page lines "p hex" with the
/// same entry become "first-last hex". A THP-eligible window prints 1,024 lines a checkpoint that fold to a
/// few (tests/vm/recorded). <see cref="Expand"/> gives back sdscenario's print exactly; "#" lines are comments.
/// </summary>
public static class ScenarioPrintRuns
{
    /// <summary>Folds runs of equal page entries.</summary>
    public static string Fold(string print)
    {
        ArgumentNullException.ThrowIfNull(print);
        var sb = new StringBuilder();
        long first = -1, last = -1;
        string entry = string.Empty;
        void Flush()
        {
            if (first < 0) return;
            sb.Append(first.ToString(CultureInfo.InvariantCulture));
            if (last != first) sb.Append('-').Append(last.ToString(CultureInfo.InvariantCulture));
            sb.Append(' ').Append(entry).Append('\n');
            first = -1;
        }
        foreach (var line in print.Split('\n'))
        {
            if (line.Length == 0) continue;
            var f = line.Split(' ');
            if (f.Length == 2 && f[1].Length == 16 && long.TryParse(f[0], NumberStyles.None, CultureInfo.InvariantCulture, out long page))
            {
                if (first >= 0 && f[1] == entry && page == last + 1) { last = page; continue; }
                Flush();
                first = last = page;
                entry = f[1];
                continue;
            }
            Flush();
            sb.Append(line).Append('\n');
        }
        Flush();
        return sb.ToString();
    }

    /// <summary>Unfolds "first-last hex" lines into one line a page and drops "#" comment lines.</summary>
    public static string Expand(string folded)
    {
        ArgumentNullException.ThrowIfNull(folded);
        var sb = new StringBuilder();
        foreach (var line in folded.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var f = line.Split(' ');
            int dash = f[0].IndexOf('-');
            if (f.Length == 2 && f[1].Length == 16 && dash > 0
                && long.TryParse(f[0].AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out long first)
                && long.TryParse(f[0].AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out long last) && last >= first)
            {
                for (long p = first; p <= last; p++) sb.Append(p.ToString(CultureInfo.InvariantCulture)).Append(' ').Append(f[1]).Append('\n');
                continue;
            }
            sb.Append(line).Append('\n');
        }
        return sb.ToString();
    }
}
