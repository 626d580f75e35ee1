using SoftDirty.Emulation;
using SoftDirty.Workflows;
using Xunit;

namespace SoftDirty.Tests.Proc;

/// <summary>
/// Round 29 (la57): the PAGEMAP_SCAN probe of Get-SoftDirtySupport against the emulated kernels of the matrix. Debian's 6.12
/// has PAGEMAP_SCAN but no guard regions (PAGE_IS_GUARD, 6.15): a probe that asked for every category met EINVAL there and
/// said the kernel had no PAGEMAP_SCAN, which turned WriteProtect tracking off with it (seen in the 6.12 guest of
/// tests/vm/la57-cmdlets.sh); it now asks again without the guard bit and names the categories the kernel takes.
/// </summary>
public sealed class KernelProbeTests
{
    private static (bool Scan, PageCategory Categories, string? Reason) Probe(string kernel)
    {
        var e = new EmulatedProcess("r29probe", KernelProfile.Get(kernel));
        var page = e.Mmap(null, 4096, Protection.Read | Protection.Write, MmapFlags.None);
        using var source = new EmulatedTarget(e);
        return KernelProbe.ProbePagemapScan(source, page.Start, 4096);
    }

    [Fact]
    public void AKernelWithoutGuardRegions_HasPagemapScanWithoutTheGuardCategory()
    {
        var (scan, categories, reason) = Probe(KernelProfile.Linux612);
        Assert.True(scan, reason);
        Assert.Null(reason);
        Assert.Equal(PagemapScanRequest.CategoriesBeforeGuard, categories);
        Assert.Equal(categories, new EmulatedProcess("r29features", KernelProfile.Get(KernelProfile.Linux612)).Features.PagemapScanCategories);
    }

    [Fact]
    public void AKernelWithGuardRegions_TakesEveryCategory()
    {
        var (scan, categories, reason) = Probe(KernelProfile.Linux73);
        Assert.True(scan, reason);
        Assert.Equal(PagemapScanRequest.ValidCategories, categories);
    }

    [Fact]
    public void AKernelBeforePagemapScan_HasNoneAndSaysWhy()
    {
        var (scan, _, reason) = Probe(KernelProfile.Linux61);
        Assert.False(scan);
        Assert.Contains("PAGEMAP_SCAN", reason, System.StringComparison.Ordinal);
    }
}
