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
/// kernel (soft-dirty on or off) must print the same. File mappings are left out: which neighbours a file
/// read fault maps (fault-around, readahead) depends on where ASLR put the window. Does nothing off Linux
/// or without a C compiler.
/// </summary>
public class ScenarioDifferentialTests
{
    private const int Scenarios = 300;

    [Fact]
    public void EmulatorPrintsWhatTheKernelPrints()
    {
        var program = FindOrBuildScenarioProgram();
        if (program == null) return;
        var native = new NativeScenarioRunner(program);
        var emulated = new EmulatedScenarioRunner(KernelProfile.Get(KernelProfile.DefaultName, noSoftDirty: !KernelProbe.Current.SoftDirty));
        var generator = new ScenarioGenerator(20261126, allowFileMappings: false);
        var scenarios = Enumerable.Range(0, Scenarios).Select(i => generator.Next("d" + i)).ToList();
        var real = native.Run(scenarios);
        var emu = emulated.Run(scenarios);
        for (int i = 0; i < scenarios.Count; i++)
        {
            if (real[i] == emu[i]) continue;
            // Shared memory fault-around also depends on the window's alignment: give the kernel five more tries (ASLR moves the window).
            if (Enumerable.Range(0, 5).Any(_ => native.Run(new[] { scenarios[i] })[0] == emu[i])) continue;
            var shrunk = ScenarioComparer.Shrink(scenarios[i], native, emulated);
            Assert.Fail("The emulator differs from the kernel:\n" + shrunk.ToText() + "\n"
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
