using System;
using System.IO;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Round 27 Remote: versions before round 10 (commit 0d09890) chose their one epoch folder from the environment,
/// softdirty-epochs-UID in $XDG_RUNTIME_DIR (where the user's) or else in $TMPDIR, and named their records "BOOT-PID-START".
/// Round 26 read and wrote such records only in this version's folders (/run/user/UID, /tmp): with $TMPDIR=/var/tmp (or a
/// $XDG_RUNTIME_DIR elsewhere) such a version's clears were never seen here, nor this version's there, and a chain of either
/// kept stale pages (silent data loss). Now the folders this command's environment names are read, written and locked too
/// where they exist. The environment and the folders are pointed at test folders.
/// </summary>
[Collection(WorkflowCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class EpochRound27RemoteTests : IDisposable
{
    private readonly Func<string, string?> _savedEnvironment = TrackingEpoch.EnvironmentVariable;
    private readonly EpochFolderScope _folders = new("sd-r27-remote-");
    /// <summary>Stands for $TMPDIR (or $XDG_RUNTIME_DIR) of a session that ran the earlier version.</summary>
    private readonly string _elsewhere;
    /// <summary>The folder such a version made there.</summary>
    private readonly string _earlier;

    public EpochRound27RemoteTests()
    {
        _elsewhere = Path.Combine(_folders.Root, "var-tmp");
        _earlier = Path.Combine(_elsewhere, $"softdirty-epochs-{Geteuid()}");
        Directory.CreateDirectory(_elsewhere, EpochFolderScope.Private);
        Directory.CreateDirectory(_earlier, EpochFolderScope.Private);
    }

    public void Dispose()
    {
        TrackingEpoch.EnvironmentVariable = _savedEnvironment;
        _folders.Dispose();
    }

    private void Environment(string variable) => TrackingEpoch.EnvironmentVariable = n => n == variable ? _elsewhere : null;

    private static string RecordAsBefore(string dir, int pid)
    {
        var epoch = Guid.NewGuid().ToString("N");
        File.WriteAllText(Path.Combine(dir, Legacy(pid)), epoch);
        return epoch;
    }

    [Theory]
    [InlineData("TMPDIR")]
    [InlineData("XDG_RUNTIME_DIR")]
    public void AClearRecordedByAVersionBeforeRound10_InTheFolderTheEnvironmentNames_ChangesTheEpoch(string variable)
    {
        Environment(variable);
        using var self = ProcPageSource.Open(System.Environment.ProcessId);
        RecordAsBefore(_earlier, self.ProcessId); // that version cleared once already
        var armed = TrackingEpoch.Record(self);
        Assert.NotNull(armed);
        RecordAsBefore(_earlier, self.ProcessId); // and again: this version's chain must not trust its bits
        Assert.NotEqual(armed, TrackingEpoch.Current(self));
    }

    [Fact]
    public void AClearByThisVersion_ChangesTheRecordThatVersionReadsThere()
    {
        Environment("TMPDIR");
        using var self = ProcPageSource.Open(System.Environment.ProcessId);
        var before = RecordAsBefore(_earlier, self.ProcessId);
        Assert.NotNull(TrackingEpoch.Record(self));
        Assert.NotEqual(before, File.ReadAllText(Path.Combine(_earlier, Legacy(self.ProcessId))));
    }

    [Fact]
    public void TheLockThatVersionTakesThere_IsTakenToo()
    {
        Environment("TMPDIR");
        using var self = ProcPageSource.Open(System.Environment.ProcessId);
        RecordAsBefore(_earlier, self.ProcessId);
        EpochRound26CompatTests.AssertLockTaken(self, _earlier);
    }

    [Fact]
    public void WhereNoSuchFolderExists_NoneIsMade_AndAFolderOpenToOthersIsNotRead()
    {
        using var self = ProcPageSource.Open(System.Environment.ProcessId);
        var missing = Path.Combine(_folders.Root, "none");
        TrackingEpoch.EnvironmentVariable = n => n == "TMPDIR" ? missing : null;
        var armed = TrackingEpoch.Record(self);
        Assert.Equal(armed, TrackingEpoch.Current(self));
        Assert.False(Directory.Exists(missing));
        // A folder others may write in is no record of the user's: its files could be anyone's.
        Environment("TMPDIR");
        File.SetUnixFileMode(_earlier, EpochFolderScope.Private | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
        armed = TrackingEpoch.Record(self);
        RecordAsBefore(_earlier, self.ProcessId);
        Assert.Equal(armed, TrackingEpoch.Current(self));
    }

    private static string Legacy(int pid) => EpochRound26CompatTests.Legacy(pid);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint Geteuid();
}
