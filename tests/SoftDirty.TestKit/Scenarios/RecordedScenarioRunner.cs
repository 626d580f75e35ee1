using System;
using System.Collections.Generic;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// The prints a kernel made earlier, somewhere this process cannot reach (a kernel-matrix guest booted
/// with sdscenario alone: tests/vm/matrix.sh), played back by scenario name. It cannot run anything new,
/// so a difference found against it is reported unshrunk (<see cref="ScenarioComparer.Shrink"/> needs a
/// kernel that reruns).
/// </summary>
public sealed class RecordedScenarioRunner : IScenarioRunner
{
    private readonly Dictionary<string, string> _prints = new(StringComparer.Ordinal);

    /// <summary>Prints in sdscenario's format, one a scenario ("scenario &lt;name&gt;" ... "end").</summary>
    public RecordedScenarioRunner(string kernel, IEnumerable<string> prints)
    {
        ArgumentNullException.ThrowIfNull(prints);
        Kernel = kernel ?? throw new ArgumentNullException(nameof(kernel));
        foreach (var print in prints)
        {
            var name = NameOf(print);
            if (!_prints.TryAdd(name, print))
                throw new FormatException($"kernel {kernel} printed scenario '{name}' twice: its prints cannot be told apart.");
        }
    }

    /// <summary>The kernel the prints came from, as the failure messages name it.</summary>
    public string Kernel { get; }

    /// <summary>How many scenario prints were recorded.</summary>
    public int Count => _prints.Count;

    /// <summary>The prints of sdscenario's whole output (what it wrote to stdout for many scenarios).</summary>
    public static RecordedScenarioRunner FromOutput(string kernel, string output) =>
        new(kernel, NativeScenarioRunner.SplitPrints(output ?? throw new ArgumentNullException(nameof(output))));

    /// <summary>The recorded print of each scenario; a scenario the kernel did not print is an error (it did not run there).</summary>
    public IReadOnlyList<string> Run(IReadOnlyList<Scenario> scenarios)
    {
        ArgumentNullException.ThrowIfNull(scenarios);
        var result = new List<string>(scenarios.Count);
        foreach (var s in scenarios)
        {
            if (!_prints.TryGetValue(s.Name, out var print))
                throw new InvalidOperationException(
                    $"kernel {Kernel} has no recorded print of scenario '{s.Name}': recorded prints cannot run a new scenario.");
            result.Add(print);
        }
        return result;
    }

    private static string NameOf(string print)
    {
        const string Prefix = "scenario ";
        int eol = print.IndexOf('\n');
        var first = eol < 0 ? print : print[..eol];
        if (!first.StartsWith(Prefix, StringComparison.Ordinal))
            throw new FormatException($"a scenario print starts with '{Prefix}<name>', not '{first}'.");
        return first[Prefix.Length..];
    }
}
