using System;
using System.IO;
using System.Runtime.InteropServices;

namespace SoftDirty.Images;

/// <summary>
/// A directory the module fills and then puts in place: the destination is checked (<see cref="SafeFiles.CheckDestination"/>),
/// the files are written into a fresh private folder next to it (<c>.NAME.partial-GUID</c>, 0700), and
/// <see cref="Commit"/> renames that folder onto the destination in one step. Disposed without a commit, the
/// folder is removed: a failed or cancelled write leaves the destination as it was (a kill -9 leaves only the
/// hidden partial folder, which no command reads).
/// </summary>
internal sealed class PrivateOutput : IDisposable
{
    private bool _committed;

    private PrivateOutput(string destination, string work)
    {
        Destination = destination;
        WorkPath = work;
    }

    /// <summary>The directory that will hold the result.</summary>
    public string Destination { get; }
    /// <summary>The private folder being written.</summary>
    public string WorkPath { get; }

    public static PrivateOutput Begin(string destination, string what)
    {
        destination = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        SafeFiles.CheckDestination(destination, what);
        var parent = Path.GetDirectoryName(destination) ?? "/";
        var work = Path.Combine(parent, $".{Path.GetFileName(destination)}.partial-{Guid.NewGuid():N}");
        SafeFiles.CreateDirectory(work);
        return new PrivateOutput(destination, work);
    }

    /// <summary>A new file in the private folder (0600, exclusive).</summary>
    public FileStream Create(string name) => SafeFiles.CreateNew(Path.Combine(WorkPath, name));

    /// <summary>Where a file of the result will be once committed.</summary>
    public string FinalPath(string name) => Path.Combine(Destination, name);

    /// <summary>Puts the folder in place: rename onto the destination (absent or an empty directory), then fsync.</summary>
    public void Commit()
    {
        SafeFiles.FsyncDirectory(WorkPath);
        // The destination is checked again: rename replaces only an empty directory and never follows a link.
        SafeFiles.CheckDestination(Destination, "The destination");
        if (FileNative.Rename(WorkPath, Destination) != 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw SafeFiles.WriteFailure(Destination, e, $"Moving the finished {WorkPath} to {Destination} failed: {Errno.Describe(e)}");
        }
        _committed = true;
        SafeFiles.FsyncDirectory(Path.GetDirectoryName(Destination) ?? "/");
    }

    public void Dispose()
    {
        if (_committed) return;
        _committed = true;
        try { Directory.Delete(WorkPath, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
