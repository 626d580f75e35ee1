using System.Collections.Generic;
using System.Linq;
using SoftDirty;
using SoftDirty.Tests.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Images;

/// <summary>
/// Memory a userfaultfd monitor answers for: a page the process drops in a range registered in MISSING mode,
/// between the pagemap walk and the read, would make process_vm_readv wait for a monitor that may never answer
/// (Ctrl+C cannot end that wait). Such ranges are read through /proc/PID/mem, which fails at once.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class UserfaultfdReadTests
{
    [HostFact(HostNeeds.Linux)]
    public void PresentPagesOfAMissingModeRegistration_AreReadThroughProcMem_AndOthersAreNot()
    {
        using var t = new WtTarget();
        ulong watched = t.Map(16), plain = t.Map(16);
        t.Send($"write {watched:x} 0 16");
        t.Send($"write {plain:x} 0 16");
        t.Send($"missinguffd {watched:x} 16");
        using var src = ProcPageSource.Open(t.Pid);
        var spans = PageWalk.DataSpans(src.ReadMappings(false), null);
        var slow = new List<AddressRange>();
        var present = PageWalk.PresentRegions(src, spans, slow).ToList();
        ulong ps = (ulong)t.PageSize;
        for (ulong i = 0; i < 16; i++)
        {
            Assert.True(DirtyPageSet.Contains(slow, watched + i * ps), $"page {i} of the registered range is read through /proc/PID/mem");
            Assert.False(DirtyPageSet.Contains(slow, plain + i * ps), $"page {i} of the other range keeps process_vm_readv");
        }
        Assert.True(DirtyPageSet.Contains(present.Select(r => new AddressRange(r.Start, r.End)).ToList(), watched));
        // And a read of them all ends, with their bytes.
        var data = new Dictionary<ulong, byte>();
        ulong unreadable = PageWalk.ReadChunks(src, new[] { new AddressRange(watched, watched + 16 * ps) }, (address, bytes) =>
        {
            for (int off = 0; off < bytes.Length; off += (int)ps) data[address + (ulong)off] = bytes[off];
        }, sharedAnonymous: slow);
        Assert.Equal(0UL, unreadable);
        Assert.Equal(16, data.Count);
    }
}
