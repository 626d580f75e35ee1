using System;
using System.Linq;
using SoftDirty;
using SoftDirty.TestKit.Scenarios;
using Xunit;

namespace SoftDirty.Tests;

public class ScenarioTests
{
    [Fact]
    public void TextRoundTripsEveryOperation()
    {
        const string text = "scenario all\nreserve 8\nmap 0 4 rw anon\nmap 4 2 r file\nmap 6 1 rwx shared\nmap 7 1 none filepriv\n" +
                            "unmap 1 1\nmremap 0 1 5\nmprotect 2 2 r\nread 2 1\nwrite 3 1\nclear 4\ndontneed 2 1\nfork\nswitch\ncheck\nend\n";
        var s = Assert.Single(Scenario.Parse(text));
        Assert.Equal("all", s.Name);
        Assert.Equal(8, s.WindowPages);
        Assert.Equal(15, s.Ops.Count);
        Assert.Equal(text, s.ToText());
        Assert.Equal(ScenarioMappingKind.FilePriv, s.Ops[4].Mapping);
        Assert.Equal(Protection.Read | Protection.Write | Protection.Execute, s.Ops[3].Protection);
    }

    [Fact]
    public void WriteTrackingOpsRoundTrip()
    {
        const string text = "scenario wt\nreserve 4\nuffdwp 1 3\nscan\nwritten\nend\n";
        var s = Assert.Single(Scenario.Parse(text));
        Assert.Equal(new[] { ScenarioOpKind.Reserve, ScenarioOpKind.UffdWp, ScenarioOpKind.Scan, ScenarioOpKind.Written }, s.Ops.Select(o => o.Kind));
        Assert.Equal((1, 3), (s.Ops[1].Page, s.Ops[1].Count));
        Assert.Equal(text, s.ToText());
    }

    [Fact]
    public void WriteTrackingOpsComeOnlyWhenAsked()
    {
        static bool Tracking(Scenario s) => s.Ops.Any(o => o.Kind is ScenarioOpKind.Scan or ScenarioOpKind.UffdWp or ScenarioOpKind.Written);
        var without = new ScenarioGenerator(5, allowFileMappings: false);
        var with = new ScenarioGenerator(5, allowFileMappings: false, allowWriteTracking: true);
        var plain = Enumerable.Range(0, 300).Select(i => without.Next("s" + i)).ToList();
        var tracked = Enumerable.Range(0, 300).Select(i => with.Next("s" + i)).ToList();
        Assert.DoesNotContain(plain, Tracking);
        foreach (var kind in new[] { ScenarioOpKind.Scan, ScenarioOpKind.UffdWp, ScenarioOpKind.Written })
            Assert.Contains(tracked, s => s.Ops.Any(o => o.Kind == kind));
        // The option off draws exactly as before the option existed: a seed's scenarios did not change.
        Assert.Equal(new ScenarioGenerator(5, allowFileMappings: false).Next("s0").ToText(), plain[0].ToText());
        foreach (var s in tracked)
            foreach (var op in s.Ops.Where(o => o.Kind == ScenarioOpKind.UffdWp))
                Assert.InRange(op.Page + op.Count, 1, s.WindowPages);
    }

    [Fact]
    public void DifferentialCountsCheckpointsAndShrinksTheFirstMismatch()
    {
        var scenarios = Scenario.Parse("scenario a\nreserve 2\ncheck\nscan\nend\nscenario b\nreserve 2\nwrite 0 1\nwritten\ncheck\nend\n");
        string Print(Scenario s) => "scenario " + s.Name + "\n" + string.Concat(s.Ops.Skip(1).Select(o => o.Kind switch
        {
            ScenarioOpKind.Check => "check 1 self\n", ScenarioOpKind.Scan => "scan 1 self\n", ScenarioOpKind.Written => "written 1 self\n", _ => "",
        })) + "end\n";
        var kernel = new FakeRunner(Print);
        var same = ScenarioDifferential.Compare(kernel, new FakeRunner(Print), scenarios);
        Assert.True(same.Matched);
        Assert.Equal((2, 4), (same.Scenarios, same.Checkpoints));
        Assert.Null(same.FirstMismatch);
        // An emulator that gets "written" wrong: b differs, shrunk to the op that matters.
        var wrong = new FakeRunner(s => s.Ops.Any(o => o.Kind == ScenarioOpKind.Written) ? "other\n" : Print(s));
        var result = ScenarioDifferential.Compare(kernel, wrong, scenarios);
        Assert.Equal(new[] { "b" }, result.DifferingNames);
        Assert.Equal("scenario b-shrunk\nreserve 2\nwritten\ncheck\nend\n", result.FirstMismatch!.Shrunk.ToText());   // a check always stays
        Assert.Contains("! ", result.FirstMismatch.SideBySide);
        Assert.Contains("b-shrunk", result.ToString());
    }

    [Fact]
    public void HandWrittenScenarioFilesParse()
    {
        var dir = new System.IO.DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !System.IO.Directory.Exists(System.IO.Path.Combine(dir.FullName, "tests/scenarios"))) dir = dir.Parent;
        Assert.NotNull(dir);
        var all = ScenarioDifferential.Load(System.IO.Path.Combine(dir!.FullName, "tests/scenarios"));
        Assert.True(all.Count >= 20, $"{all.Count} scenarios");
        Assert.Equal(all.Count, all.Select(s => s.Name).Distinct().Count());
        Assert.Contains(all, s => s.Name == "selftest-merge-mremap");
    }

    [Theory]
    [InlineData("reserve 4\n", "expected 'scenario")]
    [InlineData("scenario x\nreserve 4\nmap 0 1 rw\nend\n", "line 3")]
    [InlineData("scenario x\nreserve 4\nmap 0 1 wx anon\nend\n", "unknown protection")]
    [InlineData("scenario x\nreserve 4\njump 1\nend\n", "unknown operation")]
    [InlineData("scenario x\nreserve 4\n", "no 'end'")]
    public void MalformedTextNamesTheProblem(string text, string expected)
    {
        var ex = Assert.Throws<FormatException>(() => Scenario.Parse(text));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void GeneratorIsDeterministicPerSeedAndStaysInTheWindow()
    {
        var a = new ScenarioGenerator(42).Next("s");
        var b = new ScenarioGenerator(42).Next("s");
        var c = new ScenarioGenerator(43).Next("s");
        Assert.Equal(a.ToText(), b.ToText());
        Assert.NotEqual(a.ToText(), c.ToText());
        var gen = new ScenarioGenerator(7);
        for (int i = 0; i < 200; i++)
        {
            var s = gen.Next("s" + i);
            Assert.Equal(ScenarioOpKind.Reserve, s.Ops[0].Kind);
            Assert.Equal(ScenarioOpKind.Check, s.Ops[^1].Kind);
            Assert.True(s.Ops.Count(o => o.Kind == ScenarioOpKind.Fork) <= 1);
            foreach (var op in s.Ops.Skip(1))
            {
                Assert.InRange(op.Page, 0, s.WindowPages - 1);
                Assert.InRange(op.Page + op.Count, 0, op.Kind == ScenarioOpKind.Clear ? 5 + s.WindowPages : s.WindowPages);
                if (op.Kind == ScenarioOpKind.Mremap) Assert.InRange(op.Target + op.Count, 0, s.WindowPages);
            }
            Assert.Equal(s.ToText(), Assert.Single(Scenario.Parse(s.ToText())).ToText());
        }
    }

    private sealed class FakeRunner : IScenarioRunner
    {
        private readonly Func<Scenario, string> _print;
        public FakeRunner(Func<Scenario, string> print) => _print = print;
        public System.Collections.Generic.IReadOnlyList<string> Run(System.Collections.Generic.IReadOnlyList<Scenario> scenarios) =>
            scenarios.Select(_print).ToList();
    }

    [Fact]
    public void ShrinkKeepsOnlyWhatMakesTheDifference()
    {
        // Runner B differs from A exactly when the scenario has both a fork and a write after it.
        var a = new FakeRunner(s => "same");
        var b = new FakeRunner(s =>
        {
            int fork = s.Ops.ToList().FindIndex(o => o.Kind == ScenarioOpKind.Fork);
            return fork >= 0 && s.Ops.Skip(fork).Any(o => o.Kind == ScenarioOpKind.Write) ? "differs" : "same";
        });
        var big = Scenario.Parse("scenario big\nreserve 8\nmap 0 4 rw anon\nwrite 0 1\nclear 4\nfork\nread 1 1\nwrite 2 1\nswitch\ncheck\ncheck\nend\n")[0];
        var small = ScenarioComparer.Shrink(big, a, b);
        Assert.Equal(new[] { ScenarioOpKind.Reserve, ScenarioOpKind.Fork, ScenarioOpKind.Write, ScenarioOpKind.Check },
            small.Ops.Select(o => o.Kind).ToArray());
    }

    [Fact]
    public void SideBySideMarksDifferingLines()
    {
        var text = ScenarioComparer.SideBySide("a\nb\nc\n", "a\nx\nc\n");
        var lines = text.Split('\n');
        Assert.StartsWith("  a", lines[1]);
        Assert.StartsWith("! b", lines[2]);
        Assert.Contains("x", lines[2]);
        Assert.Equal(1, ScenarioComparer.FirstDifference("a\nb\n", "a\nx\n"));
        Assert.Equal(-1, ScenarioComparer.FirstDifference("a\n", "a\n"));
    }
}
