using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Issue 13, eleventh attack round (what the module hands to others): chart text a process controls that would
/// reorder the chart's lines. The Pester side is tests/Pester/Security.Round11.Output.Tests.ps1.
/// </summary>
public sealed class OutputRound11Tests
{
    [Theory]
    [InlineData("web\u202egpj.exe", "web\uFFFDgpj.exe")]
    [InlineData("a\u2067b\u2066c\u2069", "a\uFFFDb\uFFFDc\uFFFD")]
    [InlineData("\u200e\u200f\u202a\u202b\u202c\u202d", "\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD")]
    [InlineData("=cmd|' /C calc'!A0+@SUM(1)", "=cmd|' /C calc'!A0+@SUM(1)")]
    [InlineData("\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627")]
    public void Chart_BidirectionalControls_AreReplaced_RightToLeftLettersStay(string name, string drawn) =>
        Assert.Equal(drawn, DirtyChart.Escape(name));
}
