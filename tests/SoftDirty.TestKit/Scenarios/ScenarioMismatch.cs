namespace SoftDirty.TestKit.Scenarios;

/// <summary>The first scenario two runners disagree on, shrunk, with both prints of the shrunk one.</summary>
public sealed class ScenarioMismatch
{
    internal ScenarioMismatch(Scenario original, Scenario shrunk, string kernelPrint, string emulatorPrint, string? rules = null)
    {
        Rules = rules ?? string.Empty;
        Original = original;
        Shrunk = shrunk;
        KernelPrint = kernelPrint;
        EmulatorPrint = emulatorPrint;
    }

    /// <summary>The scenario as it ran.</summary>
    public Scenario Original { get; }
    /// <summary>A shortest scenario (no single op can go) that still prints differently.</summary>
    public Scenario Shrunk { get; }
    /// <summary>The kernel's print of <see cref="Shrunk"/>.</summary>
    public string KernelPrint { get; }
    /// <summary>The emulator's print of <see cref="Shrunk"/>.</summary>
    public string EmulatorPrint { get; }
    /// <summary>The emulator profile's rules (for a host profile, as measured), printed beside the scenario.</summary>
    public string Rules { get; }
    /// <summary>The two prints of <see cref="Shrunk"/> side by side, differing lines marked "!".</summary>
    public string SideBySide => ScenarioComparer.SideBySide(KernelPrint, EmulatorPrint);

    /// <summary>The shrunk scenario, both prints side by side and the emulator's rules.</summary>
    public override string ToString() =>
        $"scenario {Original.Name} differs; shrunk:\n{Shrunk.ToText()}\n{SideBySide}" + (Rules.Length == 0 ? "" : $"\nemulator rules:\n{Rules}");
}
