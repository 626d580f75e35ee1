using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>Compares two prints and shrinks a differing scenario to a shortest one that still differs.</summary>
public static class ScenarioComparer
{
    /// <summary>The first line where two prints differ, or -1.</summary>
    public static int FirstDifference(string a, string b)
    {
        var la = a.Split('\n');
        var lb = b.Split('\n');
        for (int i = 0; i < Math.Max(la.Length, lb.Length); i++)
            if (i >= la.Length || i >= lb.Length || la[i] != lb[i]) return i;
        return -1;
    }

    /// <summary>
    /// Removes ops (never Reserve) while the two runners still disagree: one op at a time, repeated
    /// until no single removal keeps the difference.
    /// </summary>
    public static Scenario Shrink(Scenario scenario, IScenarioRunner a, IScenarioRunner b, int maxRounds = 200)
    {
        bool Differs(Scenario s)
        {
            var pa = a.Run(new[] { s })[0];
            var pb = b.Run(new[] { s })[0];
            return pa != pb;
        }
        var ops = new List<ScenarioOp>(scenario.Ops);
        bool removed = true;
        int rounds = 0;
        while (removed && rounds++ < maxRounds)
        {
            removed = false;
            for (int i = ops.Count - 1; i >= 1; i--)
            {
                var candidate = new List<ScenarioOp>(ops);
                candidate.RemoveAt(i);
                if (!candidate.Exists(o => o.Kind == ScenarioOpKind.Check)) continue;
                if (Differs(new Scenario(scenario.Name, candidate)))
                {
                    ops = candidate;
                    removed = true;
                }
            }
        }
        return new Scenario(scenario.Name + "-shrunk", ops);
    }

    /// <summary>Two prints side by side, marking differing lines.</summary>
    public static string SideBySide(string left, string right, string leftTitle = "kernel", string rightTitle = "emulator")
    {
        var la = left.TrimEnd('\n').Split('\n');
        var lb = right.TrimEnd('\n').Split('\n');
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"  {leftTitle,-34} {rightTitle}\n");
        for (int i = 0; i < Math.Max(la.Length, lb.Length); i++)
        {
            var x = i < la.Length ? la[i] : "";
            var y = i < lb.Length ? lb[i] : "";
            sb.Append(x == y ? "  " : "! ").Append(x.PadRight(34)).Append(' ').Append(y).Append('\n');
        }
        return sb.ToString();
    }
}
