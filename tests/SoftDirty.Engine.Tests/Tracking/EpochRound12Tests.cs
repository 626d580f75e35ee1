using System;
using System.IO;
using System.Threading;
using SoftDirty.Images;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Issue 13, twelfth attack round: the epoch folders round 11 added (every usable folder, root in the user's folders too),
/// attacked by the user who owns the folders and by a careless one. The folders are pointed at test folders
/// (<see cref="TrackingEpoch.RuntimeRoot"/>, <see cref="TrackingEpoch.SharedTempFolder"/>), on one filesystem as /run and
/// /tmp can be.
/// </summary>
[Collection(WorkflowCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class EpochRound12Tests : IDisposable
{
    private const UnixFileMode Private = EpochFolderScope.Private;
    /// <summary>A hang guard only: a lock that is free is taken at once.</summary>
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private readonly EpochFolderScope _folders = new("sd-r12-epoch-");

    public void Dispose() => _folders.Dispose();

    private static string FileOf(ProcPageSource source) => TrackingEpoch.FileKey(source.ProcessId)!;

    private static void Run(string file, string args)
    {
        using var p = System.Diagnostics.Process.Start(file, args);
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    /// <summary>Takes and releases the lock, failing (not hanging) where it is not taken within <see cref="HangGuard"/>.</summary>
    private static void TakeOnce(IPageSource source)
    {
        using var guard = new CancellationTokenSource(HangGuard);
        IDisposable? held = null;
        var ex = Record.Exception(() => held = TrackingEpoch.Lock(source, guard.Token));
        Assert.True(ex is null, $"The soft-dirty lock was not taken: {ex?.GetType().Name} {ex?.Message}");
        Assert.NotNull(held);
        held!.Dispose();
    }

    [Fact]
    public void ALockFileThatIsOneFileInBothFolders_IsTakenOnce_NotWaitedForByItsOwnHolder()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var uid = FileNative.Geteuid().ToString(System.Globalization.CultureInfo.InvariantCulture);
        Directory.CreateDirectory(Path.Combine(_folders.Runtime, uid), Private); // a login
        Assert.Equal(2, TrackingEpoch.StateDirectories().Length);
        TakeOnce(self); // both lock files made
        var name = FileOf(self) + ".lock";
        var inRuntime = Path.Combine(TrackingEpoch.StateDirectories()[0], name);
        var inTmp = Path.Combine(TrackingEpoch.StateDirectories()[1], name);
        // The same file under both names (a hard link, as one filesystem allows; a bind mount of one folder on the other is alike).
        File.Delete(inTmp);
        Run("ln", $"{inRuntime} {inTmp}");
        TakeOnce(self);
        // Still a lock: another holder of the shared file is waited for.
        using (var other = new FileStream(inTmp, FileMode.Open, FileAccess.ReadWrite))
        {
            Assert.Equal(0, Flock((int)other.SafeFileHandle.DangerousGetHandle(), LockEx | LockNb));
            using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            Assert.ThrowsAny<OperationCanceledException>(() => TrackingEpoch.Lock(self, soon.Token)?.Dispose());
        }
        TakeOnce(self);
    }

    private string OwnersFolder()
    {
        var dir = Path.Combine(_folders.Tmp, "softdirty-epochs-" + RootWithOtherUser.Uid);
        Directory.CreateDirectory(dir, Private);
        Run("chown", $"{RootWithOtherUser.Uid} {dir}");
        return dir;
    }

    /// <summary>
    /// Files of root's (or of a third user) that the user links into their folder as the epoch or the lock file of their
    /// process (a hard link: where fs.protected_hardlinks is 0 any file on the filesystem, else one they may read and write).
    /// Root's commands on the process never change them (owner, mode, bytes), and never take their bytes as an epoch.
    /// </summary>
    [RootWithOtherUserFact]
    public void FilesOfOthersLinkedIntoTheUsersFolder_AreNeverChangedOrTrustedByRoot()
    {
        using var target = new RootWithOtherUser();
        using var source = ProcPageSource.Open(target.Id);
        var folder = OwnersFolder();
        var victims = Path.Combine(_folders.Root, "victims");
        Directory.CreateDirectory(victims, Private);
        foreach (var (owner, mode) in new[] { (0u, "600"), (12345u, "666") })
        {
            var epochVictim = Path.Combine(victims, $"epoch-{owner}");
            var lockVictim = Path.Combine(victims, $"lock-{owner}");
            File.WriteAllText(epochVictim, $"secret-of-{owner}");
            File.WriteAllText(lockVictim, $"lock-of-{owner}");
            foreach (var v in new[] { epochVictim, lockVictim })
            {
                Run("chown", $"{owner} {v}");
                Run("chmod", $"{mode} {v}");
            }
            var epochFile = Path.Combine(folder, FileOf(source));
            var lockFile = epochFile + ".lock";
            File.Delete(epochFile);
            File.Delete(lockFile);
            Run("ln", $"{epochVictim} {epochFile}");
            Run("ln", $"{lockVictim} {lockFile}");

            var current = TrackingEpoch.Current(source);
            Assert.DoesNotContain($"secret-of-{owner}", current ?? "");
            TakeOnce(source);
            Assert.NotNull(TrackingEpoch.Record(source));
            foreach (var (v, text) in new[] { (epochVictim, $"secret-of-{owner}"), (lockVictim, $"lock-of-{owner}") })
            {
                var st = FileNative.Lstat(v, out _)!.Value;
                Assert.Equal(owner, st.Uid);
                Assert.Equal(Convert.ToUInt32(mode, 8), st.Permissions);
                Assert.Equal(text, File.ReadAllText(v));
            }
        }
    }

    /// <summary>
    /// A process of the user that is not dumpable for a moment (PR_SET_DUMPABLE 0: the files in /proc/PID are root's meanwhile):
    /// root's clear then is still recorded in the user's folders (the owner is /proc/PID's, its effective uid), so the user's
    /// chain, once the process is dumpable again, does not trust its epoch.
    /// </summary>
    [RootWithOtherUserFact]
    public void RootsClearOfAUsersProcessWhileItIsNotDumpable_IsStillSeenByTheUsersCommands()
    {
        using var target = new SoftDirty.Tests.Injection.WtTarget();
        Assert.Equal("0", target.Send($"setuid {RootWithOtherUser.Uid}")[0]);
        using var source = ProcPageSource.Open(target.Pid);
        var users = Path.Combine(OwnersFolder(), FileOf(source));
        File.WriteAllText(users, "armed-by-the-users-chain");
        Run("chown", $"{RootWithOtherUser.Uid} {users}");
        Assert.Equal("0", target.Send("dumpable 0")[0]);
        Assert.Equal(0u, FileNative.Stat($"/proc/{target.Pid}/clear_refs", out _)!.Value.Uid); // its files root's while not dumpable (/proc/PID stays theirs)

        Assert.NotNull(TrackingEpoch.Record(source)); // root's Clear-SoftDirty -Id
        Assert.Equal("0", target.Send("dumpable 1")[0]);
        Assert.NotEqual("armed-by-the-users-chain", File.ReadAllText(users));
    }

    /// <summary>
    /// A process that changes its user while a command of root's holds its lock (a daemon dropping privileges to serve a user):
    /// the lock was root's alone, the new user's commands did not wait for it, and a clear of theirs between root's record and
    /// root's clear was trusted by their next increment. The record is refused; the command can be run again.
    /// </summary>
    [RootWithOtherUserFact]
    public void AProcessThatChangesItsUserUnderRootsLock_IsNotRecordedUnderIt()
    {
        using var target = new SoftDirty.Tests.Injection.WtTarget();
        using var source = ProcPageSource.Open(target.Pid);
        OwnersFolder();
        using (var held = TrackingEpoch.Lock(source, default))
        {
            Assert.NotNull(held);
            Assert.Equal("0", target.Send($"setuid {RootWithOtherUser.Uid}")[0]);
            var changed = Assert.Throws<EngineException>(() => TrackingEpoch.Record(source));
            Assert.Equal(EngineError.ProcIOError, changed.Error);
            Assert.Contains("changed its user", changed.Message, StringComparison.Ordinal);
        }
        using (var again = TrackingEpoch.Lock(source, default)) Assert.NotNull(TrackingEpoch.Record(source)); // run again: the user's lock taken
        Assert.True(File.Exists(Path.Combine(OwnersFolder(), FileOf(source) + ".lock")));
    }

    private const int LockEx = 2, LockNb = 4;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static extern int Flock(int fd, int operation);
}
