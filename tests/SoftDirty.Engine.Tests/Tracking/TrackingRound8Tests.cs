using System;
using System.IO;
using System.Linq;
using SoftDirty.Injection;
using SoftDirty.Tests.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Issue 13, round 8, on tracking a real process that changes under it: pages written and then made read-only or
/// PROT_NONE (WriteProtect watches writable mappings only, so those are compared by content), and the io_uring
/// registered buffers read from fdinfo (memory the kernel writes without the page table).
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class TrackingRound8Tests : IDisposable
{
    private const ulong Page = 4096;
    private readonly string _stateDir = Path.Combine(Path.GetTempPath(), "sd-r8t-" + Guid.NewGuid().ToString("N"));
    private readonly string? _oldStateDir = Environment.GetEnvironmentVariable(WriteTrackingStore.FolderVariable);

    public TrackingRound8Tests() => Environment.SetEnvironmentVariable(WriteTrackingStore.FolderVariable, _stateDir);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(WriteTrackingStore.FolderVariable, _oldStateDir);
        if (Directory.Exists(_stateDir)) Directory.Delete(_stateDir, true);
    }

    [Theory]
    [InlineData("    0: 0x7f9d3753e000/16384", 0x7f9d3753e000UL, 0x7f9d37542000UL)]
    [InlineData("   12: 0x1001/10", 0x1000UL, 0x2000UL)]          // unaligned: the pages it touches
    [InlineData("1: 0x1ff0/32", 0x1000UL, 0x3000UL)]              // across a page boundary
    public void TryParseBuffer_FdinfoLine_PagesItCovers(string line, ulong start, ulong end)
    {
        Assert.True(PinnedBuffers.TryParseBuffer(line, Page, out var range));
        Assert.Equal(new AddressRange(start, end), range);
    }

    [Theory]
    [InlineData("    0: 0x1000/0")]                    // empty
    [InlineData("    0: 0xfffffffffffff000/8192")]     // wraps past the top
    [InlineData("    0: 1000/4096")]                   // no 0x
    [InlineData("    0: 0x1000")]                      // no length
    [InlineData("UserFiles:\t0")]
    [InlineData("    0: 0xzz/4096")]
    [InlineData("")]
    public void TryParseBuffer_HostileLine_Refused(string line) => Assert.False(PinnedBuffers.TryParseBuffer(line, Page, out _));

    [HostFact(HostNeeds.Linux)]
    public void Read_ProcessWithoutIoUring_Empty()
    {
        using var t = new WtTarget();
        Assert.Empty(PinnedBuffers.Read(t.Pid, t.PageSize));
        Assert.Empty(PinnedBuffers.Read(int.MaxValue, t.PageSize)); // no such process: nothing, no exception
    }

    [HostTheory(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection)]
    [InlineData(1)] // PROT_READ
    [InlineData(0)] // PROT_NONE
    public void WriteProtect_PagesWrittenThenMadeNotWritable_InTheCollectionOfTheWrite(int prot)
    {
        using var t = new WtTarget();
        ulong region = t.Map(16);
        t.Send($"write {region:x} 0 16");
        using var src = ProcPageSource.Open(t.Pid);
        using var tracker = DirtyTracker.Create(src, TrackingMethod.WriteProtect);
        tracker.Reset();
        t.Send($"write {region:x} 2 3");
        t.Send($"mprotect {region:x} 16 {prot}");
        var set = tracker.Collect();
        ulong ps = (ulong)t.PageSize;
        foreach (ulong p in new ulong[] { 2, 3, 4 })
            Assert.Contains(set.Ranges, r => r.Start <= region + p * ps && region + (p + 1) * ps <= r.End);
        // Made writable again, the region is the page tracker's once more: written pages count, nothing is lost.
        t.Send($"mprotect {region:x} 16 3");
        tracker.Collect();
        t.Send($"write {region:x} 9 1");
        var again = tracker.Collect();
        Assert.Contains(again.Ranges, r => r.Start <= region + 9 * ps && region + 10 * ps <= r.End);
    }
}
