using System.Collections.Generic;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>Runs scenarios and prints what they show, in sdscenario's output format.</summary>
public interface IScenarioRunner
{
    /// <summary>The print of each scenario, in order: "scenario", op failures, checks, "end".</summary>
    IReadOnlyList<string> Run(IReadOnlyList<Scenario> scenarios);
}
