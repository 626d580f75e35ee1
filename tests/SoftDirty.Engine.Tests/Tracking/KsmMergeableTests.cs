using SoftDirty;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Round 24: which /proc/PID/ksm_stat says KSM touched the process, so that every mapping of it is compared by content
/// (a merge drops the soft-dirty bit of the pages it maps to a KSM page: KsmMergeable).
/// </summary>
public class KsmMergeableTests
{
    [Theory]
    [InlineData("ksm_rmap_items 0", false)]                       // 6.1: one line
    [InlineData("ksm_rmap_items 2", true)]
    [InlineData("ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: no", false)]   // 6.18
    [InlineData("ksm_rmap_items 0\nksm_zero_pages 0\nksm_merging_pages 0\nksm_process_profit 0\nksm_merge_any: no\nksm_mergeable: yes", true)]   // a mergeable VMA not scanned yet
    [InlineData("ksm_rmap_items 0\nksm_merging_pages 4\nksm_process_profit -2000", true)]
    [InlineData("ksm_rmap_items 0\nksm_process_profit -2000\nksm_merge_any: yes", true)]   // PR_SET_MEMORY_MERGE
    [InlineData("", false)]
    public void KsmStatTellsWhetherKsmTouchedTheProcess(string ksmStat, bool touched) =>
        Assert.Equal(touched, KsmMergeable.TouchedBy(ksmStat.Split('\n')));
}
