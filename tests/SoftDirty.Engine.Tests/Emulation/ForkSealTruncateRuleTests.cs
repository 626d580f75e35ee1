using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Emulation;
using Xunit;

namespace SoftDirty.Tests.Emulation;

/// <summary>
/// Round 33: the emulator's rules for MADV_WIPEONFORK/KEEPONFORK, MADV_DONTFORK/DOFORK, mseal(2) and file truncation, each
/// one measured on the 6.18 host with tests/scenarios/host (the differential in <see cref="ScenarioDifferentialTests"/>);
/// here on the emulator alone, so a machine without the kernel feature still checks the model.
/// </summary>
public class ForkSealTruncateRuleTests
{
    private const ulong Page = EmulatedProcess.PageBytes;
    private const Protection Rw = Protection.Read | Protection.Write;

    private static EmulatedProcess New() => new("r33", KernelProfile.Get(KernelProfile.Linux618, noSoftDirty: true));

    private static EngineException Refused(Action call, EngineError error, int errno)
    {
        var e = Assert.Throws<EngineException>(call);
        Assert.Equal(error, e.Error);
        Assert.Equal(errno, e.Errno);
        return e;
    }

    [Fact]
    public void WipeOnForkGivesTheChildTheRangeEmpty_DontForkLeavesItOut_TheParentKeepsItsPagesExclusive()
    {
        var p = New();
        ulong a = p.Mmap(null, 8 * Page, Rw).Start;
        p.Write(a, 8 * Page, 7);
        p.MadviseWipeOnFork(a + 2 * Page, 2 * Page, wipe: true);
        p.MadviseDontFork(a + 5 * Page, Page, dontFork: true);
        var child = p.Fork();
        for (ulong i = 0; i < 8; i++)
        {
            var c = child.ReadEntry(a + i * Page);
            var q = p.ReadEntry(a + i * Page);
            bool kept = i is not (2 or 3 or 5);
            Assert.Equal(kept, c.Present);
            Assert.Equal(!kept, q.Exclusive);   // shared copy-on-write only where the child got the page
        }
        Assert.Contains(child.ReadMappings(false), m => m.Start <= a + 2 * Page && a + 2 * Page < m.End);
        Assert.DoesNotContain(child.ReadMappings(false), m => m.Start <= a + 5 * Page && a + 5 * Page < m.End);
        Span<byte> b = stackalloc byte[(int)Page];
        child.ReadPageContent(a + 2 * Page, b);
        Assert.True(b.ToArray().All(x => x == 0), "a wiped page reads as zeros in the child");
        Refused(() => child.Write(a + 5 * Page, 1), EngineError.SegmentationFault, 0);
    }

    [Fact]
    public void KeepOnForkAndDoForkUndoTheAdvice_WipeOnForkOfSharedOrFileMemoryIsEinval()
    {
        var p = New();
        ulong a = p.Mmap(null, 4 * Page, Rw).Start;
        p.Write(a, 4 * Page, 1);
        p.MadviseWipeOnFork(a, 4 * Page, wipe: true);
        p.MadviseDontFork(a, 4 * Page, dontFork: true);
        p.MadviseWipeOnFork(a, 2 * Page, wipe: false);
        p.MadviseDontFork(a, 2 * Page, dontFork: false);
        var child = p.Fork();
        Assert.True(child.ReadEntry(a).Present);
        Assert.False(child.ReadEntry(a + 3 * Page).Present);
        ulong s = p.Mmap(null, 2 * Page, Rw, MmapFlags.Shared).Start;
        ulong f = p.Mmap(null, 2 * Page, Rw, MmapFlags.None, "/r33/file").Start;
        Refused(() => p.MadviseWipeOnFork(s, Page, wipe: true), EngineError.InvalidArgument, Errno.EINVAL);
        Refused(() => p.MadviseWipeOnFork(f, Page, wipe: true), EngineError.InvalidArgument, Errno.EINVAL);
        p.MadviseDontFork(s, Page, dontFork: true);   // any mapping may be left out of the child
    }

    [Fact]
    public void ASealedRangeRefusesUnmapMoveMapFixedAndMprotect_AndTheChildInheritsTheSeal()
    {
        var p = New();
        ulong a = p.Mmap(null, 8 * Page, Rw).Start;
        p.Write(a, 8 * Page, 1);
        p.Mseal(a + 4 * Page, 4 * Page);
        Refused(() => p.Munmap(a, 8 * Page), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Assert.True(p.ReadEntry(a).Present, "a refused munmap unmaps nothing");
        Refused(() => p.Mmap(a + 5 * Page, Page, Rw, MmapFlags.Fixed), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Refused(() => p.Mremap(a + 4 * Page, Page, a + 16 * Page, Page), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Refused(() => p.Mremap(a, Page, a + 6 * Page, Page), EngineError.EmulatorMappingSealed, Errno.EPERM);
        // mprotect changes the VMAs before the sealed one, then stops (per-VMA check).
        Refused(() => p.Mprotect(a, 8 * Page, Protection.Read), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Refused(() => p.Write(a, 1), EngineError.SegmentationFault, 0);
        p.Write(a + 4 * Page, 1);
        var child = p.Fork();
        Refused(() => child.Munmap(a + 4 * Page, Page), EngineError.EmulatorMappingSealed, Errno.EPERM);
        p.Munmap(a, 4 * Page);   // the part not sealed goes
    }

    [Fact]
    public void DiscardingAdviceIsRefusedOnlyOnSealedReadOnlyPrivateAnonymousMemory()
    {
        var p = New();
        ulong rw = p.Mmap(null, 2 * Page, Rw).Start;
        ulong ro = p.Mmap(null, 2 * Page, Protection.Read).Start;
        ulong file = p.Mmap(null, 2 * Page, Protection.Read, MmapFlags.None, "/r33/sealed").Start;
        p.Write(rw, 2 * Page, 3);
        p.Read(ro, 2 * Page);
        p.Read(file, 2 * Page);
        foreach (ulong a in new[] { rw, ro, file }) p.Mseal(a, 2 * Page);
        p.MadviseDontNeed(rw, Page);
        p.MadviseWipeOnFork(rw, Page, wipe: true);
        p.MadviseDontNeed(file, 2 * Page);
        p.MadviseDontFork(file, Page, dontFork: true);
        p.SwapOut(ro, Page);   // not discarding
        p.MadviseHugePage(ro, Page, huge: true);
        Refused(() => p.MadviseDontNeed(ro, Page), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Refused(() => p.MadviseFree(ro, Page), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Refused(() => p.MadviseWipeOnFork(ro, Page, wipe: true), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Refused(() => p.MadviseDontFork(ro, Page, dontFork: true), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Refused(() => p.GuardInstall(ro, Page), EngineError.EmulatorMappingSealed, Errno.EPERM);
        Assert.True(p.ReadEntry(ro).Present);
    }

    [Fact]
    public void MsealNeedsAMappedRangeAndA612Profile()
    {
        var p = New();
        ulong a = p.Mmap(null, 2 * Page, Rw).Start;
        Refused(() => p.Mseal(a, 3 * Page), EngineError.EmulatorNotMapped, Errno.ENOMEM);
        p.Munmap(a, 2 * Page);   // nothing was sealed
        Refused(() => p.Mseal(a + 1, Page), EngineError.InvalidArgument, Errno.EINVAL);
        var old = new EmulatedProcess("r33-61", KernelProfile.Get(KernelProfile.Linux61));
        ulong b = old.Mmap(null, Page, Rw).Start;
        Refused(() => old.Mseal(b, Page), EngineError.InvalidArgument, Errno.ENOSYS);
    }

    [Fact]
    public void TruncationUnmapsThePagesPastTheEndInEveryMapping_PrivateCopiesToo_AndAccessThereFaults()
    {
        var p = New();
        const string path = "/r33/truncated";
        ulong shared = p.Mmap(null, 4 * Page, Rw, MmapFlags.Shared, path).Start;
        ulong priv = p.Mmap(null, 4 * Page, Rw, MmapFlags.None, path).Start;
        p.Write(shared, 4 * Page, 5);
        p.Write(priv, 4 * Page, 6);
        var child = p.Fork();
        p.TruncateFile(path, 2 * Page);
        for (ulong i = 0; i < 4; i++)
        {
            Assert.Equal(i < 2, p.ReadEntry(shared + i * Page).Present);
            Assert.Equal(i < 2, p.ReadEntry(priv + i * Page).Present);
            Assert.Equal(i < 2, child.ReadEntry(priv + i * Page).Present);   // fork copied the private copies; the shared pages it did not
        }
        Refused(() => p.Read(shared + 2 * Page, 1), EngineError.SegmentationFault, 0);
        Refused(() => child.Write(priv + 3 * Page, 1), EngineError.SegmentationFault, 0);
        Span<byte> buffer = stackalloc byte[(int)(4 * Page)];
        Assert.Equal((int)(2 * Page), p.ReadMemory(shared, buffer));   // /proc/PID/mem stops at the end (EIO)
        p.TruncateFile(path, 4 * Page);
        p.Read(shared + 3 * Page, 1);
        Span<byte> b = stackalloc byte[(int)Page];
        p.ReadPageContent(shared + 3 * Page, b);
        Assert.True(b.ToArray().All(x => x == 0), "a page past the old end reads as zeros once the file grows again");
        Refused(() => p.TruncateFile(path, Page + 1), EngineError.InvalidArgument, Errno.EINVAL);
    }
}
