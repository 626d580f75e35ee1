using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using SoftDirty.Images;

namespace SoftDirty.Tests.Tracking;

/// <summary>A process of another user (nobody) for tests run as root: started with setpriv, ended on dispose.</summary>
public sealed class RootWithOtherUser : IDisposable
{
    /// <summary>The user the process runs as (nobody).</summary>
    public const uint Uid = 65534;

    private readonly Process _process;

    public RootWithOtherUser()
    {
        _process = Process.Start("setpriv", $"--reuid={Uid} --regid={Uid} --clear-groups sleep 600");
        var until = DateTime.UtcNow + TimeSpan.FromMinutes(1); // hang guard only
        while (!(FileNative.Stat($"/proc/{_process.Id}", out _) is { } st && st.Uid == Uid && Comm() == "sleep"))
        {
            if (DateTime.UtcNow > until) throw new TimeoutException("setpriv did not start sleep as another user");
            Thread.Sleep(10);
        }
    }

    public int Id => _process.Id;

    private string? Comm()
    {
        try { return File.ReadAllText($"/proc/{_process.Id}/comm").Trim(); }
        catch (IOException) { return null; }
    }

    public void Dispose()
    {
        try { _process.Kill(); _process.WaitForExit(); }
        catch (InvalidOperationException) { }
        _process.Dispose();
    }
}
