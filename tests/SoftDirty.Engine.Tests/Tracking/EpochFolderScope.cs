using System;
using System.IO;
using SoftDirty.Tracking;

namespace SoftDirty.Tests.Tracking;

/// <summary>
/// Points the soft-dirty epoch folders (<see cref="TrackingEpoch.RuntimeRoot"/>, <see cref="TrackingEpoch.SharedTempFolder"/>)
/// at fresh 0700 test folders under <see cref="Root"/> (run-user, tmp) and puts them back on dispose.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed class EpochFolderScope : IDisposable
{
    public const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private readonly string _savedRuntimeRoot = TrackingEpoch.RuntimeRoot, _savedTmp = TrackingEpoch.SharedTempFolder;

    public EpochFolderScope(string prefix)
    {
        Root = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N"));
        Runtime = Path.Combine(Root, "run-user");
        Tmp = Path.Combine(Root, "tmp");
        foreach (var d in new[] { Root, Runtime, Tmp }) Directory.CreateDirectory(d, Private);
        TrackingEpoch.RuntimeRoot = Runtime;
        TrackingEpoch.SharedTempFolder = Tmp;
    }

    /// <summary>The folder holding both.</summary>
    public string Root { get; }
    /// <summary>Stands for /run/user.</summary>
    public string Runtime { get; }
    /// <summary>Stands for /tmp.</summary>
    public string Tmp { get; }

    public void Dispose()
    {
        TrackingEpoch.RuntimeRoot = _savedRuntimeRoot;
        TrackingEpoch.SharedTempFolder = _savedTmp;
        if (Directory.Exists(Root)) Directory.Delete(Root, recursive: true);
    }
}
