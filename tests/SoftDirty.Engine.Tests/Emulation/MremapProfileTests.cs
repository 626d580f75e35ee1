using System.Linq;
using SoftDirty.Emulation;
using SoftDirty.TestKit.Scenarios;
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

/// <summary>mprotect merges: the merged VMA takes the changed VMA's VM_SOFTDIRTY (6.1, 6.18); 6.19 keeps either.</summary>
public class MprotectMergeProfileTests
{
    private const string Text = "scenario m\nreserve 5\nclear 4\nmap 2 1 rwx anon\nmprotect 1 1 rwx\ncheck\nend\n";

    [Theory]
    [InlineData(KernelProfile.Linux61, "0000000000000000")]
    [InlineData(KernelProfile.Linux618, "0000000000000000")]
    [InlineData(KernelProfile.Linux619, "0080000000000000")]
    public void TheMergedVmaTakesTheChangedVmasSoftDirty(string profile, string page2)
    {
        var print = new EmulatedScenarioRunner(KernelProfile.Get(profile)).Run(Scenario.Parse(Text))[0];
        Assert.Contains("\n2 " + page2 + "\n", print);
        Assert.Contains("\n1 " + page2 + "\n", print);
    }
}
