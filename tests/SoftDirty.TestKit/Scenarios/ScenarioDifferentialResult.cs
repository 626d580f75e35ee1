using System.Collections.Generic;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>What <see cref="ScenarioDifferential.Compare(IScenarioRunner, IScenarioRunner, IReadOnlyList{Scenario}, bool)"/> found.</summary>
public sealed class ScenarioDifferentialResult
{
    internal ScenarioDifferentialResult(int scenarios, int checkpoints, IReadOnlyList<string> differing, ScenarioMismatch? mismatch)
    {
        Scenarios = scenarios;
        Checkpoints = checkpoints;
        DifferingNames = differing;
        FirstMismatch = mismatch;
    }

    /// <summary>How many scenarios both runners ran.</summary>
    public int Scenarios { get; }
    /// <summary>How many checkpoints (check, scan and written prints of the kernel side) were compared.</summary>
    public int Checkpoints { get; }
    /// <summary>How many scenarios printed differently.</summary>
    public int Differing => DifferingNames.Count;
    /// <summary>The names of the scenarios that printed differently.</summary>
    public IReadOnlyList<string> DifferingNames { get; }
    /// <summary>The first differing scenario, shrunk; null when every print matched.</summary>
    public ScenarioMismatch? FirstMismatch { get; }
    /// <summary>Every print matched.</summary>
    public bool Matched => Differing == 0;

    /// <summary>The counts, and the first mismatch when there is one.</summary>
    public override string ToString() => Matched
        ? $"{Scenarios} scenarios, {Checkpoints} checkpoints: all match"
        : $"{Scenarios} scenarios, {Checkpoints} checkpoints: {Differing} differ ({string.Join(", ", DifferingNames)}); first: {FirstMismatch}";
}
