using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using SoftDirty.Emulation;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// Runs the same scenarios through a kernel runner (<see cref="NativeScenarioRunner"/>) and an emulator
/// runner and compares the prints. Made to be called from PowerShell as well, e.g. in a VM:
/// <c>[SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Compare('/path/sdscenario', '6.1', $true,
/// [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Random(1, 500, $false, $false))</c>.
/// </summary>
public static class ScenarioDifferential
{
    /// <summary>The extension of hand-written scenario files.</summary>
    public const string FileExtension = ".scenario";

    /// <summary>Runs both, compares print by print; shrinks the first differing scenario when <paramref name="shrink"/>.</summary>
    public static ScenarioDifferentialResult Compare(IScenarioRunner kernel, IScenarioRunner emulator, IReadOnlyList<Scenario> scenarios, bool shrink = true)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(emulator);
        ArgumentNullException.ThrowIfNull(scenarios);
        var real = kernel.Run(scenarios);
        var emulated = emulator.Run(scenarios);
        if (real.Count != scenarios.Count || emulated.Count != scenarios.Count)
            throw new InvalidOperationException($"{scenarios.Count} scenarios but {real.Count} kernel and {emulated.Count} emulator prints.");
        int checkpoints = 0;
        var differing = new List<string>();
        ScenarioMismatch? first = null;
        for (int i = 0; i < scenarios.Count; i++)
        {
            checkpoints += CountCheckpoints(real[i]);
            if (real[i] == emulated[i]) continue;
            differing.Add(scenarios[i].Name);
            if (first != null) continue;
            var small = shrink ? ScenarioComparer.Shrink(scenarios[i], kernel, emulator) : scenarios[i];
            first = new ScenarioMismatch(scenarios[i], small, kernel.Run(new[] { small })[0], emulator.Run(new[] { small })[0],
                emulator is EmulatedScenarioRunner e ? $"{e.Profile.DescribeRules()}\n  scenario file on {e.FileSystem}" : null);
        }
        return new ScenarioDifferentialResult(scenarios.Count, checkpoints, differing, first);
    }

    /// <summary>The kernel through the sdscenario program at <paramref name="program"/> against the emulator on profile <paramref name="profile"/>.</summary>
    public static ScenarioDifferentialResult Compare(string program, string profile, bool softDirty, IReadOnlyList<Scenario> scenarios) =>
        Compare(new NativeScenarioRunner(program),
            new EmulatedScenarioRunner(KernelProfile.Get(profile, noSoftDirty: !softDirty)), scenarios);

    /// <summary>
    /// The running kernel through sdscenario against the emulator on its host profile (release profile
    /// plus every measured rule, <see cref="KernelRules.HostProfile"/>), the scenario file on the file system of
    /// sdscenario's temporary folder (<see cref="ScenarioTempFolder.Probe()"/>): no difference is allowed. A scenario
    /// that maps the file where that file system is not modelled is InvalidOperation (leave it out: <see cref="Scenario.MapsFile"/>).
    /// </summary>
    public static ScenarioDifferentialResult CompareHost(string program, IReadOnlyList<Scenario> scenarios)
    {
        ArgumentNullException.ThrowIfNull(scenarios);
        var folder = ScenarioTempFolder.Probe();
        if (folder.FileSystem is null && scenarios.Any(s => s.MapsFile))
            throw new InvalidOperationException($"The scenario file's file system is not modelled ({folder.Evidence}); leave out the scenarios that map it.");
        return Compare(new NativeScenarioRunner(program),
            new EmulatedScenarioRunner(KernelRules.HostProfile(), folder.FileSystem ?? EmulatedFileSystem.Disk), scenarios);
    }

    /// <summary>
    /// <paramref name="count"/> random scenarios of <paramref name="seed"/>, named "d0", "d1", ...;
    /// write tracking (scan, uffdwp, written) only when asked: a kernel before 6.7 has none of it.
    /// </summary>
    public static List<Scenario> Random(int seed, int count, bool allowFileMappings, bool allowWriteTracking) =>
        Random(seed, count, allowFileMappings, allowWriteTracking, allowForkAdvice: false);

    /// <summary>As <see cref="Random(int, int, bool, bool)"/>, with fork advice, seals and (with file mappings) truncation when asked.</summary>
    public static List<Scenario> Random(int seed, int count, bool allowFileMappings, bool allowWriteTracking, bool allowForkAdvice)
    {
        var generator = new ScenarioGenerator(seed, allowFileMappings, allowWriteTracking, allowForkAdvice);
        return Enumerable.Range(0, count).Select(i => generator.Next("d" + i)).ToList();
    }

    /// <summary>Every scenario of the *.scenario files of a folder, files in name order.</summary>
    public static List<Scenario> Load(string directory) =>
        Directory.GetFiles(directory, "*" + FileExtension).OrderBy(f => f, StringComparer.Ordinal)
            .SelectMany(f =>
            {
                try { return Scenario.Parse(File.ReadAllText(f)); }
                catch (FormatException e) { throw new FormatException($"{f}: {e.Message}", e); }
            }).ToList();

    /// <summary>The checkpoints of a print: its check, scan and written lines.</summary>
    public static int CountCheckpoints(string print)
    {
        int n = 0;
        foreach (var line in print.Split('\n'))
            if (line.StartsWith("check ", StringComparison.Ordinal) || line.StartsWith("scan ", StringComparison.Ordinal)
                || line.StartsWith("written ", StringComparison.Ordinal)) n++;
        return n;
    }
}
