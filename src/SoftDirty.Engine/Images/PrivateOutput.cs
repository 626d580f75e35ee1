using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace SoftDirty.Images;

/// <summary>
/// A directory the module fills and then puts in place. The destination's parent is opened and checked on its
/// descriptor (<see cref="SafeDirectory"/>), the destination entry is checked there (<see cref="SafeFiles.CheckEntry"/>),
/// the files are written into a fresh private folder made in that parent (<c>.NAME.partial-GUID</c>, 0700) relative to
/// the folder's descriptor, and <see cref="Commit"/> renames it onto the destination in one step (renameat2, with
/// RENAME_NOREPLACE where the destination was absent). Disposed without a commit, the folder is removed: a failed
/// or cancelled write leaves the destination as it was (a kill -9 leaves only the hidden partial folder, which no
/// command reads).
/// </summary>
internal sealed class PrivateOutput : IDisposable
{
    private readonly SafeDirectory _parent;
    private readonly SafeDirectory _work;
    private readonly string _name, _workName, _what;
    private readonly List<string> _created = new();
    // The folders above the destination that Begin created (outermost first): taken back with a failed or cancelled write.
    private readonly List<string> _madeFolders;
    private bool _committed;
    // Set where the result was put in place and taken away again (a failed fsync of the parent): Dispose then takes back the
    // folders above the destination too, as after any other failure.
    private bool _withdrawn;

    private PrivateOutput(string destination, SafeDirectory parent, string name, SafeDirectory work, string workName, string what, List<string> madeFolders)
    {
        _madeFolders = madeFolders;
        _parent = parent;
        _name = name;
        _work = work;
        _workName = workName;
        _what = what;
        Destination = destination;
        WorkPath = Path.Combine(Path.GetDirectoryName(destination) ?? "/", workName);
    }

    /// <summary>The directory that will hold the result.</summary>
    public string Destination { get; }
    /// <summary>The private folder being written.</summary>
    public string WorkPath { get; }

    public static PrivateOutput Begin(string destination, string what)
    {
        destination = Path.TrimEndingDirectorySeparator(Path.GetFullPath(destination));
        SafeFiles.RefuseInsideImage(destination, what);
        var made = new List<string>();
        var parent = SafeDirectory.OpenParent(destination, what, create: true, out var name, made);
        try
        {
            SafeFiles.CheckEntry(parent, name, what);
            var workName = WorkName(name);
            var work = parent.CreateDirectory(workName);
            return new PrivateOutput(destination, parent, name, work, workName, what, made);
        }
        catch
        {
            parent.Dispose();
            SafeDirectory.RemoveMade(made, what);
            throw;
        }
    }

    /// <summary>
    /// <c>.NAME.partial-GUID</c>, with NAME cut so that the whole fits in NAME_MAX (<see cref="SafeFiles.HiddenName"/>): every
    /// destination name the filesystem takes has a private folder it takes too.
    /// </summary>
    internal static string WorkName(string name) => SafeFiles.HiddenName(name, $".partial-{Guid.NewGuid():N}");

    /// <summary>A new file in the private folder (0600, exclusive, relative to the folder's descriptor).</summary>
    public FileStream Create(string name)
    {
        var file = _work.CreateFile(name);
        _created.Add(name);
        return file;
    }

    /// <summary>Where the result will really be, links on the way to its folder resolved (what a parent link is relative to).</summary>
    public string RealDestination => Path.Combine(_parent.RealPath(), _name);

    /// <summary>Where a file of the result will be once committed.</summary>
    public string FinalPath(string name) => Path.Combine(Destination, name);

    /// <summary>The step (<see cref="SoftDirty.Injection.InjectionSteps"/>) that ends when the destination was checked the last time, just before the rename.</summary>
    internal const string CommitStep = "destination checked (commit)";

    /// <summary>
    /// Puts the folder in place: fsync of the folder (its files were fsynced as they were closed), rename onto the destination
    /// (absent, or an empty directory of the caller), then fsync of the parent; a failed fsync is a failure of the command, the
    /// result removed.
    /// </summary>
    public void Commit()
    {
        _work.Fsync();
        // Checked again: a rename replaces only an empty directory and never follows a link; where the destination
        // is absent, RENAME_NOREPLACE makes one that appeared meanwhile (a concurrent save) fail rather than be replaced.
        bool exists = SafeFiles.CheckEntry(_parent, _name, _what);
        // The empty folder's mode, to make it again should the result be taken away (below).
        var emptyMode = exists && _parent.Lstat(_name, out _) is { } was ? (UnixFileMode)was.Permissions : ImageFormat.DirectoryMode;
        SoftDirty.Injection.InjectionSteps.Mark(CommitStep);
        int e = _parent.RenameTo(_workName, _parent, _name, replace: exists);
        if (e == Errno.EINVAL && !exists) e = _parent.RenameTo(_workName, _parent, _name, replace: true); // a filesystem without RENAME_NOREPLACE
        if (e != 0)
        {
            // Changed between the check and the rename (by another process): said as the check says it now, a link or another
            // user's folder UnsafeDestination, a file or a non-empty folder ImageExists; never a failed write ("Not a directory").
            if (e is Errno.EEXIST or FileNative.ENOTEMPTY or FileNative.ENOTDIR) SafeFiles.CheckEntry(_parent, _name, _what);
            if (e is Errno.EEXIST or FileNative.ENOTEMPTY)
                throw new EngineException(EngineError.ImageExists, $"{_what} {Destination} was created meanwhile (another save or restore into the same place?); nothing was replaced.", Destination, e);
            // Taken away now, so that the error can say what could not be: where the folder refuses the rename (append-only or
            // immutable, read-only since), it mostly refuses the removal too, and a hidden folder that no command reads was
            // left without a word (round 27).
            string left = Abandon();
            throw SafeFiles.WriteFailure(Destination, e, $"Moving the finished {WorkPath} to {Destination} failed: {Errno.Describe(e)}{left}");
        }
        _committed = true;
        // The rename is on disk only once the folder that holds it is synced: where that fails (EIO, ENOSPC), success would be
        // said of an image a crash may take away, so it is taken away now, its manifest first (round 25).
        if (_parent.SyncError() is int f and not 0)
        {
            // The empty folder the result replaced is made again (with its mode): a failed command leaves the destination as it
            // was (round 26; it was left absent). Not synced: the fsync that failed would be the one to make it durable.
            bool back = TakeBack(exists, emptyMode);
            throw SafeFiles.WriteFailure(Destination, f,
                $"{_what} {Destination} was put in place, but fsync of its folder {_parent.Path} said {Errno.Describe(f)}: it might not survive a crash, so it was removed again{(back ? "" : " (the empty folder that was there could not be made again)")}. Check the disk and run the command again.");
        }
        RequireNamedByDestination(exists, emptyMode);
    }

    /// <summary>
    /// Takes away the result just put in place, as a failed fsync of the parent does (<see cref="Commit"/>), and says whether
    /// the empty folder it replaced was made again.
    /// </summary>
    private bool TakeBack(bool existed, UnixFileMode emptyMode)
    {
        _ = Withdraw(_name);
        _withdrawn = !existed;
        return !existed || _parent.MakeDirectory(_name, emptyMode);
    }

    /// <summary>
    /// Removes the files made (the last made, a manifest, first) and the folder, named <paramref name="folder"/> in the parent;
    /// 0, or the errno of the folder's removal where it is still there.
    /// </summary>
    private int Withdraw(string folder)
    {
        for (int i = _created.Count - 1; i >= 0; i--)
            if (_work.Remove(_created[i])) _created.RemoveAt(i);
        return _parent.Remove(folder, directory: true) ? 0 : System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
    }

    /// <summary>
    /// Takes the uncommitted folder away at once (and the folders <see cref="Begin"/> made, as <see cref="Dispose"/> does): "",
    /// or a sentence for an error message that names what stayed.
    /// </summary>
    private string Abandon()
    {
        _committed = true;
        int errno = Withdraw(_workName);
        if (errno == 0)
        {
            SafeDirectory.RemoveMade(_madeFolders, _what);
            return "";
        }
        const int Named = 3;
        var held = _created.Count == 0 ? "empty" : $"holding {string.Join(", ", _created.Take(Named))}{(_created.Count > Named ? $" and {_created.Count - Named} more file(s)" : "")}";
        return $". The unfinished folder {WorkPath} ({held}) could not be removed ({Errno.Describe(errno)}): remove it once the folder {_parent.Path} lets you.";
    }

    /// <summary>
    /// After a failure of the write (before <see cref="Commit"/>): takes the folder away at once, as <see cref="Dispose"/>
    /// would, and returns <paramref name="error"/>; where the folder stays (a disk gone read-only, a folder made append-only),
    /// the error with a sentence that names it. Such a folder stayed without a word: no command reads it, and it can hold a
    /// process's memory (round 28).
    /// </summary>
    public EngineException Abandoned(EngineException error)
    {
        if (_committed) return error;
        string left = Abandon();
        return left.Length == 0 ? error : new EngineException(error.Error, error.Message.TrimEnd('.') + left, error.Target, error.Errno, error);
    }

    /// <summary>
    /// Throws UnsafeDestination where <see cref="Destination"/>, as every later command reads it (by path, links followed),
    /// no longer names the folder just put in place: a folder on the way was moved, or replaced by a link, while the
    /// command ran. The rename is relative to the folder's descriptor, so the result lies in the moved folder; the command
    /// then described the path, and returned what the link showed (another image, as a successful save) or said
    /// ImageIncomplete of a whole image. The result is kept where it is, and the error names it.
    /// </summary>
    private void RequireNamedByDestination(bool existed, UnixFileMode emptyMode)
    {
        // Opened as readers open it (in pieces, so past PATH_MAX too; the caller's and root's links followed).
        SafeDirectory? there;
        try { there = SafeDirectory.Open(Destination, _what, Destination, create: false); }
        // What the path names now (a file, a link of another user's, a loop) is not the folder: the result stays where it went.
        catch (EngineException ex) when (ex.Error is EngineError.InvalidArgument or EngineError.UnsafeDestination) { there = null; }
        // Any other failure of this check (out of descriptors or memory, EIO, EACCES) left the result in place under a command
        // that failed (rounds 28 and 29: a script that tried again met ImageExists, a migration's receiver said an error of the
        // image it kept): taken away, so that the failed command leaves the destination as it was, as after a failed fsync.
        catch (EngineException ex)
        {
            bool back = TakeBack(existed, emptyMode);
            throw new EngineException(ex.Error,
                $"{ex.Message} {_what} {Destination} was put in place, but this check of it could not be made, so it was removed again{(back ? "" : " (the empty folder that was there could not be made again)")}.",
                Destination, ex.Errno, ex);
        }
        using (there)
        {
            if (there is not null && FileNative.Fstat(there.Fd, out _) is { } t && FileNative.Fstat(_work.Fd, out _) is { } made
                && t.Inode == made.Inode && t.Device == made.Device) return;
        }
        var real = RealDestination;
        throw new EngineException(EngineError.UnsafeDestination,
            $"{_what} was put in place as {real}, but {Destination} names {(there is null ? "nothing" : "another folder")} now: a folder on the way was moved or replaced (by a link) while the command ran. The result is in {real}.", Destination);
    }

    /// <summary>
    /// Without a commit: removes the private folder, then the folders above the destination that <see cref="Begin"/> made (while
    /// empty); those folders too after a commit that was taken back (<see cref="Commit"/>'s failed fsync).
    /// </summary>
    public void Dispose()
    {
        bool abandoned = !_committed;
        if (abandoned)
        {
            _committed = true;
            _ = Withdraw(_workName);
        }
        _work.Dispose();
        _parent.Dispose();
        if (abandoned || _withdrawn) SafeDirectory.RemoveMade(_madeFolders, _what);
    }
}
