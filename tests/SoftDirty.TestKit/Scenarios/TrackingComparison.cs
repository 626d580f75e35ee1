using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using SoftDirty.Emulation;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// The two write-tracking methods side by side on the same random workloads: soft-dirty (clear_refs 4,
/// then pagemap bit 55) and userfaultfd async write-protect (register and write-protect the window, then
/// PAGEMAP_SCAN's WRITTEN), against the pages the workload really wrote (sdscenario's "truth" record).
/// Each workload maps and writes, starts both methods at once ("clear 4", "uffdwp" of the whole window),
/// then writes, reads, maps, unmaps, moves and re-protects at random, and ends with "check", "scan" and
/// "truth". MADV_DONTNEED is left out: a written page it discards reads as never written to both methods
/// while its content did change, which is a question of what "written" means, not of either method.
/// </summary>
public static class TrackingComparison
{
    /// <summary>The name prefix of the workloads ("w0", "w1", ...).</summary>
    public const string NamePrefix = "w";

    /// <summary><paramref name="count"/> workloads of <paramref name="seed"/>.</summary>
    public static List<Scenario> Workloads(int seed, int count)
    {
        var random = new Random(seed);
        var result = new List<Scenario>(count);
        for (int n = 0; n < count; n++)
        {
            int window = random.Next(8, 17);
            var ops = new List<ScenarioOp> { new(ScenarioOpKind.Reserve, Count: window) };
            int mapped = random.Next(window / 2, window + 1);
            ops.Add(new ScenarioOp(ScenarioOpKind.Map, 0, mapped, Protection: Protection.Read | Protection.Write));
            ops.Add(new ScenarioOp(ScenarioOpKind.Write, 0, random.Next(1, mapped + 1)));
            ops.Add(new ScenarioOp(ScenarioOpKind.Clear, Count: (int)ClearRefsType.SoftDirty));
            ops.Add(new ScenarioOp(ScenarioOpKind.UffdWp, 0, window));
            int steps = random.Next(4, 21);
            for (int i = 0; i < steps; i++)
            {
                int page = random.Next(window);
                int c = random.Next(1, Math.Min(4, window - page) + 1);
                int r = random.Next(100);
                ops.Add(r switch
                {
                    < 50 => new ScenarioOp(ScenarioOpKind.Write, page, c),
                    < 60 => new ScenarioOp(ScenarioOpKind.Read, page, c),
                    < 70 => new ScenarioOp(ScenarioOpKind.Map, page, c, Protection: random.Next(4) == 0 ? Protection.Read : Protection.Read | Protection.Write),
                    < 77 => new ScenarioOp(ScenarioOpKind.Unmap, page, c),
                    < 87 => new ScenarioOp(ScenarioOpKind.Mprotect, page, c, Protection: random.Next(3) == 0 ? Protection.Read : Protection.Read | Protection.Write),
                    _ => new ScenarioOp(ScenarioOpKind.Mremap, page, c, random.Next(window - c + 1)),
                });
            }
            ops.Add(new ScenarioOp(ScenarioOpKind.Check));
            ops.Add(new ScenarioOp(ScenarioOpKind.Scan));
            ops.Add(new ScenarioOp(ScenarioOpKind.Truth));
            result.Add(new Scenario(NamePrefix + n.ToString(CultureInfo.InvariantCulture), ops));
        }
        return result;
    }

    /// <summary>Adds up what each method reported against the truth, over the prints of <see cref="Workloads"/>.</summary>
    public static TrackingComparisonResult Count(IEnumerable<string> prints)
    {
        ArgumentNullException.ThrowIfNull(prints);
        long workloads = 0, written = 0, sdReported = 0, sdFalsePositive = 0, sdFalseNegative = 0,
            wpReported = 0, wpFalsePositive = 0, wpFalseNegative = 0, unregisteredWritten = 0;
        foreach (var print in prints)
        {
            var softDirty = new HashSet<int>();
            var wpWritten = new HashSet<int>();
            var registered = new HashSet<int>();
            var truth = new HashSet<int>();
            string? section = null;
            foreach (var line in print.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                var f = line.Split(' ');
                if (f[0] is "check" or "scan" or "truth" or "written") { section = f[0]; continue; }
                if (f[0] is "scenario" or "end" or "op") { section = null; continue; }
                switch (section)
                {
                    case "check":
                        if ((ulong.Parse(f[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture) & (1UL << 55)) != 0) softDirty.Add(int.Parse(f[0], CultureInfo.InvariantCulture));
                        break;
                    case "scan":
                        var categories = (PageCategory)ulong.Parse(f[2], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                        for (int p = int.Parse(f[0], CultureInfo.InvariantCulture); p < int.Parse(f[1], CultureInfo.InvariantCulture); p++)
                        {
                            // What a userfaultfd tracker reads: WRITTEN in registered VMAs (WPALLOWED).
                            if ((categories & PageCategory.WriteProtectAllowed) == 0) continue;
                            registered.Add(p);
                            if ((categories & PageCategory.Written) != 0) wpWritten.Add(p);
                        }
                        break;
                    case "truth":
                        for (int p = int.Parse(f[0], CultureInfo.InvariantCulture); p < int.Parse(f[1], CultureInfo.InvariantCulture); p++) truth.Add(p);
                        break;
                }
            }
            workloads++;
            written += truth.Count;
            sdReported += softDirty.Count;
            sdFalsePositive += softDirty.Count(p => !truth.Contains(p));
            sdFalseNegative += truth.Count(p => !softDirty.Contains(p));
            // userfaultfd tracks only registered VMAs: a page written in a VMA that is not (mapped or moved
            // after the registration) is outside its reach, counted apart.
            wpReported += wpWritten.Count;
            wpFalsePositive += wpWritten.Count(p => !truth.Contains(p));
            wpFalseNegative += truth.Count(p => registered.Contains(p) && !wpWritten.Contains(p));
            unregisteredWritten += truth.Count(p => !registered.Contains(p));
        }
        return new TrackingComparisonResult(workloads, written, sdReported, sdFalsePositive, sdFalseNegative,
            wpReported, wpFalsePositive, wpFalseNegative, unregisteredWritten);
    }
}
