using System.Linq;
using SoftDirty.Emulation;
using SoftDirty.Scenarios;
using Xunit;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// A difference found against Debian's real 6.1 kernel: a MREMAP_FIXED move refused with EFAULT still
/// unmaps its destination there (mremap_to unmapped first); 6.18 checks the source first.
/// </summary>
public class MremapProfileTests
{
    private const string Text = "scenario x\nreserve 10\nmap 6 3 rw shared\nmremap 7 3 2\ncheck\nend\n";

    private static string[] Pages(string profile) =>
        new EmulatedScenarioRunner(KernelProfile.Get(profile)).Run(Scenario.Parse(Text))[0]
            .Split('\n').Where(l => l.Length > 2 && char.IsDigit(l[0])).ToArray();

    [Fact]
    public void On61ARefusedMoveLeavesAHoleAtTheDestination()
    {
        var print = new EmulatedScenarioRunner(KernelProfile.Get(KernelProfile.Linux61)).Run(Scenario.Parse(Text))[0];
        Assert.Contains("op 3 EFAULT", print);
        var pages = Pages(KernelProfile.Linux61);
        Assert.Equal(new[] { "2 0000000000000000", "3 0000000000000000", "4 0000000000000000" }, pages[2..5]);
        Assert.Equal("5 0080000000000000", pages[5]);
    }

    [Fact]
    public void AMoveFromAHoleUnmapsNothingOnEitherProfile()
    {
        // 6.18 may move several VMAs with a same-size move, so it does not refuse the one above: compare a
        // move refused on both, whose old address lies in a hole.
        const string refused = "scenario y\nreserve 6\nmap 0 1 rw anon\nunmap 1 1\nmremap 1 1 4\ncheck\nend\n";
        var print61 = new EmulatedScenarioRunner(KernelProfile.Get(KernelProfile.Linux61)).Run(Scenario.Parse(refused))[0];
        var print618 = new EmulatedScenarioRunner(KernelProfile.Get(KernelProfile.Linux618)).Run(Scenario.Parse(refused))[0];
        Assert.Contains("op 4 EFAULT", print61);
        Assert.Contains("op 4 EFAULT", print618);
        // The old address is in no VMA: 6.1 fails before unmapping anything too.
        Assert.Contains("\n4 0080000000000000", print61);
        Assert.Contains("\n4 0080000000000000", print618);
    }
}
