using System;
using System.IO;
using System.Threading;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Round 26 Compat: the soft-dirty epoch records of versions before round 21, named "BOOT-PID-START" (<see cref="TrackingEpoch.LegacyKey"/>),
/// where this version names them "BOOT-NS.PID-START". A module of such a version loaded in another session (one started before an upgrade)
/// recorded its clears where this one never read, and read nothing this one recorded: measured with the module built from commit
/// 52f9866 (round 13) against this one on one sleeping process, each version's epoch stayed the same across the other's clear, so a
/// chain of either trusted soft-dirty bits the other had taken. The folders are pointed at test folders (<see cref="EpochFolderScope"/>).
/// </summary>
[Collection(WorkflowCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class EpochRound26CompatTests : IDisposable
{
    private readonly EpochFolderScope _folders = new("sd-r26-compat-");

    public void Dispose() => _folders.Dispose();

    /// <summary>What a version before round 21 writes when it clears: a new epoch (32 hexadecimal digits) under its name.</summary>
    private static string RecordAsBefore(string dir, ProcPageSource source)
    {
        var epoch = Guid.NewGuid().ToString("N");
        File.WriteAllText(Path.Combine(dir, Legacy(source.ProcessId)), epoch);
        return epoch;
    }

    [Fact]
    public void AClearRecordedByAnEarlierVersion_ChangesTheEpochThisVersionReads()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var armed = TrackingEpoch.Record(self);
        Assert.NotNull(armed);
        RecordAsBefore(TrackingEpoch.StateDirectories()[0], self);
        Assert.NotEqual(armed, TrackingEpoch.Current(self));
        // And each later clear of that version again.
        var seen = TrackingEpoch.Current(self);
        RecordAsBefore(TrackingEpoch.StateDirectories()[0], self);
        Assert.NotEqual(seen, TrackingEpoch.Current(self));
    }

    [Fact]
    public void AClearByThisVersion_ChangesTheRecordAnEarlierVersionReads()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var dir = TrackingEpoch.StateDirectories()[0];
        var before = RecordAsBefore(dir, self); // that version armed a chain at it
        Assert.NotNull(TrackingEpoch.Record(self));
        Assert.NotEqual(before, File.ReadAllText(Path.Combine(dir, Legacy(self.ProcessId))));
    }

    [Fact]
    public void WithoutAnEarlierVersionsRecord_NoneIsMade_AndTheEpochIsAsBefore()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        var armed = TrackingEpoch.Record(self);
        var dir = TrackingEpoch.StateDirectories()[0];
        Assert.False(File.Exists(Path.Combine(dir, Legacy(self.ProcessId))));
        // The form chains of rounds 21 to 25 armed: they keep trusting their epoch after an upgrade.
        Assert.Equal($"{dir}={File.ReadAllText(Path.Combine(dir, TrackingEpoch.FileKey(self.ProcessId)!))}", armed);
    }

    [Fact]
    public void TheLockAnEarlierVersionTakes_IsTakenToo()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        AssertLockTaken(self, TrackingEpoch.StateDirectories()[0]);
    }

    /// <summary>While another holds the earlier version's lock of <paramref name="self"/> in <paramref name="dir"/>, this version's lock waits; once free, it is taken.</summary>
    internal static void AssertLockTaken(ProcPageSource self, string dir)
    {
        using (var other = new FileStream(Path.Combine(dir, Legacy(self.ProcessId) + ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite))
        {
            Assert.Equal(0, Flock((int)other.SafeFileHandle.DangerousGetHandle(), LockEx | LockNb));
            using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
            Assert.ThrowsAny<OperationCanceledException>(() => TrackingEpoch.Lock(self, soon.Token)?.Dispose());
        }
        using var guard = new CancellationTokenSource(TimeSpan.FromSeconds(30)); // a hang guard: a free lock is taken at once
        TrackingEpoch.Lock(self, guard.Token)!.Dispose();
    }

    /// <summary>The name commit 52f9866 gave the records of <paramref name="pid"/> (its TrackingEpoch.FileName of Identity: boot, pid and start time).</summary>
    internal static string Legacy(int pid) => $"{TrackingEpoch.BootId()}-{pid}-{TrackingEpoch.StartTime(pid)}";
    private const int LockEx = 2, LockNb = 4;

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static extern int Flock(int fd, int operation);
}
