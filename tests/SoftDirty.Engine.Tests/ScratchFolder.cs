using System;
using System.IO;

namespace SoftDirty.Tests;

/// <summary>A new folder for one test class's files (in /dev/shm where there is one), removed with everything in it on Dispose.</summary>
internal sealed class ScratchFolder : IDisposable
{
    public ScratchFolder(string prefix)
    {
        Path = System.IO.Path.Combine(Directory.Exists("/dev/shm") ? "/dev/shm" : System.IO.Path.GetTempPath(), prefix + "-" + Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(Path);
    }

    /// <summary>The folder.</summary>
    public string Path { get; }

    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}
