using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace SoftDirty.Images;

/// <summary>
/// An opened, checked directory: every file and folder the module writes is made relative to one of these
/// (openat/mkdirat/renameat2/unlinkat on its descriptor), never by path, so nothing can be swapped between
/// the check and the use. <see cref="Open"/> walks a path from <c>/</c> one component at a time with
/// O_PATH|O_DIRECTORY|O_NOFOLLOW and checks each opened directory on its descriptor (fstat): it must belong to
/// the caller or root, and one the group or others may write to must have the sticky bit (as /tmp has).
/// A link on the way is followed only where it belongs to the caller or root (it lies in a checked folder).
/// </summary>
internal sealed class SafeDirectory : IDisposable
{
    private readonly SafeFileHandle _handle;

    private SafeDirectory(SafeFileHandle handle, string path)
    {
        _handle = handle;
        Path = path;
    }

    /// <summary>The directory's path as it was reached (for messages).</summary>
    public string Path { get; }

    /// <summary>The descriptor (O_PATH) for the *at calls.</summary>
    public int Fd => (int)_handle.DangerousGetHandle();

    private const int DirectoryFlags = FileNative.O_PATH | FileNative.O_CLOEXEC;
    private static int OpenDirFlags => DirectoryFlags | FileNative.O_DIRECTORY | FileNative.O_NOFOLLOW;

    /// <summary>
    /// Opens the directory <paramref name="path"/> (absolute or relative to the current directory) checking every
    /// folder from <c>/</c> down on its descriptor; missing folders are created 0700 where <paramref name="create"/>,
    /// else the result is null. <paramref name="what"/> and <paramref name="target"/> name the destination in errors.
    /// The folders it creates are added to <paramref name="made"/> (outermost first), so that a command that fails
    /// can take them back (<see cref="RemoveMade"/>); where the walk itself fails, it takes back what it made.
    /// </summary>
    public static SafeDirectory? Open(string path, string what, string target, bool create, List<string>? made = null)
    {
        var mine = new List<string>();
        try
        {
            var opened = Walk(path, what, target, create, mine);
            made?.AddRange(mine);
            return opened;
        }
        catch
        {
            RemoveMade(mine, what);
            throw;
        }
    }

    /// <summary>
    /// Removes the folders a walk made (<paramref name="made"/>, outermost first), innermost first, each only while it is
    /// empty and where its checked parent still holds it (rmdir relative to the parent's descriptor); stops at the first
    /// that stays (something was put in it meanwhile: it and the folders above it are kept). Never throws.
    /// </summary>
    public static void RemoveMade(IReadOnlyList<string> made, string what)
    {
        for (int i = made.Count - 1; i >= 0; i--)
        {
            var folder = made[i];
            try
            {
                using var parent = Walk(System.IO.Path.GetDirectoryName(folder) ?? "/", what, folder, create: false, made: null);
                if (parent is null || !parent.Remove(System.IO.Path.GetFileName(folder), directory: true)) return;
            }
            catch (EngineException) { return; }
        }
    }

    private static SafeDirectory? Walk(string path, string what, string target, bool create, List<string>? made)
    {
        var full = System.IO.Path.GetFullPath(path);
        var stack = new Stack<SafeDirectory>();
        var pending = new LinkedList<string>(Split(full));
        int links = 0;
        string? justMade = null; // the folder this walk just made: its mode is set exactly once it is opened
        try
        {
            stack.Push(OpenRoot(what, target));
            while (pending.First is { } node)
            {
                pending.RemoveFirst();
                var name = node.Value;
                if (name == ".") continue;
                if (name == "..")
                {
                    if (stack.Count > 1) stack.Pop().Dispose();
                    continue;
                }
                var here = stack.Peek();
                var childPath = here.Path == "/" ? "/" + name : here.Path + "/" + name;
                int fd = FileNative.OpenAt(here.Fd, name, OpenDirFlags, 0);
                if (fd < 0)
                {
                    int e = Marshal.GetLastPInvokeError();
                    if (e == Errno.ENOENT)
                    {
                        if (!create) return null;
                        if (FileNative.MkdirAt(here.Fd, name, (uint)ImageFormat.DirectoryMode) == 0)
                        {
                            justMade = childPath;
                            // Synced into its parent: what is put in place below it survives a crash only with it. Where that
                            // fails, it is removed again (round 25).
                            if (here.SyncError() is int f and not 0)
                            {
                                FileNative.UnlinkAt(here.Fd, name, FileNative.AT_REMOVEDIR);
                                justMade = null;
                                throw SafeFiles.WriteFailure(childPath, f, $"Creating the directory {childPath} failed: fsync of {here.Path} said {Errno.Describe(f)}; it was removed again.");
                            }
                            made?.Add(childPath);
                        }
                        else if (Marshal.GetLastPInvokeError() is int me && me != Errno.EEXIST)
                            throw SafeFiles.WriteFailure(childPath, me, $"Creating the directory {childPath} failed: {Errno.Describe(me)}");
                        pending.AddFirst(name); // open (and check) what is there now
                        continue;
                    }
                    if (e is Errno.ELOOP or FileNative.ENOTDIR)
                    {
                        var link = FileNative.LstatAt(here.Fd, name, out _);
                        if (link is not { Type: FileNative.S_IFLNK } l)
                            throw new EngineException(EngineError.InvalidArgument, $"{what} {target}: {childPath} is a file, not a directory.", target, FileNative.ENOTDIR);
                        if (l.Uid != FileNative.Geteuid() && l.Uid != 0)
                            throw new EngineException(EngineError.UnsafeDestination,
                                $"{what} {target}: {childPath} is a symbolic link of user {l.Uid}, not yours ({FileNative.Geteuid()}) or root's; the module does not follow another user's links.", target);
                        if (++links > FileNative.MaxSymlinks)
                            throw new EngineException(EngineError.InvalidArgument, $"{what} {target}: too many symbolic links on the way (a loop?).", target, Errno.ELOOP);
                        var to = ReadLink(here.Fd, name, childPath);
                        if (to.StartsWith('/'))
                            while (stack.Count > 1) stack.Pop().Dispose();
                        var parts = Split(to);
                        for (int i = parts.Count - 1; i >= 0; i--) pending.AddFirst(parts[i]);
                        continue;
                    }
                    throw SafeFiles.WriteFailure(childPath, e, $"{what} {target}: opening {childPath} failed: {Errno.Describe(e)}");
                }
                var dir = new SafeDirectory(new SafeFileHandle(fd, ownsHandle: true), childPath);
                stack.Push(dir);
                dir.Check(what, target);
                if (justMade == childPath) { dir.SetMode(ImageFormat.DirectoryMode); justMade = null; }
            }
            var result = stack.Pop();
            return result;
        }
        finally
        {
            while (stack.Count > 0) stack.Pop().Dispose();
        }
    }

    /// <summary>Opens the directory that holds <paramref name="path"/> (created where missing) and gives the last component's name.</summary>
    public static SafeDirectory OpenParent(string path, string what, bool create, out string name, List<string>? made = null)
    {
        var full = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(path));
        name = System.IO.Path.GetFileName(full);
        var parent = System.IO.Path.GetDirectoryName(full);
        if (parent is null || name.Length == 0)
            throw new EngineException(EngineError.InvalidArgument, $"{what} {path}: the root directory cannot be one.", path);
        return Open(parent, what, full, create, made)
            ?? throw new EngineException(EngineError.InvalidArgument, $"{what} {full}: the folder {parent} does not exist.", full, Errno.ENOENT);
    }

    private static SafeDirectory OpenRoot(string what, string target)
    {
        int fd = FileNative.Open("/", DirectoryFlags | FileNative.O_DIRECTORY, 0);
        if (fd < 0) throw SafeFiles.WriteFailure("/", Marshal.GetLastPInvokeError(), "Opening / failed.");
        var root = new SafeDirectory(new SafeFileHandle(fd, ownsHandle: true), "/");
        root.Check(what, target);
        return root;
    }

    private static List<string> Split(string path) => new(path.Split('/', StringSplitOptions.RemoveEmptyEntries));

    private static unsafe string ReadLink(int dirfd, string name, string path)
    {
        const int Max = 4096;
        var buffer = stackalloc byte[Max];
        nint n = FileNative.ReadLinkAt(dirfd, name, buffer, Max);
        if (n < 0) { int e = Marshal.GetLastPInvokeError(); throw SafeFiles.WriteFailure(path, e, $"Reading the link {path} failed: {Errno.Describe(e)}"); }
        return Encoding.UTF8.GetString(buffer, (int)n);
    }

    /// <summary>The rule, on the descriptor: the caller's or root's, and not open to writes by group or others unless sticky.</summary>
    private void Check(string what, string target)
    {
        var st = FileNative.Fstat(Fd, out int errno) ?? throw SafeFiles.WriteFailure(Path, errno, $"{what} {target}: fstat of {Path} failed: {Errno.Describe(errno)}");
        uint me = FileNative.Geteuid();
        if (st.Uid != me && st.Uid != 0 && IsUnmappedOwner(st.Uid))
            throw new EngineException(EngineError.UnsafeDestination,
                $"{what} {target} lies in {Path}, which belongs to a user this user namespace does not map (it shows as {st.Uid}, the overflow uid): the host's root shows so, and so does every other user of the host, and the module cannot tell which, so it writes nothing there. Run the command outside the user namespace, or in a folder whose every parent the namespace's users own (a container's own root file system).", target);
        if (st.Uid != me && st.Uid != 0)
            throw new EngineException(EngineError.UnsafeDestination,
                $"{what} {target} lies in {Path}, which belongs to user {st.Uid}, not to you ({me}) or root: that user could replace what the module writes there with a link before it is put in place. Choose a folder of your own.", target);
        if ((st.Permissions & (FileNative.S_IWGRP | FileNative.S_IWOTH)) != 0 && (st.Permissions & FileNative.S_ISVTX) == 0)
        {
            // With an ACL the group bits are its mask: a user or group the ACL names may write there too.
            var who = (st.Permissions & FileNative.S_IWOTH) != 0 ? "every user may write to" : "its group may write to (or a user or group its ACL names)";
            throw new EngineException(EngineError.UnsafeDestination,
                $"{what} {target} lies in {Path}, which {who} and which has no sticky bit: another user could replace what the module writes there before it is put in place. Choose a folder of your own (or one with the sticky bit, as /tmp has).", target);
        }
    }

    /// <summary>The uid the kernel shows for an owner the caller's user namespace does not map (/proc/sys/kernel/overflowuid).</summary>
    private const string OverflowUidFile = "/proc/sys/kernel/overflowuid";

    /// <summary>The identity map of the initial user namespace, as /proc/self/uid_map writes it (first, lower, count).</summary>
    private static readonly string[] InitialUidMap = ["0", "0", "4294967295"];

    /// <summary>
    /// Whether <paramref name="uid"/> is the overflow uid while the caller runs in a user namespace other than the initial one:
    /// an owner the namespace does not map (the host's root, or any other user of the host).
    /// </summary>
    private static bool IsUnmappedOwner(uint uid)
    {
        try
        {
            if (!uint.TryParse(System.IO.File.ReadAllText(OverflowUidFile).Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out uint overflow) || uid != overflow)
                return false;
            var map = System.IO.File.ReadAllText("/proc/self/uid_map").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return !map.AsSpan().SequenceEqual(InitialUidMap);
        }
        catch (Exception e) when (e is System.IO.IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>lstat of an entry (null where absent; <paramref name="errno"/> says why).</summary>
    public FileNative.PathStatus? Lstat(string name, out int errno) => FileNative.LstatAt(Fd, name, out errno);

    /// <summary>Creates the file <paramref name="name"/> here: new (O_CREAT|O_EXCL|O_NOFOLLOW), mode exactly 0600 whatever the umask.</summary>
    public FileStream CreateFile(string name)
    {
        var path = Combine(name);
        int fd = FileNative.OpenAt(Fd, name, FileNative.O_WRONLY | FileNative.O_CREAT | FileNative.O_EXCL | FileNative.O_NOFOLLOW | FileNative.O_CLOEXEC, (uint)ImageFormat.FileMode);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw SafeFiles.WriteFailure(path, e, $"Creating {path} failed: {Errno.Describe(e)}");
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (FileNative.Fchmod(fd, (uint)ImageFormat.FileMode) != 0)
        {
            int e = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw SafeFiles.WriteFailure(path, e, $"Setting the mode of {path} failed: {Errno.Describe(e)}");
        }
        return new SizeLimitedFileStream(handle, path);
    }

    /// <summary>Creates the directory <paramref name="name"/> here (it must not exist), mode exactly 0700, and opens it.</summary>
    public SafeDirectory CreateDirectory(string name)
    {
        var path = Combine(name);
        if (FileNative.MkdirAt(Fd, name, (uint)ImageFormat.DirectoryMode) != 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw SafeFiles.WriteFailure(path, e, $"Creating the directory {path} failed: {Errno.Describe(e)}");
        }
        var dir = OpenOwnDirectory(name) ?? throw SafeFiles.WriteFailure(path, Errno.ENOENT, $"{path} vanished after it was created.");
        try { dir.SetMode(ImageFormat.DirectoryMode); }
        catch
        {
            dir.Dispose();
            throw;
        }
        return dir;
    }

    /// <summary>Makes the directory <paramref name="name"/> here with exactly <paramref name="mode"/> (the umask aside); false where that failed.</summary>
    public bool MakeDirectory(string name, UnixFileMode mode)
    {
        if (FileNative.MkdirAt(Fd, name, (uint)ImageFormat.DirectoryMode) != 0) return false;
        try
        {
            using var dir = OpenOwnDirectory(name);
            dir?.SetMode(mode);
            return dir is not null;
        }
        catch (EngineException) { return false; }
    }

    /// <summary>
    /// Sets this directory's mode exactly (the umask may have taken away the owner's own rights: umask 0777 makes
    /// 0000). chmod through /proc/self/fd reaches exactly the opened inode (fchmod refuses an O_PATH descriptor).
    /// </summary>
    private void SetMode(UnixFileMode mode)
    {
        if (FileNative.Chmod($"/proc/self/fd/{Fd}", (uint)mode) != 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw SafeFiles.WriteFailure(Path, e, $"Setting the mode of {Path} failed: {Errno.Describe(e)}");
        }
    }

    /// <summary>Opens the subdirectory <paramref name="name"/> (no link followed), which must be the caller's; null where absent.</summary>
    public SafeDirectory? OpenOwnDirectory(string name)
    {
        var path = Combine(name);
        int fd = FileNative.OpenAt(Fd, name, OpenDirFlags, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            if (e == Errno.ENOENT) return null;
            if (e is Errno.ELOOP or FileNative.ENOTDIR)
                throw new EngineException(EngineError.UnsafeDestination, $"{path} is a symbolic link or not a directory; the module does not write through links.", path, e);
            throw SafeFiles.WriteFailure(path, e, $"Opening {path} failed: {Errno.Describe(e)}");
        }
        var dir = new SafeDirectory(new SafeFileHandle(fd, ownsHandle: true), path);
        if (FileNative.Fstat(fd, out _) is not { } st || st.Uid != FileNative.Geteuid())
        {
            dir.Dispose();
            throw new EngineException(EngineError.UnsafeDestination, $"{path} belongs to another user, not to you ({FileNative.Geteuid()}); the module writes only into directories of its caller.", path);
        }
        return dir;
    }

    /// <summary>
    /// Opens the subdirectory <paramref name="name"/> (no link followed) where it is a private folder of <paramref name="owner"/>:
    /// theirs, and closed to group and others (root acting for another user, in that user's folder). Null where absent,
    /// not a directory, a link, or not so; ResourceLimit where this process is out of descriptors or memory (nothing is known
    /// of it then: read as absent, root's soft-dirty record for the owner went unwritten and unread, round 28).
    /// </summary>
    public SafeDirectory? OpenPrivateDirectoryOf(string name, uint owner)
    {
        int fd = FileNative.OpenAt(Fd, name, OpenDirFlags, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            if (Errno.IsResourceLimit(e))
                throw ResourceLimitError.For($"Opening {Combine(name)} failed", e, "Nothing is known of what it holds", Combine(name));
            return null;
        }
        var dir = new SafeDirectory(new SafeFileHandle(fd, ownsHandle: true), Combine(name));
        const uint GroupOrOther = 0x3F; // 077
        if (FileNative.Fstat(fd, out _) is { } st && st.Uid == owner && (st.Permissions & GroupOrOther) == 0) return dir;
        dir.Dispose();
        return null;
    }

    /// <summary>Whether the directory has any entry (listed through /proc/self/fd, so it is this very directory).</summary>
    public bool HasEntries()
    {
        int fd = FileNative.OpenAt(Fd, ".", FileNative.O_RDONLY | FileNative.O_DIRECTORY | FileNative.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw SafeFiles.WriteFailure(Path, e, $"Listing {Path} failed: {Errno.Describe(e)}");
        }
        try
        {
            using var entries = Directory.EnumerateFileSystemEntries($"/proc/self/fd/{fd}").GetEnumerator();
            return entries.MoveNext();
        }
        catch (UnauthorizedAccessException ex) { throw new EngineException(EngineError.PermissionDenied, $"Listing {Path}: {ex.Message}", Path, Errno.EACCES, ex); }
        // getdents failed (EIO of the disk): it reached the user as System.IO.IOException (round 25); .NET's HResult is the errno.
        catch (IOException ex) when (ex is not FileNotFoundException)
        {
            int e = ex.HResult is > 0 and < 4096 ? ex.HResult : Errno.EIO;
            throw SafeFiles.WriteFailure(Path, e, $"Listing {Path} failed: {ex.Message}");
        }
        finally { FileNative.Close(fd); }
    }

    /// <summary>
    /// Renames <paramref name="from"/> (here) to <paramref name="to"/> in <paramref name="destination"/>; with
    /// <paramref name="replace"/> false it fails where <paramref name="to"/> exists (RENAME_NOREPLACE). Returns the errno, 0 on success.
    /// </summary>
    public int RenameTo(string from, SafeDirectory destination, string to, bool replace)
    {
        uint flags = replace ? 0u : FileNative.RENAME_NOREPLACE;
        if (FileNative.RenameAt2(Fd, from, destination.Fd, to, flags) == 0) return 0;
        int e = Marshal.GetLastPInvokeError();
        return e;
    }

    /// <summary>Removes the file (or, with <paramref name="directory"/>, the empty directory) <paramref name="name"/>; false where that failed.</summary>
    public bool Remove(string name, bool directory = false) => FileNative.UnlinkAt(Fd, name, directory ? FileNative.AT_REMOVEDIR : 0) == 0;

    /// <summary>
    /// fsync of the directory, so that the entries made in it (files, folders, a rename) are on disk; a failure (EIO, ENOSPC:
    /// the kernel reports a writeback error once) is a write failure (<see cref="SafeFiles.WriteFailure"/>). It was ignored,
    /// so a save whose folder never reached the disk said success (round 25).
    /// </summary>
    public void Fsync()
    {
        int e = SyncError();
        if (e != 0) throw SafeFiles.WriteFailure(Path, e, $"fsync of the folder {Path} failed: {Errno.Describe(e)}; what was made in it may not survive a crash.");
    }

    /// <summary>
    /// fsync of the directory: 0, or the errno. A folder this user may not read (mode -wx) cannot be opened for it and gives
    /// 0: its entries are made but cannot be synced (README, Security).
    /// </summary>
    public int SyncError()
    {
        int fd = FileNative.OpenAt(Fd, ".", FileNative.O_RDONLY | FileNative.O_DIRECTORY | FileNative.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            return e is Errno.EACCES or Errno.EPERM ? 0 : e;
        }
        try { return SafeFiles.SyncError(fd); }
        finally { FileNative.Close(fd); }
    }

    /// <summary>Opens the regular file <paramref name="name"/> here for reading: no link followed, no FIFO or device (O_NONBLOCK, then fstat).</summary>
    public SafeFileHandle OpenRegular(string name, out FileNative.PathStatus status)
    {
        var path = Combine(name);
        int fd = FileNative.OpenAt(Fd, name, FileNative.O_RDONLY | FileNative.O_NOFOLLOW | FileNative.O_NONBLOCK | FileNative.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            if (e == Errno.ENOENT) throw new FileNotFoundException(path);
            if (e is Errno.EACCES or Errno.EPERM)
                throw new EngineException(EngineError.PermissionDenied, $"{path}: {Errno.Describe(e)} (an image of another user, or a directory you may not read).", path, e);
            if (Errno.IsResourceLimit(e)) throw ResourceLimit(path, e);
            if (e == Errno.EIO) throw new EngineException(EngineError.ImageReadError, $"{path}: {Errno.Describe(e)} (the disk under it). Check the disk, then test the image again.", path, e);
            throw new EngineException(EngineError.ImageCorrupt, e == Errno.ELOOP ? $"{path} is a symbolic link; image files must be regular files." : $"{path}: {Errno.Describe(e)}", path, e);
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        var st = FileNative.Fstat(fd, out int serr);
        if (st is not { Type: FileNative.S_IFREG } s)
        {
            handle.Dispose();
            throw new EngineException(EngineError.ImageCorrupt, st is null ? $"{path}: {Errno.Describe(serr)}" : $"{path} is not a regular file (a FIFO, device or directory); image files must be regular files.", path, serr);
        }
        status = s;
        return handle;
    }

    /// <summary>Opens an existing directory to read from (links followed: reading writes nothing); null where absent.</summary>
    public static SafeDirectory? OpenForReading(string path, out int errno)
    {
        int fd = FileNative.Open(path, DirectoryFlags | FileNative.O_DIRECTORY, 0);
        errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        // A path longer than PATH_MAX: the module writes there (one component at a time), so it must read there too.
        if (fd < 0 && errno == Errno.ENAMETOOLONG) fd = OpenInPieces(path, out errno);
        return fd < 0 ? null : new SafeDirectory(new SafeFileHandle(fd, ownsHandle: true), path);
    }

    /// <summary>The longest relative path handed to one openat by <see cref="OpenInPieces"/>: well under PATH_MAX (4096).</summary>
    private const int PieceBytes = 2048;

    /// <summary>
    /// Opens a path the kernel refuses whole (ENAMETOOLONG) as open(2) would, links followed: openat of pieces of at
    /// most <see cref="PieceBytes"/>, each relative to the folder the last one opened. -1 with the errno on failure.
    /// </summary>
    private static int OpenInPieces(string path, out int errno)
    {
        errno = 0;
        int at = FileNative.Open(path.StartsWith('/') ? "/" : ".", DirectoryFlags | FileNative.O_DIRECTORY, 0);
        if (at < 0) { errno = Marshal.GetLastPInvokeError(); return -1; }
        var piece = new System.Text.StringBuilder();
        var names = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < names.Length; i++)
        {
            if (piece.Length > 0) piece.Append('/');
            piece.Append(names[i]);
            bool last = i == names.Length - 1;
            if (!last && System.Text.Encoding.UTF8.GetByteCount(piece.ToString()) + 1 + System.Text.Encoding.UTF8.GetByteCount(names[i + 1]) < PieceBytes) continue;
            int next = FileNative.OpenAt(at, piece.ToString(), DirectoryFlags | FileNative.O_DIRECTORY, 0);
            int error = next < 0 ? Marshal.GetLastPInvokeError() : 0;
            FileNative.Close(at);
            if (next < 0) { errno = error; return -1; }
            at = next;
            piece.Clear();
        }
        return at;
    }

    /// <summary>
    /// Where this folder really is, links on the way resolved (the kernel's name for the descriptor, /proc/self/fd);
    /// <see cref="Path"/> where the kernel does not say (no /proc, or the folder was removed meanwhile).
    /// </summary>
    public string RealPath()
    {
        string? target;
        try { target = new FileInfo($"/proc/self/fd/{Fd}").LinkTarget; }
        catch (IOException) { return Path; } // a name longer than PATH_MAX: the kernel cannot say it
        return target is not null && target.StartsWith('/') && !target.EndsWith(" (deleted)", StringComparison.Ordinal) ? target : Path;
    }

    /// <summary>Opening <paramref name="path"/> failed for want of descriptors or memory (<see cref="Errno.IsResourceLimit"/>): nothing is known about the file.</summary>
    public static EngineException ResourceLimit(string path, int errno) =>
        ResourceLimitError.For(path, errno, "Nothing is known about the image (a chain holds each of its images open while it is read)", path);

    /// <summary>The path of an entry here (for messages).</summary>
    public string Combine(string name) => Path == "/" ? "/" + name : Path + "/" + name;

    public void Dispose() => _handle.Dispose();
}
