using System;
using System.Globalization;
using System.IO;
using System.Linq;
using SoftDirty.Images;
using SoftDirty.Injection;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Issue 13, round 22 (Parallel): the module's state shared by commands. Records of a pid namespace that is gone are pruned
/// from the host; a lock or state file that cannot be made says the same ErrorId however it fails, in both state folders.
/// </summary>
[Collection(WorkflowCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ParallelRound22Tests : IDisposable
{
    private readonly EpochFolderScope _folders = new("sd-r22p-epoch-");
    private readonly string _stateDir = Path.Combine(Path.GetTempPath(), "sd-r22p-state-" + Guid.NewGuid().ToString("N"));
    private readonly string? _oldStateDir = Environment.GetEnvironmentVariable(WriteTrackingStore.FolderVariable);

    public ParallelRound22Tests() => Environment.SetEnvironmentVariable(WriteTrackingStore.FolderVariable, _stateDir);

    public void Dispose()
    {
        Environment.SetEnvironmentVariable(WriteTrackingStore.FolderVariable, _oldStateDir);
        if (Directory.Exists(_stateDir)) Directory.Delete(_stateDir, true);
        _folders.Dispose();
    }

    [HostFact(HostNeeds.Linux | HostNeeds.AllProcessesVisible)]
    public void TheHostPrunesTheRecordsOfAProcessOfAnotherPidNamespace_OnlyOnceNoProcessStartedThen()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        Assert.NotNull(TrackingEpoch.Record(self));
        var folder = TrackingEpoch.StateDirectories()[0];
        var boot = TrackingEpoch.BootId()!;
        // A namespace that is not this command's (an inode no namespace has: PROC_PID_INIT_INO - 1), and a start time no process has.
        var otherNs = (ulong.Parse(PidNamespace.Initial, CultureInfo.InvariantCulture) - 1).ToString(CultureInfo.InvariantCulture);
        var starts = SystemStartTimes.Read()!;
        ulong gone = starts.Max() + 1_000_000;
        var ours = TrackingEpoch.StartTime(Environment.ProcessId)!;
        var goneRecord = Path.Combine(folder, $"{boot}-{otherNs}.7-{gone}");
        var liveRecord = Path.Combine(folder, $"{boot}-{otherNs}.8-{ours}"); // a process that started when this one did: kept
        foreach (var f in new[] { goneRecord, goneRecord + ".lock", liveRecord, liveRecord + ".lock" }) File.WriteAllText(f, "x");

        Assert.NotNull(TrackingEpoch.Record(self)); // every record prunes its folder

        Assert.False(File.Exists(goneRecord), "the record of a process of another pid namespace that no longer exists was kept");
        Assert.False(File.Exists(goneRecord + ".lock"));
        Assert.True(File.Exists(liveRecord), "a record whose process may still run was pruned");
        Assert.True(File.Exists(liveRecord + ".lock"));
    }

    [HostFact]
    public void TheKernelProbesClearOfThisProcess_StartsANewEpochOfIt()
    {
        // Get-SoftDirtySupport -Refresh probes soft-dirty with clear_refs "4" of this process (every kernel takes it, with or
        // without CONFIG_MEM_SOFT_DIRTY); a soft-dirty watch of this PowerShell in another runspace trusted its epoch across it.
        using var self = ProcPageSource.Open(Environment.ProcessId);
        Assert.NotNull(TrackingEpoch.Record(self));
        var armed = TrackingEpoch.Current(self);
        KernelProbe.Refresh();
        Assert.NotEqual(armed, TrackingEpoch.Current(self));
    }

    [HostFact]
    public void ADirectoryAtTheLocksName_IsUnsafeDestination_AsAFifoIs_InBothStateFolders()
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        Assert.NotNull(TrackingEpoch.Record(self));
        var epochLock = Path.Combine(TrackingEpoch.StateDirectories()[0], TrackingEpoch.FileKey(Environment.ProcessId) + ".lock");
        File.Delete(epochLock);
        Directory.CreateDirectory(epochLock);
        Assert.Equal(EngineError.UnsafeDestination, Assert.Throws<EngineException>(() => TrackingEpoch.Lock(self, default)?.Dispose()).Error);

        Directory.CreateDirectory(_stateDir, EpochFolderScope.Private);
        int pid = Environment.ProcessId;
        Directory.CreateDirectory(Path.Combine(_stateDir, $"{pid}.lock"));
        Assert.Equal(EngineError.UnsafeDestination, Assert.Throws<EngineException>(() => WriteTrackingStore.Lock(pid, default).Dispose()).Error);
    }

    [HostFact]
    public void ADirectoryAtTheStateFilesName_IsUnsafeDestination_AsOneAtTheLocksName()
    {
        Directory.CreateDirectory(_stateDir, EpochFolderScope.Private);
        int pid = Environment.ProcessId;
        Directory.CreateDirectory(Path.Combine(_stateDir, $"{pid}.json"));
        var state = new WriteTrackingState { ProcessId = pid, StartTime = WriteTrackingStore.StartTime(pid), Descriptor = -1, ResetId = Guid.NewGuid() };
        Assert.Equal(EngineError.UnsafeDestination, Assert.Throws<EngineException>(() => WriteTrackingStore.Save(state)).Error);
    }

    [HostFact(HostNeeds.Linux | HostNeeds.Unprivileged)]
    public void AStateFolderThatMayNotBeWritten_IsPermissionDenied_ForTheLockAndTheStateFileAlike()
    {
        Directory.CreateDirectory(_stateDir, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            int pid = Environment.ProcessId;
            Assert.Equal(EngineError.PermissionDenied, Assert.Throws<EngineException>(() => WriteTrackingStore.Lock(pid, default).Dispose()).Error);
            var state = new WriteTrackingState { ProcessId = pid, StartTime = WriteTrackingStore.StartTime(pid), Descriptor = -1, ResetId = Guid.NewGuid() };
            Assert.Equal(EngineError.PermissionDenied, Assert.Throws<EngineException>(() => WriteTrackingStore.Save(state)).Error);
        }
        finally { File.SetUnixFileMode(_stateDir, EpochFolderScope.Private); }
    }
}
