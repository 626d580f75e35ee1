using System;
using System.IO;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

// Images are written for Linux processes: Unix file modes are part of the format.
#pragma warning disable CA1416

namespace SoftDirty.Images;

/// <summary>
/// How the module touches files: every file it writes is created new (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600),
/// every directory new (mode 0700); a destination that is a symlink, not a directory, not owned by the caller
/// or not empty is refused; files it reads must be regular files (no FIFO, device or symlink) of bounded size.
/// </summary>
internal static class SafeFiles
{
    /// <summary>The most bytes a manifest (or mappings.json) may have: far more than any real layout needs.</summary>
    public const long MaxManifestBytes = 64L << 20;

    /// <summary>Creates <paramref name="path"/> for writing: new, not through a symlink, 0600.</summary>
    public static FileStream CreateNew(string path)
    {
        int fd = FileNative.Open(path, FileNative.O_WRONLY | FileNative.O_CREAT | FileNative.O_EXCL | FileNative.O_NOFOLLOW | FileNative.O_CLOEXEC, (uint)ImageFormat.FileMode);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw WriteFailure(path, e, $"Creating {path} failed: {Errno.Describe(e)}");
        }
        return new FileStream(new SafeFileHandle(fd, ownsHandle: true), FileAccess.Write, 0);
    }

    /// <summary>Creates the directory <paramref name="path"/> (0700); it must not exist (no symlink, nothing reused).</summary>
    public static void CreateDirectory(string path)
    {
        if (FileNative.Mkdir(path, (uint)ImageFormat.DirectoryMode) != 0)
        {
            int e = Marshal.GetLastPInvokeError();
            throw WriteFailure(path, e, $"Creating the directory {path} failed: {Errno.Describe(e)}");
        }
    }

    internal static EngineException WriteFailure(string path, int errno, string message) => errno switch
    {
        Errno.EACCES or Errno.EPERM => new EngineException(EngineError.PermissionDenied, message, path, errno),
        Errno.EEXIST => new EngineException(EngineError.UnsafeDestination, message + " (something was created there meanwhile)", path, errno),
        _ => new EngineException(EngineError.ImageWriteError, message, path, errno),
    };

    /// <summary>
    /// Checks a destination the module will create or fill: absent (its parent directory is created, 0700,
    /// where missing), or an empty directory owned by the caller. Returns whether it exists.
    /// </summary>
    public static bool CheckDestination(string path, string what)
    {
        CheckFolders(path, what);
        var st = FileNative.Lstat(path, out int errno);
        if (st is null)
        {
            if (errno is not (Errno.ENOENT or 20)) // ENOTDIR: a component is a file
                throw WriteFailure(path, errno, $"{what} {path}: {Errno.Describe(errno)}");
            if (errno == 20)
                throw new EngineException(EngineError.InvalidArgument, $"{what} {path}: a part of the path is a file, not a directory.", path, errno);
            var parent = Path.GetDirectoryName(path);
            if (parent is not null && !Directory.Exists(parent))
            {
                try { Directory.CreateDirectory(parent, ImageFormat.DirectoryMode); }
                catch (IOException ex) { throw new EngineException(EngineError.ImageWriteError, $"Creating {parent} failed: {ex.Message}", parent, 0, ex); }
                catch (UnauthorizedAccessException ex) { throw new EngineException(EngineError.PermissionDenied, $"Creating {parent} failed: {ex.Message}", parent, Errno.EACCES, ex); }
            }
            return false;
        }
        var s = st.Value;
        if (s.Type == FileNative.S_IFLNK)
            throw new EngineException(EngineError.UnsafeDestination, $"{what} {path} is a symbolic link; the module does not write through links. Give the real directory or a new path.", path);
        if (s.Type != FileNative.S_IFDIR)
            throw new EngineException(EngineError.ImageExists, $"{what} {path} exists and is not a directory; choose a new path.", path);
        if (s.Uid != FileNative.Geteuid())
            throw new EngineException(EngineError.UnsafeDestination, $"{what} {path} belongs to user {s.Uid}, not to you ({FileNative.Geteuid()}); the module writes only into directories of its caller.", path);
        bool any;
        try
        {
            using var e = Directory.EnumerateFileSystemEntries(path).GetEnumerator();
            any = e.MoveNext();
        }
        catch (UnauthorizedAccessException ex) { throw new EngineException(EngineError.PermissionDenied, $"{what} {path}: {ex.Message}", path, Errno.EACCES, ex); }
        if (any)
            throw new EngineException(EngineError.ImageExists, $"{what} {path} is not empty; the module writes only into a new or empty directory. Remove it or choose a new path.", path);
        return true;
    }

    /// <summary>
    /// The private folder is made beside the destination, its files are created by path and it is renamed onto the
    /// destination: whoever may rename entries in any folder above could swap that folder (or a folder on the way)
    /// for a link between the module's steps and have it write elsewhere. So every existing folder above must belong
    /// to the caller or root, and one every user may write to must have the sticky bit (as /tmp has).
    /// </summary>
    private static void CheckFolders(string path, string what)
    {
        uint me = FileNative.Geteuid();
        for (var folder = Path.GetDirectoryName(path); folder is not null; folder = Path.GetDirectoryName(folder))
        {
            if (FileNative.Stat(folder, out _) is not { } fs) continue; // missing: the module creates it (0700)
            if (fs.Uid != me && fs.Uid != 0)
                throw new EngineException(EngineError.UnsafeDestination,
                    $"{what} {path} lies in {folder}, which belongs to user {fs.Uid}, not to you ({me}) or root: that user could replace what the module writes there with a link before it is put in place. Choose a folder of your own.", path);
            if ((fs.Permissions & FileNative.S_IWOTH) != 0 && (fs.Permissions & FileNative.S_ISVTX) == 0)
                throw new EngineException(EngineError.UnsafeDestination,
                    $"{what} {path} lies in {folder}, which every user may write to and which has no sticky bit: another user could replace what the module writes there before it is put in place. Choose a folder of your own (or one with the sticky bit, as /tmp has).", path);
        }
    }

    /// <summary>
    /// Reads a whole file that must be a regular file (not a FIFO, device or symlink) of at most
    /// <paramref name="maxBytes"/>; a missing file throws FileNotFoundException, others an ImageCorrupt/PermissionDenied error.
    /// </summary>
    public static byte[] ReadRegular(string path, long maxBytes)
    {
        int fd = FileNative.Open(path, FileNative.O_NOFOLLOW | FileNative.O_NONBLOCK | FileNative.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            if (e == Errno.ENOENT) throw new FileNotFoundException(path);
            if (e is Errno.EACCES or Errno.EPERM)
                throw new EngineException(EngineError.PermissionDenied, $"{path}: {Errno.Describe(e)} (an image of another user, or a directory you may not read).", path, e);
            throw new EngineException(EngineError.ImageCorrupt, e == Errno.ELOOP ? $"{path} is a symbolic link; image files must be regular files." : $"{path}: {Errno.Describe(e)}", path, e);
        }
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        var st = FileNative.Fstat(fd, out int serr);
        if (st is not { } s)
            throw new EngineException(EngineError.ImageCorrupt, $"{path}: {Errno.Describe(serr)}", path, serr);
        if (s.Type != FileNative.S_IFREG)
            throw new EngineException(EngineError.ImageCorrupt, $"{path} is not a regular file (a FIFO, device or directory); image files must be regular files.", path);
        if (s.Size > (ulong)maxBytes || s.Size > (ulong)Array.MaxLength)
            throw new EngineException(EngineError.ImageCorrupt, $"{path} is {s.Size} bytes, more than the {maxBytes} this file can have.", path);
        var bytes = new byte[(int)s.Size];
        int got = 0;
        while (got < bytes.Length)
        {
            int n = RandomAccess.Read(handle, bytes.AsSpan(got), got);
            if (n <= 0) break;
            got += n;
        }
        if (got != bytes.Length)
            throw new EngineException(EngineError.ImageIncomplete, $"{path} changed while being read ({got} of {bytes.Length} bytes).", path);
        return bytes;
    }

    /// <summary>Opens an image data file for reading: a regular file, no symlink followed.</summary>
    public static SafeFileHandle OpenRegular(string path)
    {
        int fd = FileNative.Open(path, FileNative.O_NOFOLLOW | FileNative.O_NONBLOCK | FileNative.O_CLOEXEC, 0);
        if (fd < 0)
        {
            int e = Marshal.GetLastPInvokeError();
            if (e == Errno.ENOENT) throw new EngineException(EngineError.ImageIncomplete, $"{path}: missing.", path, e);
            if (e is Errno.EACCES or Errno.EPERM) throw new EngineException(EngineError.PermissionDenied, $"{path}: {Errno.Describe(e)}", path, e);
            throw new EngineException(EngineError.ImageCorrupt, $"{path}: {Errno.Describe(e)} (image files must be regular files, not links).", path, e);
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (FileNative.Fstat(fd, out _) is not { Type: FileNative.S_IFREG })
        {
            handle.Dispose();
            throw new EngineException(EngineError.ImageCorrupt, $"{path} is not a regular file; image files must be regular files.", path);
        }
        return handle;
    }

    /// <summary>fsync of a directory, so that renames in it are on disk.</summary>
    public static void FsyncDirectory(string path)
    {
        int fd = FileNative.Open(path, FileNative.O_DIRECTORY | FileNative.O_CLOEXEC, 0);
        if (fd < 0) return;
        FileNative.Fsync(fd);
        FileNative.Close(fd);
    }
}
