using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Scenarios;
using Xunit;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// The emulator against this machine's kernel: random scenarios (ScenarioGenerator) run through
/// tests/native/sdscenario and through <see cref="EmulatedScenarioRunner"/> on the profile matching the
/// kernel (soft-dirty on or off) must print the same, shared anonymous mappings included (both sides
/// place the window 2 MiB-aligned, so fault-around is the same). File mappings are left out of the random
/// scenarios: which neighbours a file read fault maps depends on the filesystem's readahead and folio
/// sizes (ext4 here), which the emulator models only as "the window is in the page cache". The seed is fixed so that every run
/// compares the same scenarios; SOFTDIRTY_SCENARIO_SEED explores others. Needs Linux and a C compiler
/// (build.ps1 Native builds tests/native/bin/sdscenario): elsewhere the test fails by name instead of
/// passing silently.
/// </summary>
public class ScenarioDifferentialTests
{
    private const int Scenarios = 500;
    private const int DefaultSeed = 20261126;

    [Fact]
    public void EmulatorPrintsWhatTheKernelPrints()
    {
        if (!OperatingSystem.IsLinux()) return; // the kernel side exists only on Linux
        var program = FindOrBuildScenarioProgram();
        Assert.True(program != null, "tests/native/sdscenario could not be built: install a C compiler (build.ps1 Native).");
        var native = new NativeScenarioRunner(program);
        var emulated = new EmulatedScenarioRunner(KernelProfile.Get(KernelProfile.DefaultName, noSoftDirty: !KernelProbe.Current.SoftDirty));
        int seed = int.TryParse(Environment.GetEnvironmentVariable("SOFTDIRTY_SCENARIO_SEED"), out var s) ? s : DefaultSeed;
        var generator = new ScenarioGenerator(seed, allowFileMappings: false);
        var scenarios = Enumerable.Range(0, Scenarios).Select(i => generator.Next("d" + i)).ToList();
        var real = native.Run(scenarios);
        var emu = emulated.Run(scenarios);
        for (int i = 0; i < scenarios.Count; i++)
        {
            if (real[i] == emu[i]) continue;
            var shrunk = ScenarioComparer.Shrink(scenarios[i], native, emulated);
            Assert.Fail($"The emulator differs from the kernel in scenario {scenarios[i].Name} of seed {seed} (SOFTDIRTY_SCENARIO_SEED={seed}); shrunk:\n" + shrunk.ToText() + "\n"
                        + ScenarioComparer.SideBySide(native.Run(new[] { shrunk })[0], emulated.Run(new[] { shrunk })[0]));
        }
    }

    [Fact]
    public void RunnerPrintsInSdscenarioFormat()
    {
        var s = Scenario.Parse("scenario f\nreserve 3\nmap 0 2 rw anon\nwrite 0 1\nwrite 2 1\nunmap 1 1\nunmap 0 0\nfork\nswitch\nfork\ncheck\nend\n")[0];
        var print = new EmulatedScenarioRunner(KernelProfile.Get("6.18", noSoftDirty: true)).Run(new[] { s })[0];
        Assert.Equal("scenario f\nop 4 SEGV\nop 6 EINVAL\nop 9 NESTEDFORK\ncheck 10 parent\n0 8000000000000000\n1 0000000000000000\n2 0000000000000000\nend\n", print);
    }

    private static string? FindOrBuildScenarioProgram()
    {
        if (!OperatingSystem.IsLinux()) return null;
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "tests/native/sdscenario.c"))) dir = dir.Parent;
        if (dir == null) return null;
        var built = Path.Combine(dir.FullName, "tests/native/bin/sdscenario");
        if (File.Exists(built)) return built;
        var output = Path.Combine(Path.GetTempPath(), $"sdscenario-{Environment.ProcessId}");
        try
        {
            using var cc = Process.Start(new ProcessStartInfo("cc", $"-O2 -o {output} {Path.Combine(dir.FullName, "tests/native/sdscenario.c")}")
            { RedirectStandardError = true, UseShellExecute = false });
            cc!.WaitForExit();
            return cc.ExitCode == 0 ? output : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }
}
