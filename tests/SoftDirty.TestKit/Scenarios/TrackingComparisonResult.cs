namespace SoftDirty.TestKit.Scenarios;

/// <summary>
/// What <see cref="TrackingComparison.Count"/> found over a set of workloads: the pages really written,
/// and per method the pages it reported, its false positives (reported, not written) and false negatives
/// (written, not reported; for userfaultfd only in registered VMAs, <see cref="UnregisteredWritten"/>
/// counts the written pages outside them).
/// </summary>
public sealed record TrackingComparisonResult(long Workloads, long Written,
    long SoftDirtyReported, long SoftDirtyFalsePositives, long SoftDirtyFalseNegatives,
    long WriteProtectReported, long WriteProtectFalsePositives, long WriteProtectFalseNegatives, long UnregisteredWritten)
{
    /// <summary>The counts in one sentence.</summary>
    public override string ToString() =>
        $"{Workloads} workloads, {Written} pages written; soft-dirty reported {SoftDirtyReported} ({SoftDirtyFalsePositives} false positives, {SoftDirtyFalseNegatives} false negatives); " +
        $"write-protect reported {WriteProtectReported} ({WriteProtectFalsePositives} false positives, {WriteProtectFalseNegatives} false negatives in registered VMAs; {UnregisteredWritten} written outside them)";
}
