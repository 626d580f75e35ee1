using System;

namespace SoftDirty.TestKit.Scenarios;

/// <summary>One step of a scenario; Page, Count and Target are page numbers in the window.</summary>
public readonly record struct ScenarioOp(ScenarioOpKind Kind, int Page = 0, int Count = 0, int Target = 0,
    Protection Protection = Protection.None, ScenarioMappingKind Mapping = ScenarioMappingKind.Anon)
{
    /// <summary>A protection as the scenario language writes it: none, r, rw or rwx.</summary>
    public static string FormatProtection(Protection p) => p switch
    {
        Protection.None => "none",
        Protection.Read => "r",
        Protection.Read | Protection.Write => "rw",
        Protection.Read | Protection.Write | Protection.Execute => "rwx",
        _ => throw new ArgumentException($"Scenarios use none, r, rw or rwx, not {p}."),
    };

    /// <summary>The protection of none, r, rw or rwx.</summary>
    public static Protection ParseProtection(string s) => s switch
    {
        "none" => Protection.None,
        "r" => Protection.Read,
        "rw" => Protection.Read | Protection.Write,
        "rwx" => Protection.Read | Protection.Write | Protection.Execute,
        _ => throw new FormatException($"unknown protection '{s}' (none, r, rw, rwx)"),
    };

    /// <summary>The op as a line of the scenario language.</summary>
    public override string ToString() => Kind switch
    {
        ScenarioOpKind.Reserve => $"reserve {Count}",
        ScenarioOpKind.Map => $"map {Page} {Count} {FormatProtection(Protection)} {Mapping.ToString().ToLowerInvariant()}",
        ScenarioOpKind.Unmap => $"unmap {Page} {Count}",
        ScenarioOpKind.Mremap => $"mremap {Page} {Count} {Target}",
        ScenarioOpKind.Mprotect => $"mprotect {Page} {Count} {FormatProtection(Protection)}",
        ScenarioOpKind.Read => $"read {Page} {Count}",
        ScenarioOpKind.Write => $"write {Page} {Count}",
        ScenarioOpKind.Clear => $"clear {Count}",
        ScenarioOpKind.DontNeed => $"dontneed {Page} {Count}",
        ScenarioOpKind.Fork => "fork",
        ScenarioOpKind.Switch => "switch",
        ScenarioOpKind.Check => "check",
        ScenarioOpKind.Scan => "scan",
        ScenarioOpKind.UffdWp => $"uffdwp {Page} {Count}",
        ScenarioOpKind.Written => "written",
        ScenarioOpKind.Neighbour => "neighbour",
        ScenarioOpKind.Truth => "truth",
        ScenarioOpKind.Fill => $"fill {Page} {Count} {Target}",
        ScenarioOpKind.Ksm => $"ksm {Page} {Count}",
        ScenarioOpKind.Unmerge => $"unmerge {Page} {Count}",
        ScenarioOpKind.Split => $"split {Page} {Count}",
        ScenarioOpKind.Migrate => $"migrate {Page} {Count} {Target}",
        ScenarioOpKind.PageOut => $"pageout {Page} {Count}",
        ScenarioOpKind.Cold => $"cold {Page} {Count}",
        ScenarioOpKind.Free => $"free {Page} {Count}",
        ScenarioOpKind.SwapOff => "swapoff",
        ScenarioOpKind.SwapOn => "swapon",
        ScenarioOpKind.WipeOnFork => $"wipeonfork {Page} {Count}",
        ScenarioOpKind.KeepOnFork => $"keeponfork {Page} {Count}",
        ScenarioOpKind.DontFork => $"dontfork {Page} {Count}",
        ScenarioOpKind.DoFork => $"dofork {Page} {Count}",
        ScenarioOpKind.Seal => $"seal {Page} {Count}",
        ScenarioOpKind.Truncate => $"truncate {Count}",
        _ => throw new InvalidOperationException(Kind.ToString()),
    };
}
