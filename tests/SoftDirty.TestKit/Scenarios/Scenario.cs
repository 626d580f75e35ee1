using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace SoftDirty.Scenarios;

/// <summary>What a scenario step does (the verbs of tests/native/sdscenario.c).</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum ScenarioOpKind
{
    /// <summary>The window of pages the scenario works in, reserved PROT_NONE.</summary>
    Reserve,
    Map,
    Unmap,
    /// <summary>mremap MAYMOVE|FIXED of Count pages from Page to Target, same size.</summary>
    Mremap,
    Mprotect,
    Read,
    Write,
    /// <summary>clear_refs of type Count (1-5).</summary>
    Clear,
    /// <summary>madvise MADV_DONTNEED.</summary>
    DontNeed,
    /// <summary>fork; the child becomes the current process.</summary>
    Fork,
    /// <summary>Make the other process (parent or child) current.</summary>
    Switch,
    /// <summary>Print the window's pagemap entries of the current process.</summary>
    Check,
    /// <summary>PAGEMAP_SCAN of the window, no masks, every category returned: print the regions.</summary>
    Scan,
    /// <summary>userfaultfd (WP_ASYNC|WP_UNPOPULATED) UFFDIO_REGISTER MODE_WP, then UFFDIO_WRITEPROTECT, of Count pages at Page.</summary>
    UffdWp,
    /// <summary>PAGEMAP_SCAN get-and-reset of WRITTEN over the window (WP_MATCHING|CHECK_WPASYNC): print the regions.</summary>
    Written,
    /// <summary>
    /// Map, write and unmap the last page of the window's last 2 MiB range (outside the window): a page table
    /// shared with the window's pages, which changes what PAGEMAP_SCAN reports for never-touched ones.
    /// </summary>
    Neighbour,
    /// <summary>Print the pages the current process really wrote since its last clear_refs 4 (the runner's own record).</summary>
    Truth,
}

/// <summary>How a scenario mapping is backed.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum ScenarioMappingKind
{
    /// <summary>MAP_PRIVATE|MAP_ANONYMOUS.</summary>
    Anon,
    /// <summary>MAP_SHARED|MAP_ANONYMOUS.</summary>
    Shared,
    /// <summary>MAP_SHARED of the scenario's file, at the file offset of the page.</summary>
    File,
    /// <summary>MAP_PRIVATE of the scenario's file.</summary>
    FilePriv,
}

/// <summary>One step of a scenario; Page, Count and Target are page numbers in the window.</summary>
public readonly record struct ScenarioOp(ScenarioOpKind Kind, int Page = 0, int Count = 0, int Target = 0,
    Protection Protection = Protection.None, ScenarioMappingKind Mapping = ScenarioMappingKind.Anon)
{
    public static string FormatProtection(Protection p) => p switch
    {
        Protection.None => "none",
        Protection.Read => "r",
        Protection.Read | Protection.Write => "rw",
        Protection.Read | Protection.Write | Protection.Execute => "rwx",
        _ => throw new ArgumentException($"Scenarios use none, r, rw or rwx, not {p}."),
    };

    public static Protection ParseProtection(string s) => s switch
    {
        "none" => Protection.None,
        "r" => Protection.Read,
        "rw" => Protection.Read | Protection.Write,
        "rwx" => Protection.Read | Protection.Write | Protection.Execute,
        _ => throw new FormatException($"unknown protection '{s}' (none, r, rw, rwx)"),
    };

    /// <summary>The op as a line of the scenario language.</summary>
    public override string ToString() => Kind switch
    {
        ScenarioOpKind.Reserve => $"reserve {Count}",
        ScenarioOpKind.Map => $"map {Page} {Count} {FormatProtection(Protection)} {Mapping.ToString().ToLowerInvariant()}",
        ScenarioOpKind.Unmap => $"unmap {Page} {Count}",
        ScenarioOpKind.Mremap => $"mremap {Page} {Count} {Target}",
        ScenarioOpKind.Mprotect => $"mprotect {Page} {Count} {FormatProtection(Protection)}",
        ScenarioOpKind.Read => $"read {Page} {Count}",
        ScenarioOpKind.Write => $"write {Page} {Count}",
        ScenarioOpKind.Clear => $"clear {Count}",
        ScenarioOpKind.DontNeed => $"dontneed {Page} {Count}",
        ScenarioOpKind.Fork => "fork",
        ScenarioOpKind.Switch => "switch",
        ScenarioOpKind.Check => "check",
        ScenarioOpKind.Scan => "scan",
        ScenarioOpKind.UffdWp => $"uffdwp {Page} {Count}",
        ScenarioOpKind.Written => "written",
        ScenarioOpKind.Neighbour => "neighbour",
        ScenarioOpKind.Truth => "truth",
        _ => throw new InvalidOperationException(Kind.ToString()),
    };
}

/// <summary>A named sequence of operations over a window of pages, run alike on real memory and the emulator.</summary>
public sealed class Scenario
{
    public Scenario(string name, IReadOnlyList<ScenarioOp> ops)
    {
        Name = name;
        Ops = ops;
    }

    public string Name { get; }
    /// <summary>The operations; the first is Reserve.</summary>
    public IReadOnlyList<ScenarioOp> Ops { get; }
    public int WindowPages => Ops.Count > 0 && Ops[0].Kind == ScenarioOpKind.Reserve ? Ops[0].Count : 0;

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

/// <summary>
/// Random scenarios from a seed: a small window, every operation of the language, mostly valid
/// arguments (faults and errors included on purpose: they are compared too). The write-tracking ops
/// (scan, uffdwp, written: PAGEMAP_SCAN and userfaultfd, 6.7+) come only with
/// <c>allowWriteTracking</c>; without it a seed gives the same scenarios as before they existed.
/// </summary>
public sealed class ScenarioGenerator
{
    private readonly Random _random;
    private readonly bool _allowFile;
    private readonly bool _allowWriteTracking;

    public ScenarioGenerator(int seed, bool allowFileMappings = true, bool allowWriteTracking = false)
    {
        _random = new Random(seed);
        _allowFile = allowFileMappings;
        _allowWriteTracking = allowWriteTracking;
    }

    public Scenario Next(string name, int minOps = 6, int maxOps = 30)
    {
        int window = _random.Next(4, 17);
        var ops = new List<ScenarioOp> { new(ScenarioOpKind.Reserve, Count: window) };
        int n = _random.Next(minOps, maxOps + 1);
        bool forked = false;
        // Start with a mapping so most scenarios do something.
        ops.Add(new ScenarioOp(ScenarioOpKind.Map, 0, Math.Max(1, window / 2), Protection: Protection.Read | Protection.Write, Mapping: ScenarioMappingKind.Anon));
        for (int i = 0; i < n; i++)
        {
            int page = _random.Next(window);
            int count = _random.Next(1, Math.Min(4, window - page) + 1);
            var kind = Pick();
            switch (kind)
            {
                case ScenarioOpKind.Map:
                    ops.Add(new ScenarioOp(kind, page, count, Protection: RandomProtection(), Mapping: RandomMappingKind()));
                    break;
                case ScenarioOpKind.Mprotect:
                    ops.Add(new ScenarioOp(kind, page, count, Protection: RandomProtection()));
                    break;
                case ScenarioOpKind.Mremap:
                    int target = _random.Next(window - count + 1);
                    if (target == page) target = (target + count) % (window - count + 1);
                    if (Math.Abs(target - page) < count) target = page; // overlapping moves are EINVAL; keep a few
                    ops.Add(new ScenarioOp(kind, page, count, target));
                    break;
                case ScenarioOpKind.Clear:
                    ops.Add(new ScenarioOp(kind, Count: _random.Next(4) == 0 ? _random.Next(1, 6) : (int)ClearRefsType.SoftDirty));
                    break;
                case ScenarioOpKind.Fork:
                    if (forked) goto case ScenarioOpKind.Switch;
                    forked = true;
                    ops.Add(new ScenarioOp(kind));
                    break;
                case ScenarioOpKind.Switch:
                    ops.Add(forked ? new ScenarioOp(ScenarioOpKind.Switch) : new ScenarioOp(ScenarioOpKind.Check));
                    break;
                case ScenarioOpKind.Check:
                case ScenarioOpKind.Scan:
                case ScenarioOpKind.Written:
                case ScenarioOpKind.Neighbour:
                    ops.Add(new ScenarioOp(kind));
                    break;
                case ScenarioOpKind.UffdWp:
                    // Mostly the whole window, so that "written" finds every VMA registered.
                    ops.Add(_random.Next(2) == 0 ? new ScenarioOp(kind, 0, window) : new ScenarioOp(kind, page, count));
                    break;
                default:
                    ops.Add(new ScenarioOp(kind, page, count));
                    break;
            }
        }
        ops.Add(new ScenarioOp(ScenarioOpKind.Check));
        return new Scenario(name, ops);
    }

    private ScenarioOpKind Pick()
    {
        int r = _random.Next(_allowWriteTracking ? 120 : 100);
        return r switch
        {
            >= 115 => ScenarioOpKind.Neighbour,
            >= 110 => ScenarioOpKind.Written,
            >= 105 => ScenarioOpKind.UffdWp,
            >= 100 => ScenarioOpKind.Scan,
            < 28 => ScenarioOpKind.Write,
            < 38 => ScenarioOpKind.Read,
            < 50 => ScenarioOpKind.Clear,
            < 58 => ScenarioOpKind.Map,
            < 63 => ScenarioOpKind.Unmap,
            < 70 => ScenarioOpKind.Mprotect,
            < 75 => ScenarioOpKind.Mremap,
            < 80 => ScenarioOpKind.DontNeed,
            < 83 => ScenarioOpKind.Fork,
            < 87 => ScenarioOpKind.Switch,
            _ => ScenarioOpKind.Check,
        };
    }

    private Protection RandomProtection() => _random.Next(10) switch
    {
        0 => Protection.None,
        < 3 => Protection.Read,
        9 => Protection.Read | Protection.Write | Protection.Execute,
        _ => Protection.Read | Protection.Write,
    };

    private ScenarioMappingKind RandomMappingKind()
    {
        int r = _random.Next(_allowFile ? 10 : 7);
        return r switch { < 5 => ScenarioMappingKind.Anon, < 7 => ScenarioMappingKind.Shared, < 9 => ScenarioMappingKind.File, _ => ScenarioMappingKind.FilePriv };
    }
}

/// <summary>Runs scenarios and prints what they show, in sdscenario's output format.</summary>
public interface IScenarioRunner
{
    /// <summary>The print of each scenario, in order: "scenario", op failures, checks, "end".</summary>
    IReadOnlyList<string> Run(IReadOnlyList<Scenario> scenarios);
}

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
        sb.Append($"  {leftTitle,-34} {rightTitle}\n");
        for (int i = 0; i < Math.Max(la.Length, lb.Length); i++)
        {
            var x = i < la.Length ? la[i] : "";
            var y = i < lb.Length ? lb[i] : "";
            sb.Append(x == y ? "  " : "! ").Append(x.PadRight(34)).Append(' ').Append(y).Append('\n');
        }
        return sb.ToString();
    }
}

/// <summary>Runs scenarios on real memory through the native sdscenario program.</summary>
public sealed class NativeScenarioRunner : IScenarioRunner
{
    private readonly string _program;

    public NativeScenarioRunner(string program) => _program = program;

    public IReadOnlyList<string> Run(IReadOnlyList<Scenario> scenarios)
    {
        var input = new StringBuilder();
        foreach (var s in scenarios) input.Append(s.ToText());
        var psi = new System.Diagnostics.ProcessStartInfo(_program)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var p = System.Diagnostics.Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {_program}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        p.StandardInput.Write(input.ToString());
        p.StandardInput.Close();
        var text = stdout.Result;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{_program} exited with {p.ExitCode}: {p.StandardError.ReadToEnd()}");
        return SplitPrints(text);
    }

    /// <summary>Splits a print of many scenarios into one string per scenario.</summary>
    public static List<string> SplitPrints(string text)
    {
        var prints = new List<string>();
        var current = new StringBuilder();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0) continue;
            current.Append(line).Append('\n');
            if (line == "end") { prints.Add(current.ToString()); current.Clear(); }
        }
        return prints;
    }
}
