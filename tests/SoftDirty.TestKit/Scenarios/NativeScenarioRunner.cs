using System;
using System.Collections.Generic;
using System.Text;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>Runs scenarios on real memory through the native sdscenario program.</summary>
public sealed class NativeScenarioRunner : IScenarioRunner
{
    private readonly string _program;

    /// <summary>Runs the sdscenario program at <paramref name="program"/> (tests/native/bin/sdscenario).</summary>
    public NativeScenarioRunner(string program) => _program = program;

    /// <inheritdoc/>
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
