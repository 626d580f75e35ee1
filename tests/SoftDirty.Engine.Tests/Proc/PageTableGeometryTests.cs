using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using SoftDirty.Emulation;
using SoftDirty.Tests.Emulation;
using Xunit;

namespace SoftDirty.Tests.Proc;

/// <summary>
/// Round 27 (pages): kernels whose base page is not 4 KiB. Debian's arm64-16k 7.2, booted under qemu with
/// tests/vm/pagesize.scenario (prints recorded in tests/vm/recorded/pagesize.7.2-arm64-16k.prints), maps a THP per
/// 32 MiB and none in a MADV_HUGEPAGE 2 MiB range even with THP "always": KernelRules probed THP, the huge zero page and
/// PAGEMAP_SCAN's page-table rule in a 2 MiB range (ThpOnFault False there), and the emulator, which models 4 KiB
/// pages, stood for such a kernel as "Host".
/// </summary>
public sealed class PageTableGeometryTests
{
    private const string RecordedId = "7.2-arm64-16k";
    private const int SixteenK = 16384;

    [Theory]
    [InlineData(4096, 2UL << 20)]
    [InlineData(16384, 32UL << 20)]
    [InlineData(65536, 512UL << 20)]
    public void APageTableMapsPageSizeTimesItsEntries(int pageSize, ulong span) => Assert.Equal(span, PageTableGeometry.TableSpan(pageSize));

    [HostFact(HostNeeds.Linux)]
    public void TheHostSpanIsTheKernelsPmdSize()
    {
        const string pmd = "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size";
        ulong expected = File.Exists(pmd) ? ulong.Parse(File.ReadAllText(pmd).Trim(), CultureInfo.InvariantCulture)
            : PageTableGeometry.TableSpan(Environment.SystemPageSize);
        Assert.Equal(expected, PageTableGeometry.HostTableSpan);
    }

    /// <summary>The recorded prints of the 16 KiB kernel, by scenario: the lines between "scenario NAME" and "end".</summary>
    private static Dictionary<string, List<string>> Recorded()
    {
        var root = ScenarioDifferentialTests.RepositoryRoot() ?? throw new InvalidOperationException("no checkout above the test binaries");
        var prints = new Dictionary<string, List<string>>();
        List<string>? current = null;
        foreach (var line in File.ReadLines(Path.Combine(root, "tests/vm/recorded", $"pagesize.{RecordedId}.prints")))
        {
            if (line.StartsWith("scenario ", StringComparison.Ordinal)) prints[line[9..]] = current = new List<string>();
            else if (line == "end") current = null;
            else current?.Add(line);
        }
        return prints;
    }

    private static string Fact(string key)
    {
        var root = ScenarioDifferentialTests.RepositoryRoot()!;
        return File.ReadLines(Path.Combine(root, "tests/vm/recorded", $"pagesize.{RecordedId}.facts"))
            .First(l => l.StartsWith(key + " ", StringComparison.Ordinal))[(key.Length + 1)..];
    }

    [Fact]
    public void TheRecorded16KKernelMapsOneThpPerPageTableAndNoneInA2MiBRange()
    {
        Assert.Equal(SixteenK, int.Parse(Fact("page_size"), CultureInfo.InvariantCulture));
        var prints = Recorded();
        // A MADV_HUGEPAGE range of 4096 pages, its first page written: one THP (PAGEMAP_SCAN's HUGE, 0x40) over as many
        // 16 KiB pages as the rule says a page table maps (2048: 32 MiB).
        var span = prints["pagesize-thp-table-span"];
        var huge = span[1].Split(' ');
        Assert.Equal("0", huge[0]);
        Assert.Equal(PageTableGeometry.TableSpan(SixteenK) / SixteenK, ulong.Parse(huge[1], CultureInfo.InvariantCulture));
        Assert.Equal(0x40UL, Convert.ToUInt64(huge[2], 16) & 0x40);
        // The probe range of the old rule (2 MiB: 128 pages of 16 KiB), THP "always" in the guest: the written page is a
        // base page, not huge. A probe of this size reports no THP on a kernel that makes them.
        Assert.Contains("[always]", Fact("setting thp/enabled"), StringComparison.Ordinal);
        var small = prints["pagesize-thp-2mib-range"];
        Assert.Equal("0 1 a", small[1]);
        Assert.True(PageTableGeometry.TableSpan(SixteenK) > (2UL << 20));
    }

    [Fact]
    public void The16KKernelCountsPagemapAndWrittenRegionsIn16KPages()
    {
        // pagemap: one entry per 16 KiB page (pages 1 and 3 written, then 1 and 2 after clear_refs 4); PAGEMAP_SCAN's
        // regions and WRITTEN (userfaultfd WP_ASYNC) in the same pages: what the engine reads with PageSize 16384.
        var prints = Recorded();
        Assert.Equal(new[] { "check 9 self", "0 0000000000000000", "1 8100000000000000", "2 8100000000000000", "3 8100000000000000" },
            prints["pagesize-entries"].Skip(9).Take(5));
        Assert.Equal(new[] { "written 5 self", "written 8 self", "2 3 2", "5 6 2", "written 9 self" }, prints["pagesize-written"]);
    }

    [Fact]
    public void TheEmulatorRefusesToStandForAKernelOfAnotherPageSize()
    {
        // Before the fix nothing checked: KernelRules.HostProfile on a 16 KiB kernel gave a 4 KiB emulator its rules, and
        // the kernel matrix compared a 16 KiB kernel's prints with it.
        var e = Assert.Throws<EngineException>(() => PageTableGeometry.RequireEmulatedPageSize(SixteenK, "The Host kernel profile"));
        Assert.Equal(EngineError.PlatformNotSupported, e.Error);
        Assert.Contains("16 KiB", e.Message, StringComparison.Ordinal);
        PageTableGeometry.RequireEmulatedPageSize(4096, "The Host kernel profile");
        Assert.Equal((ulong)PageTableGeometry.EmulatedPageSize, EmulatedProcess.PageBytes);
    }

    [Fact]
    public void TheKernelMatrixRefusesA16KKernelsFacts()
    {
        var root = ScenarioDifferentialTests.RepositoryRoot()!;
        var kernel = SoftDirty.TestKit.Scenarios.KernelMatrixKernel.Load(Path.Combine(root, "tests/vm/pagesize.list")).Single(k => k.Id == RecordedId);
        var facts = File.ReadAllLines(Path.Combine(root, "tests/vm/recorded", $"pagesize.{RecordedId}.facts"));
        var e = Assert.Throws<EngineException>(() => kernel.GetProfile(false, facts));
        Assert.Equal(EngineError.PlatformNotSupported, e.Error);
        Assert.Contains(RecordedId, e.Message, StringComparison.Ordinal);
    }
}
