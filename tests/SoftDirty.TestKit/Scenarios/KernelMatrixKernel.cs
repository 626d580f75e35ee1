using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using SoftDirty.Emulation;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// One kernel of the kernel matrix (a line of tests/vm/kernels.list: id, Debian architecture, suite,
/// emulator profile, pinned packages), with what the matrix does for it on the host: the scenarios it
/// runs, the comparison of its recorded prints with the emulator, and the failure message.
/// </summary>
public sealed class KernelMatrixKernel
{
    private KernelMatrixKernel(string id, string architecture, string suite, string profile, IReadOnlyList<string> packages)
    {
        Id = id;
        Architecture = architecture;
        Suite = suite;
        Profile = profile;
        Packages = packages;
    }

    /// <summary>The kernel's name in kernels.list, results and messages ("7.2", "7.2-arm64").</summary>
    public string Id { get; }
    /// <summary>The Debian architecture: amd64 or arm64.</summary>
    public string Architecture { get; }
    /// <summary>The Debian suite its packages come from.</summary>
    public string Suite { get; }
    /// <summary>The <see cref="KernelProfile"/> name that must print what this kernel prints.</summary>
    public string Profile { get; }
    /// <summary>The pinned packages, "name=version".</summary>
    public IReadOnlyList<string> Packages { get; }

    /// <summary>The kernels of a kernels.list file, in its order (comments and blank lines skipped).</summary>
    public static IReadOnlyList<KernelMatrixKernel> Load(string path) =>
        File.ReadAllLines(path).Select((line, i) => (line: StripComment(line), number: i + 1))
            .Where(l => l.line.Length > 0)
            .Select(l =>
            {
                try { return Parse(l.line); }
                catch (FormatException e) { throw new FormatException($"{path}:{l.number}: {e.Message}", e); }
            }).ToList();

    /// <summary>One line: "id arch suite profile package=version...".</summary>
    public static KernelMatrixKernel Parse(string line)
    {
        var f = StripComment(line ?? throw new ArgumentNullException(nameof(line)))
            .Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (f.Length < 5) throw new FormatException($"'{line}': expected 'id arch suite profile package=version...'");
        if (f[1] is not ("amd64" or "arm64")) throw new FormatException($"'{f[1]}' is not a supported architecture (amd64, arm64)");
        if (!KernelProfile.Names.Contains(f[3], StringComparer.Ordinal))
            throw new FormatException($"'{f[3]}' is no kernel profile ({string.Join(", ", KernelProfile.Names)})");
        var packages = f.Skip(4).ToList();
        var unpinned = packages.FirstOrDefault(p => p.IndexOf('=') <= 0 || p.EndsWith('='));
        if (unpinned != null) throw new FormatException($"package '{unpinned}' is not pinned (name=version)");
        return new KernelMatrixKernel(f[0], f[1], f[2], f[3], packages);
    }

    /// <summary>The emulator profile, without soft-dirty when the kernel's config lacks CONFIG_MEM_SOFT_DIRTY.</summary>
    public KernelProfile GetProfile(bool softDirty) => KernelProfile.Get(Profile, noSoftDirty: !softDirty);

    /// <summary>
    /// The profile with the THP settings the guest reported (lines of matrix.sh's OUTPUT.facts: "setting thp/enabled
    /// always [madvise] never", "setting thp/use_zero_page 1"); a setting it did not report keeps the profile's. A guest
    /// under 512 MiB boots with THP off whatever its config says, so the mode is read back, never assumed. A kernel
    /// whose base page is not the emulator's 4 KiB ("page_size 16384") has no profile: PlatformNotSupported, the size
    /// named (its page numbers, THP and page-table spans are not the emulator's, so no print of it could match).
    /// </summary>
    public KernelProfile GetProfile(bool softDirty, IEnumerable<string>? factLines)
    {
        var profile = GetProfile(softDirty);
        if (factLines is null) return profile;
        TransparentHugePageMode? mode = null;
        bool? hugeZero = null;
        foreach (var line in factLines)
        {
            var p = line.Split(' ', 2, StringSplitOptions.TrimEntries);
            if (p.Length == 2 && p[0] == "page_size")
                PageTableGeometry.RequireEmulatedPageSize(int.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture), $"Kernel {Id}");
            var f = line.Split(' ', 3, StringSplitOptions.TrimEntries);
            if (f.Length < 3 || f[0] != "setting") continue;
            if (f[1] == "thp/enabled")
            {
                int open = f[2].IndexOf('['), close = f[2].IndexOf(']');
                if (open >= 0 && close > open)
                    mode = Enum.Parse<TransparentHugePageMode>(f[2][(open + 1)..close], ignoreCase: true);
            }
            else if (f[1] == "thp/use_zero_page") hugeZero = f[2] == "1";
        }
        return profile.WithThpSettings(mode, hugeZero);
    }

    /// <summary>
    /// What this kernel runs: every hand-written scenario of <paramref name="scenarioDirectory"/>, then
    /// <paramref name="count"/> random ones of <paramref name="seed"/> (anonymous mappings only, as the
    /// prints were recorded; write tracking where the profile has PAGEMAP_SCAN and userfaultfd WP_ASYNC), and there
    /// <paramref name="workloads"/> workloads of <see cref="TrackingComparison"/> of the same seed.
    /// </summary>
    public List<Scenario> Scenarios(string scenarioDirectory, int seed, int count, int workloads = 0)
    {
        var scenarios = ScenarioDifferential.Load(scenarioDirectory);
        scenarios.AddRange(ScenarioDifferential.Random(seed, count, allowFileMappings: false, allowWriteTracking: HasWriteTracking));
        if (HasWriteTracking) scenarios.AddRange(TrackingComparison.Workloads(seed, workloads));
        return scenarios;
    }

    /// <summary>The profile has PAGEMAP_SCAN and userfaultfd WP_ASYNC.</summary>
    public bool HasWriteTracking => KernelProfile.Get(Profile) is { HasPagemapScan: true, HasUffdWriteProtectAsync: true };

    /// <summary>The kernel's recorded prints against the emulator on this kernel's profile; never shrinks (the kernel cannot rerun).</summary>
    public ScenarioDifferentialResult Compare(RecordedScenarioRunner kernel, bool softDirty, IReadOnlyList<Scenario> scenarios) =>
        Compare(kernel, GetProfile(softDirty), scenarios);

    /// <summary>The kernel's recorded prints against the emulator on <paramref name="profile"/> (this kernel's, with the guest's settings).</summary>
    public static ScenarioDifferentialResult Compare(RecordedScenarioRunner kernel, KernelProfile profile, IReadOnlyList<Scenario> scenarios) =>
        ScenarioDifferential.Compare(kernel, new EmulatedScenarioRunner(profile), scenarios, shrink: false);

    /// <summary>
    /// What a failed comparison says: the kernel (id, release, architecture), the profile, the seed, how
    /// many differ, the first differing scenario as it ran (unshrunk) and both prints side by side.
    /// </summary>
    public string DescribeResult(ScenarioDifferentialResult result, string release, bool softDirty, int seed)
    {
        ArgumentNullException.ThrowIfNull(result);
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture,
            $"kernel {Id} ({release}, {Architecture}, {Suite}) against emulator profile {GetProfile(softDirty)}, seed {seed} (SOFTDIRTY_SCENARIO_SEED={seed}): ");
        sb.Append(CultureInfo.InvariantCulture, $"{result.Differing} of {result.Scenarios} scenarios differ, {result.Checkpoints} checkpoints");
        if (result.FirstMismatch is { } m)
        {
            sb.Append(CultureInfo.InvariantCulture, $" ({string.Join(", ", result.DifferingNames)}).\nFirst, as it ran (unshrunk: the kernel's prints were recorded in its VM):\n");
            sb.Append(m.Original.ToText()).Append('\n').Append(m.SideBySide);
        }
        return sb.ToString();
    }

    /// <summary>The id, architecture, suite and profile.</summary>
    public override string ToString() => $"{Id} ({Architecture}, {Suite}, profile {Profile})";

    private static string StripComment(string line)
    {
        int hash = line.IndexOf('#');
        return (hash >= 0 ? line[..hash] : line).Trim();
    }
}
