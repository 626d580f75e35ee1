using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>A named sequence of operations over a window of pages, run alike on real memory and the emulator.</summary>
public sealed class Scenario
{
    /// <summary>A scenario of <paramref name="ops"/>, the first Reserve.</summary>
    public Scenario(string name, IReadOnlyList<ScenarioOp> ops)
    {
        Name = name;
        Ops = ops;
    }

    /// <summary>The name its prints carry ("scenario &lt;name&gt;").</summary>
    public string Name { get; }
    /// <summary>The operations; the first is Reserve.</summary>
    public IReadOnlyList<ScenarioOp> Ops { get; }
    /// <summary>The window's size in pages (Reserve's count).</summary>
    public int WindowPages => Ops.Count > 0 && Ops[0].Kind == ScenarioOpKind.Reserve ? Ops[0].Count : 0;
    /// <summary>Whether it maps the backing file (so what it prints depends on the file system, <see cref="ScenarioTempFolder"/>).</summary>
    public bool MapsFile
    {
        get
        {
            foreach (var op in Ops)
                if (op.Kind == ScenarioOpKind.Map && op.Mapping is ScenarioMappingKind.File or ScenarioMappingKind.FilePriv) return true;
            return false;
        }
    }

    /// <summary>The scenario in the text form sdscenario reads.</summary>
    public string ToText()
    {
        var sb = new StringBuilder();
        sb.Append("scenario ").Append(Name).Append('\n');
        foreach (var op in Ops) sb.Append(op.ToString()).Append('\n');
        sb.Append("end\n");
        return sb.ToString();
    }

    /// <summary>Parses one or more scenarios of text form.</summary>
    public static List<Scenario> Parse(string text)
    {
        var result = new List<Scenario>();
        string? name = null;
        List<ScenarioOp>? ops = null;
        int lineNo = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNo++;
            var line = raw.Trim();
            int hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash].Trim();
            if (line.Length == 0) continue;
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            try
            {
                if (f[0] == "scenario") { name = f.Length > 1 ? f[1] : "unnamed"; ops = new List<ScenarioOp>(); continue; }
                if (ops is null) throw new FormatException("expected 'scenario <name>' first");
                if (f[0] == "end") { result.Add(new Scenario(name!, ops)); ops = null; continue; }
                int I(int i) => int.Parse(f[i], NumberStyles.None, CultureInfo.InvariantCulture);
                ops.Add(f[0] switch
                {
                    "reserve" => new ScenarioOp(ScenarioOpKind.Reserve, Count: I(1)),
                    "map" => new ScenarioOp(ScenarioOpKind.Map, I(1), I(2), Protection: ScenarioOp.ParseProtection(f[3]),
                        Mapping: Enum.Parse<ScenarioMappingKind>(f[4], ignoreCase: true)),
                    "unmap" => new ScenarioOp(ScenarioOpKind.Unmap, I(1), I(2)),
                    "mremap" => new ScenarioOp(ScenarioOpKind.Mremap, I(1), I(2), I(3)),
                    "mprotect" => new ScenarioOp(ScenarioOpKind.Mprotect, I(1), I(2), Protection: ScenarioOp.ParseProtection(f[3])),
                    "read" => new ScenarioOp(ScenarioOpKind.Read, I(1), I(2)),
                    "write" => new ScenarioOp(ScenarioOpKind.Write, I(1), I(2)),
                    "clear" => new ScenarioOp(ScenarioOpKind.Clear, Count: I(1)),
                    "dontneed" => new ScenarioOp(ScenarioOpKind.DontNeed, I(1), I(2)),
                    "fork" => new ScenarioOp(ScenarioOpKind.Fork),
                    "switch" => new ScenarioOp(ScenarioOpKind.Switch),
                    "check" => new ScenarioOp(ScenarioOpKind.Check),
                    "scan" => new ScenarioOp(ScenarioOpKind.Scan),
                    "uffdwp" => new ScenarioOp(ScenarioOpKind.UffdWp, I(1), I(2)),
                    "written" => new ScenarioOp(ScenarioOpKind.Written),
                    "neighbour" => new ScenarioOp(ScenarioOpKind.Neighbour),
                    "truth" => new ScenarioOp(ScenarioOpKind.Truth),
                    "fill" => new ScenarioOp(ScenarioOpKind.Fill, I(1), I(2), I(3)),
                    "ksm" => new ScenarioOp(ScenarioOpKind.Ksm, I(1), I(2)),
                    "unmerge" => new ScenarioOp(ScenarioOpKind.Unmerge, I(1), I(2)),
                    "split" => new ScenarioOp(ScenarioOpKind.Split, I(1), I(2)),
                    "migrate" => new ScenarioOp(ScenarioOpKind.Migrate, I(1), I(2), I(3)),
                    "pageout" => new ScenarioOp(ScenarioOpKind.PageOut, I(1), I(2)),
                    "cold" => new ScenarioOp(ScenarioOpKind.Cold, I(1), I(2)),
                    "free" => new ScenarioOp(ScenarioOpKind.Free, I(1), I(2)),
                    "swapoff" => new ScenarioOp(ScenarioOpKind.SwapOff),
                    "swapon" => new ScenarioOp(ScenarioOpKind.SwapOn),
                    "wipeonfork" => new ScenarioOp(ScenarioOpKind.WipeOnFork, I(1), I(2)),
                    "keeponfork" => new ScenarioOp(ScenarioOpKind.KeepOnFork, I(1), I(2)),
                    "dontfork" => new ScenarioOp(ScenarioOpKind.DontFork, I(1), I(2)),
                    "dofork" => new ScenarioOp(ScenarioOpKind.DoFork, I(1), I(2)),
                    "seal" => new ScenarioOp(ScenarioOpKind.Seal, I(1), I(2)),
                    "truncate" => new ScenarioOp(ScenarioOpKind.Truncate, Count: I(1)),
                    _ => throw new FormatException($"unknown operation '{f[0]}'"),
                });
            }
            catch (Exception ex) when (ex is FormatException or IndexOutOfRangeException or ArgumentException or OverflowException)
            {
                throw new FormatException($"scenario line {lineNo}: '{raw.Trim()}': {ex.Message}", ex);
            }
        }
        if (ops is not null) throw new FormatException($"scenario '{name}' has no 'end'");
        return result;
    }
}
