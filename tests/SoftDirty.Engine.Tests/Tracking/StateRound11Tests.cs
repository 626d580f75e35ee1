using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using SoftDirty;
using SoftDirty.Images;
using SoftDirty.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Issue 13, eleventh attack round: the soft-dirty epoch folder over time. It was one folder, /run/user/UID where that
/// existed, else /tmp; /run/user/UID comes and goes with the user's logins. A chain armed while the user was not logged
/// in (a cron job: /tmp), a clear in a login (/run/user/UID), the login ended, then the next increment read /tmp, found its
/// own epoch and trusted soft-dirty that the login's clear had taken (silent data loss); likewise a watch whose epoch could
/// no longer be read counted a clear made meanwhile as none. The folders are pointed at test folders here
/// (<see cref="TrackingEpoch.RuntimeRoot"/>, <see cref="TrackingEpoch.SharedTempFolder"/>).
/// </summary>
[Collection(WorkflowCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class StateRound11Tests : IDisposable
{
    private const UnixFileMode Private = EpochFolderScope.Private;
    private readonly EpochFolderScope _folders = new("sd-r11-state-");
    private readonly string _userRuntime;

    public StateRound11Tests() =>
        _userRuntime = Path.Combine(_folders.Runtime, FileNative.Geteuid().ToString(System.Globalization.CultureInfo.InvariantCulture));

    public void Dispose() => _folders.Dispose();

    private void Login() => Directory.CreateDirectory(_userRuntime, Private);

    private void Logout() => Directory.Delete(_userRuntime, recursive: true);

    [Fact]
    public void AClearInALogin_IsSeenByAChainArmedWithoutOne_AfterTheLoginEnded()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var armed = TrackingEpoch.Record(self); // a cron job's save: no /run/user/UID
        Assert.NotNull(armed);
        Login();
        var cleared = TrackingEpoch.Record(self); // Clear-SoftDirty (a watch) in the login
        Assert.NotNull(cleared);
        Logout();
        Assert.NotEqual(armed, TrackingEpoch.Current(self)); // the next increment must not trust its parent's epoch
    }

    [Fact]
    public void AClearWithoutALogin_IsSeenByAChainArmedInOne_WhenTheRuntimeFolderComesBack()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        Login();
        var armed = TrackingEpoch.Record(self);
        Assert.NotNull(armed);
        // The login ends; a folder that is not a tmpfs of logind's keeps its files (moved aside here, as it was).
        var aside = _userRuntime + ".aside";
        Directory.Move(_userRuntime, aside);
        Assert.NotNull(TrackingEpoch.Record(self)); // a cron job clears
        Directory.Move(aside, _userRuntime);
        Assert.NotEqual(armed, TrackingEpoch.Current(self));
    }

    [Fact]
    public void TheRuntimeFolderAppearingOrVanishing_ChangesTheEpoch_AndTwoCommandsThatSawDifferentFolders_ShareALock()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var before = TrackingEpoch.Record(self);
        Login();
        Assert.NotEqual(before, TrackingEpoch.Current(self)); // no record in the new folder: not the armed epoch
        Assert.Equal(2, TrackingEpoch.StateDirectories().Length);

        // One command holds the lock with the runtime folder present; another, after it vanished, must wait.
        var outer = TrackingEpoch.Lock(self, default);
        Assert.NotNull(outer);
        try
        {
            bool waited = false;
            using var cts = new CancellationTokenSource();
            Exception? thrown = null;
            var thread = new Thread(() =>
            {
                InjectionSteps.Current = new InjectionSteps { OnStep = s => { if (s == TrackingEpoch.LockWaitStep) { waited = true; cts.Cancel(); } } };
                try { TrackingEpoch.Lock(self, cts.Token)?.Dispose(); }
                catch (Exception ex) { thrown = ex; }
                finally { InjectionSteps.Current = null; }
            });
            var aside = _userRuntime + ".aside";
            Directory.Move(_userRuntime, aside);
            thread.Start();
            Assert.True(thread.Join(TimeSpan.FromMinutes(2)), "hang guard: the other command never ended");
            Directory.Move(aside, _userRuntime);
            Assert.True(waited, "the command that saw only /tmp took the lock another command held");
            Assert.IsAssignableFrom<OperationCanceledException>(thrown);
        }
        finally { outer!.Dispose(); }
    }

    [Fact]
    public void AWatchWhoseEpochCanNoLongerBeRead_CountsEveryPage_NotNone()
    {
        using var child = System.Diagnostics.Process.Start("sleep", "600"); // small: its whole pagemap is read
        try { WatchOf(child.Id); }
        finally { child.Kill(); child.WaitForExit(); }
    }

    private static void WatchOf(int pid)
    {
        using var self = ProcPageSource.Open(pid);
        using var claimed = new ClaimsSoftDirty(self);
        using var watch = new SoftDirtyTracker(claimed);
        watch.Reset();
        // The folder becomes unusable (open to others: its owner's mistake, or removed and planted by another user).
        var dir = TrackingEpoch.StateDirectory()!;
        File.SetUnixFileMode(dir, Private | UnixFileMode.OtherWrite | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        try
        {
            Assert.Null(TrackingEpoch.Record(self)); // another command's clear, recorded nowhere
            var set = watch.Collect(rearm: false);
            Assert.True(set.ResetElsewhere, "a clear that could not be recorded was taken for none");
        }
        finally { File.SetUnixFileMode(dir, Private); }
    }

    /// <summary>The owner's folder in the test's /tmp, made as that user's command would (theirs, 0700).</summary>
    private string OwnersFolder()
    {
        var dir = Path.Combine(_folders.Tmp, "softdirty-epochs-" + RootWithOtherUser.Uid);
        Directory.CreateDirectory(dir, Private);
        Chown(dir);
        return dir;
    }

    private static void Chown(string path)
    {
        using var p = System.Diagnostics.Process.Start("chown", $"-h {RootWithOtherUser.Uid} {path}");
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    private static string FileOf(ProcPageSource source) => TrackingEpoch.FileKey(source.ProcessId)!;

    [RootWithOtherUserFact]
    public void RootsClearOfAUsersProcess_IsSeenByTheUsersCommands_AndTheUsersByRoots()
    {
        using var target = new RootWithOtherUser();
        using var source = ProcPageSource.Open(target.Id);
        var users = Path.Combine(OwnersFolder(), FileOf(source));
        File.WriteAllText(users, "armed-by-the-users-chain"); // the user's save armed soft-dirty
        Chown(users);

        Assert.NotNull(TrackingEpoch.Record(source)); // root: Clear-SoftDirty -Id (a watch, a migration, its own chain)
        Assert.NotEqual("armed-by-the-users-chain", File.ReadAllText(users)); // the user's next increment must not trust its epoch
        Assert.Equal(RootWithOtherUser.Uid, FileNative.Stat(users, out _)!.Value.Uid); // and can read it (0600, theirs)

        var rootArmed = TrackingEpoch.Record(source); // root's chain armed
        Assert.NotNull(rootArmed);
        Assert.Equal(rootArmed, TrackingEpoch.Current(source));
        File.WriteAllText(users + ".new", "cleared-by-the-user"); // the user's Clear-SoftDirty (a new file renamed over it)
        File.Move(users + ".new", users, overwrite: true);
        Assert.NotEqual(rootArmed, TrackingEpoch.Current(source)); // root's next increment must not trust its epoch
    }

    [RootWithOtherUserFact]
    public void RootsTwoCommandsOnAUsersProcess_AndTheUsersOwn_ShareTheLockInTheUsersFolder()
    {
        using var target = new RootWithOtherUser();
        using var source = ProcPageSource.Open(target.Id);
        var folder = OwnersFolder();
        using (var held = TrackingEpoch.Lock(source, default)) Assert.NotNull(held);
        var lockFile = Path.Combine(folder, FileOf(source) + ".lock");
        var st = FileNative.Lstat(lockFile, out _);
        Assert.NotNull(st); // root's command took the lock the user's commands take
        Assert.Equal(RootWithOtherUser.Uid, st!.Value.Uid); // made theirs: a lock file of root's would keep their commands out
        Assert.Equal(0x180u, st.Value.Permissions); // 0600
    }

    [RootWithOtherUserFact]
    public void WhatTheUserPlantsInTheirFolder_NeverMakesRootWriteElsewhere_OrHang()
    {
        using var target = new RootWithOtherUser();
        using var source = ProcPageSource.Open(target.Id);
        var victim = Path.Combine(_folders.Root, "victim");
        Directory.CreateDirectory(victim, Private);
        var victimFile = Path.Combine(victim, "secret");
        File.WriteAllText(victimFile, "root's");
        var name = FileOf(source);

        // The folder itself a link to a folder of root's.
        var folder = Path.Combine(_folders.Tmp, "softdirty-epochs-" + RootWithOtherUser.Uid);
        File.CreateSymbolicLink(folder, victim);
        Assert.NotNull(TrackingEpoch.Record(source));
        using (TrackingEpoch.Lock(source, default)) { }
        Assert.Equal("secret", Path.GetFileName(Assert.Single(Directory.GetFileSystemEntries(victim))));
        File.Delete(folder);

        // The epoch file a FIFO (a read must not hang), then a hard link to a file of root's; the lock file a link, then a FIFO.
        OwnersFolder();
        var epochFile = Path.Combine(folder, name);
        Assert.Equal(0, Mkfifo(epochFile, 0x180));
        Assert.Null(TrackingEpoch.Current(source)); // cannot tell: increments compare contents
        File.Delete(epochFile);
        File.CreateSymbolicLink(epochFile, victimFile);
        Assert.NotNull(TrackingEpoch.Record(source)); // replaces the link, never writes through it
        Assert.Equal("root's", File.ReadAllText(victimFile));
        Assert.Equal(FileNative.S_IFREG, FileNative.Lstat(epochFile, out _)!.Value.Type);

        var lockFile = Path.Combine(folder, name + ".lock");
        File.CreateSymbolicLink(lockFile, victimFile);
        var linked = Assert.Throws<EngineException>(() => TrackingEpoch.Lock(source, default)?.Dispose());
        Assert.Equal(EngineError.UnsafeDestination, linked.Error);
        File.Delete(lockFile);
        Assert.Equal(0, Mkfifo(lockFile, 0x180));
        var fifo = Assert.Throws<EngineException>(() => TrackingEpoch.Lock(source, default)?.Dispose());
        Assert.Equal(EngineError.UnsafeDestination, fifo.Error);
        Assert.Equal("root's", File.ReadAllText(victimFile));
    }

    private static int Mkfifo(string path, uint mode)
    {
        using var p = System.Diagnostics.Process.Start("mkfifo", $"-m {Convert.ToString(mode, 8)} {path}");
        p.WaitForExit();
        return p.ExitCode;
    }

    [Fact]
    public void AnEmulatedProcessWrittenFromAnotherThread_BetweenTheReadAndTheClear_LosesNoPage()
    {
        const int Page = 4096;
        var p = new SoftDirty.Emulation.EmulatedProcess("r11-threads");
        ulong a = p.Mmap(null, 8 * Page, Protection.Read | Protection.Write).Start;
        p.Write(a, 8 * Page);
        using var watch = new SoftDirtyTracker(p);
        watch.Reset();

        // Another runspace (a thread job) writes page 5 after this collection read soft-dirty, before it clears.
        Thread? writer = null;
        InjectionSteps.Current = new InjectionSteps
        {
            OnStep = s =>
            {
                if (s != TrackingEpoch.RecordedStep || writer is not null) return;
                writer = new Thread(() => p.Write(a + 5 * Page, 16));
                writer.Start();
                writer.Join(TimeSpan.FromSeconds(2)); // done, or waiting for the collection to let the process go
            },
        };
        DirtyPageSet first;
        try { first = watch.Collect(); }
        finally { InjectionSteps.Current = null; }
        Assert.NotNull(writer);
        Assert.True(writer!.Join(TimeSpan.FromMinutes(2)), "hang guard: the writer never ended");
        var second = watch.Collect();
        var seen = new HashSet<ulong>(TrackingRound6Tests.PagesIn(first.Ranges, a, 8, Page));
        seen.UnionWith(TrackingRound6Tests.PagesIn(second.Ranges, a, 8, Page));
        Assert.Contains(5UL, seen);
    }

    [Fact]
    public void AClearWhoseEpochCannotBeWritten_LeavesNoOldEpochToTrust_OrIsNotMade()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var armed = TrackingEpoch.Record(self);
        Assert.NotNull(armed);
        var dir = TrackingEpoch.StateDirectory()!;
        bool root = FileNative.Geteuid() == 0;
        // Root: the folder's file system full (a tmpfs of its own); another user: a folder it may not write to (0500).
        if (root) FillWithTmpfs(dir, armed!);
        else File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            bool cleared = false;
            InjectionSteps.Current = new InjectionSteps { OnStep = s => { if (s == TrackingEpoch.RecordedStep) cleared = true; } };
            try
            {
                self.ClearRefs(ClearRefsType.SoftDirty); // Clear-SoftDirty, a watch sample, another chain
                Assert.True(cleared);
                Assert.NotEqual(armed, TrackingEpoch.Current(self)); // no chain armed before trusts the bits it took
            }
            catch (EngineException ex)
            {
                Assert.Equal(EngineError.ProcIOError, ex.Error);
                Assert.False(cleared, "cleared though its epoch could not be recorded nor the old one removed");
            }
            finally { InjectionSteps.Current = null; }
        }
        finally
        {
            if (root) Unmount(dir);
            else File.SetUnixFileMode(dir, Private);
        }
    }

    /// <summary>Mounts a tiny tmpfs on <paramref name="dir"/> holding the record <paramref name="epoch"/> of this process, and fills it.</summary>
    private static void FillWithTmpfs(string dir, string epoch)
    {
        var record = Path.Combine(dir, TrackingEpoch.FileKey(Environment.ProcessId)!);
        var content = File.ReadAllText(record);
        Run("mount", $"-t tmpfs -o size=8k,mode=0700 r11-full {dir}");
        File.WriteAllText(record, content);
        Assert.Equal(epoch, TrackingEpoch.Current(ProcPageSource.Open(Environment.ProcessId)));
        try
        {
            using var fill = new FileStream(Path.Combine(dir, "fill"), FileMode.CreateNew);
            var block = new byte[4096];
            for (int i = 0; i < 64; i++) { fill.Write(block); fill.Flush(); }
        }
        catch (IOException) { } // full
    }

    private static void Unmount(string dir) => Run("umount", dir);

    private static void Run(string command, string arguments)
    {
        using var p = System.Diagnostics.Process.Start(command, arguments);
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    [RootWithOtherUserFact]
    public void AFallbackFolderPlantedByAnotherUser_IsNeverUsed_AndNothingIsWrittenThrough()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var mine = Path.Combine(_folders.Tmp, "softdirty-epochs-0");
        var victim = Path.Combine(_folders.Root, "victim");
        Directory.CreateDirectory(victim, Private);
        foreach (var plant in new[] { "folder", "open-folder", "file", "fifo", "link" })
        {
            switch (plant)
            {
                case "folder": Directory.CreateDirectory(mine, Private); Chown(mine); break;
                case "open-folder": Directory.CreateDirectory(mine); File.SetUnixFileMode(mine, (UnixFileMode)0x1FF); break; // 0777, root's
                case "file": File.WriteAllText(mine, "x"); break;
                case "fifo": Assert.Equal(0, Mkfifo(mine, 0x1B6)); break;
                case "link": File.CreateSymbolicLink(mine, victim); Chown(mine); break;
            }
            Assert.Empty(TrackingEpoch.StateDirectories()); // no /run/user/0 here: no folder at all
            Assert.Null(TrackingEpoch.Record(self)); // no epoch kept: increments compare contents
            Assert.Null(TrackingEpoch.Current(self));
            Assert.Null(TrackingEpoch.Lock(self, default));
            Assert.Empty(Directory.GetFileSystemEntries(victim));
            if (Directory.Exists(mine) && plant != "link") Directory.Delete(mine, recursive: true); else File.Delete(mine);
        }
    }

    /// <summary>The process itself, with soft-dirty claimed (this kernel may have none): the tracker's epoch logic is what is tested.</summary>
    private sealed class ClaimsSoftDirty(IPageSource inner) : IPageSource, IPageSourceWrapper
    {
        public IPageSource Inner { get; } = inner;
        public int ProcessId => Inner.ProcessId;
        public string Name => Inner.Name;
        public int PageSize => Inner.PageSize;
        public KernelFeatures Features { get; } = new() { SoftDirty = true, PagemapScan = false };
        public IReadOnlyList<MemoryMapping> ReadMappings(bool withCounters) => Inner.ReadMappings(withCounters);
        public int ReadPagemap(ulong firstPage, Span<PagemapEntry> destination) => Inner.ReadPagemap(firstPage, destination);
        public int ReadMemory(ulong address, Span<byte> destination) => Inner.ReadMemory(address, destination);
        public int WriteClearRefs(ReadOnlySpan<byte> text) => Inner.WriteClearRefs(text);
        public int ScanPagemap(ref PagemapScanRequest request, Span<PageRegion> regions) => Inner.ScanPagemap(ref request, regions);
        public bool MappingUnchanged(MemoryMapping mapping, ulong start, ulong end) => Inner.MappingUnchanged(mapping, start, end);
        public void Dispose() { }
    }
}
