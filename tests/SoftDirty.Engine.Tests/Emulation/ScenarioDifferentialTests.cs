using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.TestKit.Scenarios;
using Xunit;
using Xunit.Abstractions;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// The emulator against this machine's kernel: random scenarios (ScenarioGenerator) and every hand-written
/// tests/scenarios/*.scenario run through tests/native/sdscenario and through
/// <see cref="EmulatedScenarioRunner"/> on the Host profile (<see cref="KernelRules.HostProfile"/>: the
/// release profile at or below this kernel plus every measured rule: zero page, THP, WRITTEN without a page
/// table, soft-dirty...) must print exactly the same; no difference is allowed. Both sides give the window
/// 2 MiB ranges of its own (no other mapping shares its page tables), so fault-around and page-table
/// existence depend on the scenario alone; the "neighbour" op shares a page table on purpose. Where the
/// kernel has PAGEMAP_SCAN and userfaultfd WP_ASYNC (6.7+) the random scenarios use scan, uffdwp, written
/// and neighbour too. File mappings are left out of the random scenarios: which neighbours a file read
/// fault maps depends on the filesystem's readahead (and, measured on the 6.18 host, a PROT_EXEC file
/// mapping does not fault around at all), which the emulator models only as "the window is in the page
/// cache"; hand-written files read their file pages one by one. The seed is fixed so that every run
/// compares the same scenarios; SOFTDIRTY_SCENARIO_SEED explores others. Needs Linux and a C compiler
/// (build.ps1 Native builds tests/native/bin/sdscenario): elsewhere the test fails by name.
/// </summary>
// Alone, not beside other test classes that measure memory: the scenarios fork and fault many pages.
[Collection(MemoryMeasurement.Name)]
public class ScenarioDifferentialTests
{
    private const int Scenarios = 500;
    private const int DefaultSeed = 20261126;
    private readonly ITestOutputHelper _output;

    public ScenarioDifferentialTests(ITestOutputHelper output) => _output = output;

    [Fact]
    public void EmulatorPrintsWhatTheKernelPrints()
    {
        if (!OperatingSystem.IsLinux()) return; // the kernel side exists only on Linux
        var program = FindOrBuildScenarioProgram();
        Assert.True(program != null, "tests/native/sdscenario could not be built: install a C compiler (build.ps1 Native).");
        var kernel = KernelProbe.Current;
        var profile = KernelRules.HostProfile();
        int seed = int.TryParse(Environment.GetEnvironmentVariable("SOFTDIRTY_SCENARIO_SEED"), out var s) ? s : DefaultSeed;
        bool tracking = kernel.PagemapScan && kernel.UffdWriteProtectAsync;
        var random = ScenarioDifferential.Random(seed, Scenarios, allowFileMappings: false, allowWriteTracking: tracking);
        var folder = ScenarioTempFolder.Probe();
        _output.WriteLine($"scenario file: {folder.Evidence}");
        // Where the temporary folder's file system is not modelled, the scenarios that map the file are left out.
        var handWritten = ScenarioDifferential.Load(Path.Combine(RepositoryRoot()!, "tests/scenarios")).Where(h => folder.FileSystem != null || !h.MapsFile).ToList();
        Assert.NotEmpty(handWritten);
        var native = new NativeScenarioRunner(program!);
        var emulated = new EmulatedScenarioRunner(profile, folder.FileSystem ?? EmulatedFileSystem.Disk);

        var files = ScenarioDifferential.Compare(native, emulated, handWritten);
        _output.WriteLine($"hand-written, kernel {kernel.KernelRelease} vs profile {profile}: {files}");
        Assert.True(files.Matched, $"The emulator ({profile}) differs from the kernel in a hand-written scenario (tests/scenarios): {files.FirstMismatch}");
        Assert.Contains(handWritten, h => h.Ops.Any(o => o.Kind == ScenarioOpKind.Neighbour));

        var result = ScenarioDifferential.Compare(native, emulated, random);
        _output.WriteLine($"random (seed {seed}, write tracking {tracking}), kernel {kernel.KernelRelease} vs profile {profile}: {result}");
        Assert.True(result.Matched, $"The emulator ({profile}) differs from the kernel in {result.Differing} random scenarios of seed {seed} (SOFTDIRTY_SCENARIO_SEED={seed}); first: {result.FirstMismatch}");
        // Every kind of checkpoint was compared, so a runner that stopped printing one would not pass.
        Assert.True(result.Checkpoints > Scenarios, $"only {result.Checkpoints} checkpoints");
        if (tracking) Assert.Contains(random, r => r.Ops.Any(o => o.Kind == ScenarioOpKind.Written));
    }

    /// <summary>
    /// Round 33: tests/scenarios/host (MADV_WIPEONFORK/KEEPONFORK, MADV_DONTFORK/DOFORK, mseal, file truncation), which the
    /// kernel matrix has no recorded prints of, against this machine's kernel.
    /// </summary>
    [Fact]
    public void EmulatorPrintsWhatTheKernelPrintsForForkAdviceSealsAndTruncation()
    {
        if (!OperatingSystem.IsLinux()) return; // the kernel side exists only on Linux
        var program = FindOrBuildScenarioProgram();
        Assert.True(program != null, "tests/native/sdscenario could not be built: install a C compiler (build.ps1 Native).");
        var scenarios = ScenarioDifferential.Load(Path.Combine(RepositoryRoot()!, "tests/scenarios/host"));
        Assert.Contains(scenarios, s => s.Ops.Any(o => o.Kind == ScenarioOpKind.Seal));
        Assert.Contains(scenarios, s => s.Ops.Any(o => o.Kind == ScenarioOpKind.Truncate));
        var folder = ScenarioTempFolder.Probe();
        _output.WriteLine($"scenario file: {folder.Evidence}");
        if (folder.FileSystem == null) scenarios = scenarios.Where(s => !s.MapsFile).ToList();   // not modelled there: left out
        var result = ScenarioDifferential.CompareHost(program!, scenarios);
        _output.WriteLine($"tests/scenarios/host, kernel {KernelProbe.Current.KernelRelease}: {result}");
        Assert.True(result.Matched, $"The emulator differs from the kernel in tests/scenarios/host: {result.FirstMismatch}");
        Assert.True(result.Checkpoints >= scenarios.Count, $"only {result.Checkpoints} checkpoints");
    }

    /// <summary>
    /// The same scenarios as Debian's 6.1 kernel (soft-dirty on, no mseal: ENOSYS on both sides) printed them in the VM of
    /// tests/vm (run.sh, sdscenario alone; recorded in tests/vm/recorded/fork-seal-truncate.6.1.prints), against the 6.1
    /// profile: the soft-dirty bits of wiped, left-out and truncated pages. The guest's /tmp, where sdscenario made its file,
    /// is tmpfs: a fault there maps around only pages already cached (round 34; on the Disk model the four truncations that
    /// grow the file again differ).
    /// </summary>
    [Fact]
    public void EmulatorPrintsWhatDebian61PrintedForForkAdviceAndTruncationWithSoftDirty()
    {
        var root = RepositoryRoot()!;
        var scenarios = ScenarioDifferential.Load(Path.Combine(root, "tests/scenarios/host"));
        var kernel = RecordedScenarioRunner.FromOutput("Debian 6.1.0-57", File.ReadAllText(Path.Combine(root, "tests/vm/recorded/fork-seal-truncate.6.1.prints")));
        var profile = KernelProfile.Get(KernelProfile.Linux61).WithThpSettings(TransparentHugePageMode.Always);
        var result = ScenarioDifferential.Compare(kernel, new EmulatedScenarioRunner(profile, EmulatedFileSystem.Tmpfs), scenarios, shrink: false);
        Assert.True(result.Matched, $"The emulator ({profile}) differs from Debian's 6.1 in tests/scenarios/host: {result.FirstMismatch}");
        var onDisk = ScenarioDifferential.Compare(kernel, new EmulatedScenarioRunner(profile, EmulatedFileSystem.Disk), scenarios, shrink: false);
        Assert.False(onDisk.Matched, "the file system made no difference: the recorded truncations no longer test the rule");
        Assert.Contains("op 6 ENOSYS", kernel.Run(scenarios.Where(s => s.Name == "r33-seal-munmap-mprotect").ToList())[0]);
        Assert.Contains(kernel.Run(scenarios), print => print.Contains(" 8180000000000000\n", StringComparison.Ordinal));   // soft-dirty bits compared
    }

    /// <summary>
    /// Round 34: a read fault on a file maps around the whole 64 KiB window on a disk file system (readahead cached it) and
    /// only the pages already cached on tmpfs (a write cached page 3 here).
    /// </summary>
    [Fact]
    public void FaultAroundMapsOnlyCachedPagesOfAFileOnTmpfs()
    {
        var s = Scenario.Parse("scenario t\nreserve 16\nmap 0 16 rw file\nwrite 3 1\nread 8 1\ncheck\nend\n");
        int[] Present(EmulatedFileSystem fs) =>
            new EmulatedScenarioRunner(KernelProfile.Get(KernelProfile.Linux618, noSoftDirty: true), fs).Run(s)[0].Split('\n')
                .Select(l => l.Split(' ')).Where(f => f.Length == 2 && int.TryParse(f[0], out _))
                .Where(f => (Convert.ToUInt64(f[1], 16) >> 63) != 0).Select(f => int.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(Enumerable.Range(0, 16), Present(EmulatedFileSystem.Disk));
        Assert.Equal(new[] { 3, 8 }, Present(EmulatedFileSystem.Tmpfs));
    }

    [Fact]
    public void WriteTrackingOpsPrintTheirErrnoOn61AndRegionsOn618()
    {
        var s = Scenario.Parse("scenario w\nreserve 4\nmap 0 2 rw anon\nscan\nuffdwp 0 4\nwrite 1 1\nwritten\nend\n")[0];
        var old = new EmulatedScenarioRunner(KernelProfile.Get("6.1")).Run(new[] { s })[0];
        Assert.Equal("scenario w\nop 3 ENOTTY\nop 4 EINVAL\nop 6 ENOTTY\nend\n", old);
        var now = new EmulatedScenarioRunner(KernelProfile.Get("6.18", noSoftDirty: true)).Run(new[] { s })[0];
        // Never touched, no page table: the scan gives the VMA categories only (none); uffdwp's markers make a table.
        Assert.Equal("scenario w\nscan 3 self\n0 4 0\nwritten 6 self\n1 2 2\nend\n", now);
    }

    [Fact]
    public void RunnerPrintsInSdscenarioFormat()
    {
        var s = Scenario.Parse("scenario f\nreserve 3\nmap 0 2 rw anon\nwrite 0 1\nwrite 2 1\nunmap 1 1\nunmap 0 0\nfork\nswitch\nfork\ncheck\nend\n")[0];
        var print = new EmulatedScenarioRunner(KernelProfile.Get("6.18", noSoftDirty: true)).Run(new[] { s })[0];
        Assert.Equal("scenario f\nop 4 SEGV\nop 6 EINVAL\nop 9 NESTEDFORK\ncheck 10 parent\n0 8000000000000000\n1 0000000000000000\n2 0000000000000000\nend\n", print);
    }

    /// <summary>The checkout the tests run from (the folder holding tests/native/sdscenario.c).</summary>
    internal static string? RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "tests/native/sdscenario.c"))) dir = dir.Parent;
        return dir?.FullName;
    }

    internal static string? FindOrBuildScenarioProgram()
    {
        if (!OperatingSystem.IsLinux()) return null;
        var root = RepositoryRoot();
        if (root == null) return null;
        var dir = new DirectoryInfo(root);
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
