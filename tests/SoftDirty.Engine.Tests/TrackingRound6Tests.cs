using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Injection;
using SoftDirty.Tests.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>
/// Issue 13, sixth attack round, on write tracking: several commands or sessions sharing the write tracking of
/// one process (one resets while another counts on the last reset), a tracking disabled under a running tracker
/// while the target reuses the descriptor number for a userfaultfd of its own, and soft-dirty cleared by another
/// command between two samples. Each of these lost writes silently or touched the target's own descriptor before.
/// </summary>
[Collection(WorkflowCollection.Name)]
public sealed class TrackingRound6Tests : IDisposable
{
    private const HostNeeds Injection = HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync | HostNeeds.SyscallInjection;
    private readonly StateFolderScope _state = new();

    public void Dispose() => _state.Dispose();

    /// <summary>Indexes of the pages of [start, start + pages) that <paramref name="ranges"/> hold.</summary>
    internal static ulong[] PagesIn(IEnumerable<AddressRange> ranges, ulong start, int pages, int pageSize)
    {
        ulong end = start + (ulong)pages * (ulong)pageSize, ps = (ulong)pageSize;
        var found = new List<ulong>();
        foreach (var r in ranges)
            for (ulong a = Math.Max(r.Start, start); a < Math.Min(r.End, end); a += ps) found.Add((a - start) / ps);
        return found.ToArray();
    }

    private static string[] UffdFlagged(int pid)
    {
        using var src = ProcPageSource.Open(pid);
        return src.ReadMappings(true).Where(m => m.VmFlags.Contains(RemoteWriteProtect.UffdWriteProtectFlag)).Select(m => m.ToString()).ToArray();
    }

    [HostFact(Injection)]
    public void AnotherCommandResetsBetweenTwoCollections_TheWritesBeforeItAreStillReported()
    {
        using var t = new WtTarget();
        ulong region = t.Map(32);
        using var src = ProcPageSource.Open(t.Pid);
        RemoteWriteProtect.Enable(src, new List<AddressRange>());
        using var watch = new WriteProtectTracker(src);   // a Watch-DirtyPage -Method WriteProtect in one session
        watch.Reset();
        t.Send($"write {region:x} 5 2");
        using (var save = new WriteProtectTracker(src))   // a Save-MemoryImage increment in another: collects and re-protects
        {
            save.Resume();
            Assert.Equal(new ulong[] { 5, 6 }, PagesIn(save.Collect().Ranges, region, 32, t.PageSize));
        }
        var seen = watch.Collect();
        Assert.True(seen.ResetElsewhere);
        Assert.Contains(5UL, PagesIn(seen.Ranges, region, 32, t.PageSize)); // before: nothing, and no word of it
        Assert.Contains(6UL, PagesIn(seen.Ranges, region, 32, t.PageSize));
        t.Send($"write {region:x} 9");
        var next = watch.Collect(); // its own reset again: exact
        Assert.False(next.ResetElsewhere);
        Assert.Equal(new ulong[] { 9 }, PagesIn(next.Ranges, region, 32, t.PageSize));
    }

    [HostFact(Injection)]
    public void ResumedFromAResetThatAnotherSessionReplacedAfterTheCheck_CollectSaysSo()
    {
        using var t = new WtTarget();
        ulong region = t.Map(16);
        using var src = ProcPageSource.Open(t.Pid);
        var enabled = RemoteWriteProtect.Enable(src, new List<AddressRange>());
        using (var first = new WriteProtectTracker(src)) first.Reset();
        var parentReset = WriteTrackingStore.Load(t.Pid)!.ResetId;      // what an image chain's parent recorded
        using var chain = new WriteProtectTracker(src);                   // the next increment: checked the reset here
        Assert.Equal(parentReset, chain.RemoteState!.ResetId);
        t.Send($"write {region:x} 2 3");
        using (var other = new WriteProtectTracker(src)) { other.Resume(); other.Collect(); } // a second session, in between
        chain.Resume(parentReset);
        var set = chain.Collect();
        Assert.True(set.ResetElsewhere);
        Assert.Equal(new ulong[] { 2, 3, 4 }, PagesIn(set.Ranges, region, 16, t.PageSize).Intersect(new ulong[] { 2, 3, 4 }).ToArray());
        Assert.Equal(enabled.Inode, WriteTrackingStore.Load(t.Pid)!.Inode);
    }

    [HostFact(Injection)]
    public void DisabledUnderARunningTracker_AndTheNumberReusedByTheTargetsOwnUserfaultfd_NothingIsRegisteredWithIt()
    {
        using var t = new WtTarget();
        t.Map(16);
        ulong own = t.Map(4);
        using var src = ProcPageSource.Open(t.Pid);
        var state = RemoteWriteProtect.Enable(src, new List<AddressRange>());
        using var watch = new WriteProtectTracker(src);
        watch.Reset();
        Assert.True(RemoteWriteProtect.Disable(src, RemoteWriteProtect.RegisteredRanges(src))); // Disable-WriteTracking in another session
        int ownFd = int.Parse(t.Send($"ownuffd {own:x} 4")[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(state.Descriptor, ownFd); // the lowest free number: the one the tracking had
        var before = UffdFlagged(t.Pid);
        var ex = Assert.Throws<EngineException>(() => watch.Collect());
        Assert.Equal(EngineError.WriteTrackingNotEnabled, ex.Error);
        Assert.Equal(before, UffdFlagged(t.Pid)); // before: every other writable mapping registered with the target's own userfaultfd
    }

    [HostFact(Injection)]
    public void TwoTrackersEnablingAtOnce_OneUserfaultfd_BothWork()
    {
        using var t = new WtTarget();
        ulong region = t.Map(16);
        using var src = ProcPageSource.Open(t.Pid);
        using var go = new Barrier(2);
        var errors = new List<Exception>();
        var trackers = new WriteProtectTracker?[2];
        var tasks = Enumerable.Range(0, 2).Select(i => Task.Run(() =>
        {
            go.SignalAndWait();
            try
            {
                using var s = ProcPageSource.Open(t.Pid);
                var tr = new WriteProtectTracker(s);
                tr.KeepEnabled();
                tr.Reset();
                trackers[i] = tr;
            }
            catch (EngineException ex) { lock (errors) errors.Add(ex); }
        })).ToArray();
        Task.WaitAll(tasks);
        try
        {
            Assert.Empty(errors);
            Assert.Single(WriteTrackingStore.UserfaultfdDescriptors(t.Pid));
            t.Send($"write {region:x} 1");
            var a = trackers[0]!.Collect();
            Assert.Contains(1UL, PagesIn(a.Ranges, region, 16, t.PageSize));
        }
        finally
        {
            foreach (var tr in trackers) tr?.Dispose();
            RemoteWriteProtect.Disable(src, RemoteWriteProtect.RegisteredRanges(src));
        }
        Assert.Empty(WriteTrackingStore.UserfaultfdDescriptors(t.Pid));
    }

    [HostFact(Injection)]
    public void TrackingEnabledFromAnotherStateFolder_IsNotEnabledASecondTime_AndTheFirstStaysExact()
    {
        using var t = new WtTarget();
        ulong region = t.Map(16);
        using var src = ProcPageSource.Open(t.Pid);
        RemoteWriteProtect.Enable(src, new List<AddressRange>());
        using (var first = new WriteProtectTracker(src)) first.Reset(); // root's chain, say, with root's state folder
        t.Send($"write {region:x} 4");
        using (var elsewhere = new StateFolderScope())                    // another user, or $SOFTDIRTY_STATE_DIR set otherwise
        {
            var ex = Assert.Throws<EngineException>(() => new WriteProtectTracker(src).Dispose());
            Assert.Equal(EngineError.WriteTrackingInUse, ex.Error);
            Assert.False(WriteTrackingSupport.For(src).WriteProtect);
            Assert.Equal(nameof(EngineError.WriteTrackingInUse), WriteTrackingSupport.For(src).ErrorId);
        }
        Assert.Single(WriteTrackingStore.UserfaultfdDescriptors(t.Pid)); // before: a second userfaultfd, and its reset hid page 4
        using var again = new WriteProtectTracker(src);
        again.Resume();
        var set = again.Collect();
        Assert.False(set.ResetElsewhere);
        Assert.Equal(new ulong[] { 4 }, PagesIn(set.Ranges, region, 16, t.PageSize));
    }

    [HostFact(Injection)]
    public void EnableWriteTrackingWhileAWatchHoldsTheTrackingItEnabledForItself_TheWatchsEndLeavesItEnabled()
    {
        using var t = new WtTarget();
        ulong region = t.Map(16);
        using var src = ProcPageSource.Open(t.Pid);
        var watch = new WriteProtectTracker(src); // Watch-DirtyPage -Method WriteProtect: enabled for the command only
        watch.Reset();
        Assert.False(WriteTrackingStore.Load(t.Pid)!.Kept);
        using (var enable = new WriteProtectTracker(src)) enable.KeepEnabled(); // Enable-WriteTracking (or a chain) meanwhile
        Assert.True(WriteTrackingStore.Load(t.Pid)!.Kept);
        watch.Dispose();
        Assert.NotNull(WriteTrackingStore.Load(t.Pid)); // before: disabled under the user who had just enabled it
        Assert.Single(WriteTrackingStore.UserfaultfdDescriptors(t.Pid));
        t.Send($"write {region:x} 2");
        using (var later = new WriteProtectTracker(src))
        {
            later.Resume();
            Assert.Contains(2UL, PagesIn(later.Collect().Ranges, region, 16, t.PageSize));
        }
        Assert.True(RemoteWriteProtect.Disable(src, RemoteWriteProtect.RegisteredRanges(src)));
    }

    [HostFact(HostNeeds.Linux | HostNeeds.PagemapScan | HostNeeds.UffdWriteProtectAsync)]
    public void TwoWatchesOfThisProcessAtOnce_TheSecondIsWriteTrackingInUse_NotBlind()
    {
        const int Pages = 64;
        int ps = Environment.SystemPageSize;
        IntPtr block = System.Runtime.InteropServices.Marshal.AllocHGlobal(Pages * ps);
        try
        {
            ulong start = (ulong)block.ToInt64(), end = start + (ulong)(Pages * ps);
            System.Runtime.InteropServices.Marshal.Copy(new byte[Pages * ps], 0, block, Pages * ps); // present
            bool Mine(MemoryMapping m) => m.Start < end && m.End > start;
            using var src = ProcPageSource.Open(Environment.ProcessId);
            using var first = new WriteProtectTracker(src, Mine);   // a watch of this PowerShell in one runspace
            first.Reset();
            using var second = new WriteProtectTracker(src, Mine);  // and another one, at once
            // Before: every range was EBUSY and skipped, and the second watch reported 0 pages of 0 scanned, silently.
            Assert.Equal(EngineError.WriteTrackingInUse, Assert.Throws<EngineException>(() => second.Reset()).Error);
            ulong page = ((ulong)block.ToInt64() + (ulong)ps - 1) / (ulong)ps * (ulong)ps + 3UL * (ulong)ps; // a whole page inside the block
            System.Runtime.InteropServices.Marshal.WriteByte(new IntPtr((long)page), 1);
            Assert.True(first.Collect().Contains(page));
        }
        finally { System.Runtime.InteropServices.Marshal.FreeHGlobal(block); }
    }

    [Fact]
    public void LockPlantedAsALinkOrAFifo_IsUnsafeDestination_NeitherFollowedNorWaitedOn()
    {
        const int Pid = 4_194_000; // no process needed: the lock is a file named after the pid
        WriteTrackingStore.Lock(Pid, default).Dispose(); // creates the state folder
        var victim = Path.Combine(_state.Folder, "victim");
        File.WriteAllText(victim, "untouched");
        var lockFile = Path.Combine(_state.Folder, Pid + ".lock");
        File.Delete(lockFile);
        File.CreateSymbolicLink(lockFile, victim);
        Assert.Equal(EngineError.UnsafeDestination, Assert.Throws<EngineException>(() => WriteTrackingStore.Lock(Pid, default)).Error);
        Assert.Equal("untouched", File.ReadAllText(victim));
        File.Delete(lockFile);
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", lockFile)) mkfifo.WaitForExit();
        Assert.Equal(EngineError.UnsafeDestination, Assert.Throws<EngineException>(() => WriteTrackingStore.Lock(Pid, default)).Error);
    }

    [Fact]
    public void WaitingForTheLockOfAnotherCommand_EndsWithCtrlC()
    {
        const int Pid = 4_194_001;
        using var held = WriteTrackingStore.Lock(Pid, default); // another command (or a stopped session) holds it
        using var ctrlC = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        Assert.ThrowsAny<OperationCanceledException>(() => WriteTrackingStore.Lock(Pid, ctrlC.Token).Dispose());
        held.Dispose();
        WriteTrackingStore.Lock(Pid, default).Dispose(); // free again
        Assert.False(File.Exists(Path.Combine(_state.Folder, Pid + ".lock"))); // no state of that process: no lock file left
    }

    [Fact]
    public void SoftDirtyClearedByAnotherCommandBetweenTwoCollections_TheWritesBeforeItAreStillReported()
    {
        var p = new EmulatedProcess("r6sd", KernelProfile.Get(KernelProfile.DefaultName, noSoftDirty: false));
        ulong a = p.Mmap(null, 16 * 4096UL, Protection.Read | Protection.Write).Start;
        p.Write(a, 16 * 4096, 1);
        using var watch = new SoftDirtyTracker(p);
        watch.Reset();
        p.Write(a + 3 * 4096, 8, 2);
        p.ClearRefs(ClearRefsType.SoftDirty); // Clear-SoftDirty, or another watch, from another runspace
        var set = watch.Collect();
        Assert.True(set.ResetElsewhere);
        Assert.Contains(3UL, PagesIn(set.Ranges, a, 16, 4096));
        p.Write(a + 7 * 4096, 8, 3);
        var next = watch.Collect();
        Assert.False(next.ResetElsewhere);
        Assert.Equal(new ulong[] { 7 }, PagesIn(next.Ranges, a, 16, 4096));
    }
}

/// <summary>A private write-tracking state folder for one test ($SOFTDIRTY_STATE_DIR), removed with what is in it.</summary>
internal sealed class StateFolderScope : IDisposable
{
    private readonly string? _previous = Environment.GetEnvironmentVariable(WriteTrackingStore.FolderVariable);

    public StateFolderScope() => Environment.SetEnvironmentVariable(WriteTrackingStore.FolderVariable, Folder);

    public string Folder { get; } = Path.Combine(Path.GetTempPath(), "sd-state-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(WriteTrackingStore.FolderVariable, _previous);
        if (Directory.Exists(Folder)) Directory.Delete(Folder, recursive: true);
    }
}
