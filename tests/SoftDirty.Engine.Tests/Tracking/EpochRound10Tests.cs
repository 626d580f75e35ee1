using System;
using System.IO;
using SoftDirty;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Issue 13, tenth attack round: the soft-dirty epoch folder (and the soft-dirty lock in it) was chosen from
/// $XDG_RUNTIME_DIR, else the temp folder ($TMPDIR). Two sessions of one user with different environments (a login and a
/// cron job, sudo, a service) kept their epochs apart: a clear by one was not seen by the other, whose image chain or
/// watch then trusted soft-dirty bits that clear had taken (silent data loss), and their locks did not exclude each other.
/// </summary>
[Collection(WorkflowCollection.Name)]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class EpochRound10Tests : IDisposable
{
    private readonly string _runtime = Path.Combine(Path.GetTempPath(), "sd-r10-runtime-" + Guid.NewGuid().ToString("N"));
    private readonly string _tmp = Path.Combine(Path.GetTempPath(), "sd-r10-tmp-" + Guid.NewGuid().ToString("N"));
    private readonly string? _savedRuntime = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
    private readonly string? _savedTmp = Environment.GetEnvironmentVariable("TMPDIR");

    public EpochRound10Tests()
    {
        foreach (var d in new[] { _runtime, _tmp })
            Directory.CreateDirectory(d, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("XDG_RUNTIME_DIR", _savedRuntime);
        Environment.SetEnvironmentVariable("TMPDIR", _savedTmp);
        foreach (var d in new[] { _runtime, _tmp })
            if (Directory.Exists(d)) Directory.Delete(d, recursive: true);
    }

    /// <summary>Records an epoch (a soft-dirty clear about to be made) with the environment <paramref name="runtime"/>/<paramref name="tmp"/>.</summary>
    private static string? RecordWith(ProcPageSource source, string? runtime, string? tmp)
    {
        Environment.SetEnvironmentVariable("XDG_RUNTIME_DIR", runtime);
        Environment.SetEnvironmentVariable("TMPDIR", tmp);
        return TrackingEpoch.Record(source);
    }

    [Theory]
    [InlineData(true)]  // a login session ($XDG_RUNTIME_DIR) and a cron job without it
    [InlineData(false)] // two sessions with different $TMPDIR and no $XDG_RUNTIME_DIR
    public void AClearInASessionWithAnotherEnvironment_IsSeenByTheChainsSession(bool runtimeDir)
    {
        using var self = ProcPageSource.Open(Environment.ProcessId);
        string? chainRuntime = runtimeDir ? _runtime : null, chainTmp = runtimeDir ? _savedTmp : _tmp + "/";
        var armed = RecordWith(self, chainRuntime, chainTmp); // the chain's parent armed soft-dirty here
        Assert.NotNull(armed);
        var cleared = RecordWith(self, null, _savedTmp); // Clear-SoftDirty (a watch, a migration) in the other session
        Assert.NotNull(cleared);
        Environment.SetEnvironmentVariable("XDG_RUNTIME_DIR", chainRuntime);
        Environment.SetEnvironmentVariable("TMPDIR", chainTmp);
        Assert.Equal(cleared, TrackingEpoch.Current(self)); // the chain's next increment must not trust its parent's epoch
        Assert.Equal(TrackingEpoch.StateDirectory(), WithEnvironment(null, null, TrackingEpoch.StateDirectory));
    }

    private static T WithEnvironment<T>(string? runtime, string? tmp, Func<T> f)
    {
        string? r = Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR"), t = Environment.GetEnvironmentVariable("TMPDIR");
        Environment.SetEnvironmentVariable("XDG_RUNTIME_DIR", runtime);
        Environment.SetEnvironmentVariable("TMPDIR", tmp);
        try { return f(); }
        finally
        {
            Environment.SetEnvironmentVariable("XDG_RUNTIME_DIR", r);
            Environment.SetEnvironmentVariable("TMPDIR", t);
        }
    }
}
