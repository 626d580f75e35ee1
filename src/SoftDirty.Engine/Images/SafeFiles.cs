using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
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
        return new SizeLimitedFileStream(new SafeFileHandle(fd, ownsHandle: true), path);
    }

    /// <summary>
    /// Creates the directory <paramref name="path"/> (0700) in its checked parent (<see cref="SafeDirectory"/>); it must not exist
    /// (no symlink, nothing reused). With <paramref name="durable"/> the parent is fsynced: what is later put in place inside it
    /// (a migration's rounds) survives a crash only with it.
    /// </summary>
    public static void CreateDirectory(string path, bool durable = true)
    {
        using var parent = SafeDirectory.OpenParent(path, "The directory", create: true, out var name);
        parent.CreateDirectory(name).Dispose();
        if (durable && parent.SyncError() is int e and not 0)
        {
            parent.Remove(name, directory: true);
            throw WriteFailure(path, e, $"Creating the directory {path} failed: fsync of {parent.Path} said {Errno.Describe(e)}; it was removed again.");
        }
    }

    /// <summary>
    /// Writes <paramref name="bytes"/> as the file <paramref name="name"/> of the opened <paramref name="dir"/>, whole
    /// or not at all: a new temporary file (0600, O_EXCL|O_NOFOLLOW) beside it, fsync, then renameat onto the name
    /// (which replaces a file there, or a link itself, never what a link points to). A failure removes the temporary file.
    /// With <paramref name="syncFolder"/>, the folder is fsynced after the rename, so that success means the new file survives
    /// a crash; a failure there says so (the file is in place).
    /// </summary>
    public static void WriteReplacing(SafeDirectory dir, string name, ReadOnlySpan<byte> bytes, bool syncFolder = true)
    {
        var temp = HiddenName(name, $".{Guid.NewGuid():N}.tmp");
        bool placed = false;
        try
        {
            using (var fs = dir.CreateFile(temp))
            {
                fs.Write(bytes);
                fs.Flush(flushToDisk: true);
            }
            int e = dir.RenameTo(temp, dir, name, replace: true);
            if (e != 0)
                throw WriteFailure(dir.Combine(name), e, e == FileNative.EISDIR ? $"{dir.Combine(name)} is a directory." : $"Writing {dir.Combine(name)} failed: {Errno.Describe(e)}");
            placed = true;
        }
        finally
        {
            if (!placed) dir.Remove(temp);
        }
        if (syncFolder && dir.SyncError() is int f and not 0)
            throw WriteFailure(dir.Combine(name), f, $"{dir.Combine(name)} was written, but fsync of its folder {dir.Path} said {Errno.Describe(f)}: the new file may not survive a crash.");
    }

    /// <summary>The longest file name Linux filesystems take, in bytes (NAME_MAX).</summary>
    private const int NameMax = 255;

    /// <summary>
    /// A hidden name beside <paramref name="name"/> for a temporary file or folder: <c>.NAME</c> and <paramref name="suffix"/>,
    /// NAME cut (on a character boundary) so that the whole fits in NAME_MAX bytes. Every name the filesystem takes then has a
    /// temporary name it takes too (round 26: a chart named with 218-255 bytes, legal, failed with ENAMETOOLONG on its temporary file).
    /// </summary>
    internal static string HiddenName(string name, string suffix)
    {
        int room = NameMax - 1 - System.Text.Encoding.UTF8.GetByteCount(suffix);
        int keep = name.Length;
        while (keep > 0 && System.Text.Encoding.UTF8.GetByteCount(name.AsSpan(0, keep)) > room) keep--;
        if (keep > 0 && char.IsHighSurrogate(name[keep - 1])) keep--;
        return "." + name[..keep] + suffix;
    }

    /// <summary>
    /// Refuses to replace <paramref name="name"/> of <paramref name="dir"/> where it exists and the directory is a memory
    /// image (it holds a manifest): a chart written over manifest.json or pages.bin would leave the image unreadable.
    /// </summary>
    public static void RefuseImageFile(SafeDirectory dir, string name, string what)
    {
        if (!IsEntry(dir.Lstat(name, out int e), e, dir.Combine(name), what) || !IsEntry(dir.Lstat(ImageFormat.ManifestFile, out e), e, dir.Combine(ImageFormat.ManifestFile), what)) return;
        throw new EngineException(EngineError.ImageExists,
            $"{what} {dir.Combine(name)} is a file of the memory image {dir.Path}; the module does not write over an image's files. Choose another path.", dir.Combine(name));
    }

    /// <summary>
    /// fsync of <paramref name="handle"/> (the file <paramref name="path"/>, for messages), checked: any failure but "this file
    /// cannot be synced" (EINVAL, EOPNOTSUPP: a file system without fsync, where there is nothing to flush) is a write
    /// failure (<see cref="WriteFailure"/>: EIO or ENOSPC of delayed writeback is ImageWriteError). The module fsyncs through
    /// here, never through FileStream.Flush(true), which .NET answers with success whatever fsync returned.
    /// </summary>
    public static void SyncToDisk(SafeFileHandle handle, string path)
    {
        int e = SyncError((int)handle.DangerousGetHandle());
        if (e != 0) throw WriteFailure(path, e, $"Writing {path} failed: fsync said {Errno.Describe(e)}; its data may not be on the disk.");
    }

    /// <summary>fsync of <paramref name="fd"/>, again where a signal interrupted it: 0, or the errno (0 also where the file cannot be synced: EINVAL, EOPNOTSUPP).</summary>
    internal static int SyncError(int fd)
    {
        int e;
        do e = FileNative.Fsync(fd) == 0 ? 0 : Marshal.GetLastPInvokeError();
        while (e == Errno.EINTR);
        return e is Errno.EINVAL or Errno.EOPNOTSUPP ? 0 : e;
    }

    /// <summary>
    /// Reads into <paramref name="buffer"/> at <paramref name="offset"/> of the image file <paramref name="path"/>: the bytes read
    /// (fewer at its end). An error of the read itself (EIO of a failing disk) is ImageReadError naming the file and offset: an
    /// IOException reached the user as System.IO.IOException, with no SoftDirty error id, from Test-, Get- and Restore-MemoryImage.
    /// </summary>
    public static int ReadAt(SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        try { return RandomAccess.Read(handle, buffer, offset); }
        catch (IOException ex)
        {
            throw new ImageException(EngineError.ImageReadError,
                $"{path} at offset {offset} (0x{offset:x}): reading failed: {ex.Message}. Nothing is known of the image past it: check the disk, then test the image again.", path, offset, ex);
        }
    }

    /// <summary>
    /// <see cref="ReadAt"/> until <paramref name="buffer"/> is full or the file ends: the bytes read, fewer only at its end. A
    /// read may return fewer bytes than asked before the end (FUSE, NFS, CIFS; POSIX allows it anywhere): taken for the end, a
    /// whole image was said to lack its last pages (Test-MemoryImage false, a received image refused, a restore failed; round 29).
    /// </summary>
    public static int ReadFull(SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        int got = 0;
        while (got < buffer.Length)
        {
            int n = ReadAt(handle, buffer[got..], offset + got, path);
            if (n <= 0) break;
            got += n;
        }
        return got;
    }

    internal static EngineException WriteFailure(string path, int errno, string message) => errno switch
    {
        Errno.EACCES or Errno.EPERM => new EngineException(EngineError.PermissionDenied, message, path, errno),
        Errno.EEXIST => new EngineException(EngineError.UnsafeDestination, message + " (something was created there meanwhile)", path, errno),
        // Out of descriptors (ulimit -n) or memory: the destination may be fine; the limit is this process's.
        _ when Errno.IsResourceLimit(errno) => new EngineException(EngineError.ResourceLimit, ResourceLimitError.WithRemedy(message, errno), path, errno),
        _ => new EngineException(EngineError.ImageWriteError, message, path, errno),
    };

    /// <summary>
    /// Checks a destination the module will create or fill: absent (its parent directory is created, 0700,
    /// where missing), or an empty directory owned by the caller. Every folder above is checked on its
    /// descriptor (<see cref="SafeDirectory.Open"/>). Returns whether it exists; the folders it created are added to
    /// <paramref name="made"/> (for <see cref="SafeDirectory.RemoveMade"/> when the command fails).
    /// </summary>
    public static bool CheckDestination(string path, string what, List<string>? made = null)
    {
        RefuseInsideImage(path, what);
        var mine = new List<string>();
        try
        {
            using var parent = SafeDirectory.OpenParent(path, what, create: true, out var name, mine);
            bool exists = CheckEntry(parent, name, what);
            made?.AddRange(mine);
            return exists;
        }
        catch
        {
            SafeDirectory.RemoveMade(mine, what);
            throw;
        }
    }

    /// <summary>
    /// Refuses (ImageExists) a destination that lies inside a memory image's folder, at any depth: a folder that
    /// holds the three files of an image (round 10: a migration's rounds were written inside an image, and removing
    /// or copying that image then took them along). Checked before any folder on the way is created.
    /// </summary>
    public static void RefuseInsideImage(string path, string what)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        for (var folder = Path.GetDirectoryName(full); folder is not null; folder = Path.GetDirectoryName(folder))
        {
            if (ImageFiles.All(f => IsImageFile(folder, f, what)))
                throw new EngineException(EngineError.ImageExists,
                    $"{what} {full} lies inside the memory image {folder}; the module does not write into an image's folder. Choose a path outside it (such as a sibling of {folder}).", full);
        }
    }

    /// <summary>
    /// Whether <paramref name="folder"/>/<paramref name="file"/> is a regular file (lstat, by whole path, else in pieces past
    /// PATH_MAX as the module writes there). Only "absent" (ENOENT, ENOTDIR) or "out of reach" (EACCES) is an answer: any
    /// other failure (EIO, out of descriptors or memory) says nothing of the folder, and was read as "not an image", so a
    /// command wrote inside one (round 30).
    /// </summary>
    private static bool IsImageFile(string folder, string file, string what)
    {
        var path = Path.Combine(folder, file);
        var st = FileNative.Lstat(path, out int e);
        if (st is null && e == Errno.ENAMETOOLONG)
        {
            using var dir = SafeDirectory.OpenForReading(folder, out e);
            if (dir is not null) st = dir.Lstat(file, out e);
        }
        return IsEntry(st, e, path, what) && st!.Value.Type == FileNative.S_IFREG;
    }

    /// <summary>
    /// Whether an lstat of <paramref name="path"/> found it (<paramref name="st"/>), false where it is absent (ENOENT,
    /// ENOTDIR) or out of the caller's reach (EACCES); any other failure is an error of its own, never "absent":
    /// ImageReadError (EIO and the rest), ResourceLimit. Checked before <paramref name="what"/> is written.
    /// </summary>
    private static bool IsEntry(FileNative.PathStatus? st, int errno, string path, string what)
    {
        if (st is not null) return true;
        // A folder the caller may not search (EACCES) holds nothing it can write either: the write that follows fails on
        // the same folder with its own error (PermissionDenied, as before).
        if (errno is Errno.ENOENT or FileNative.ENOTDIR or Errno.EACCES) return false;
        const string unknown = "Whether it belongs to a memory image (whose folder the module never writes into) is unknown, so nothing was written";
        if (Errno.IsResourceLimit(errno)) throw ResourceLimitError.For($"{what}: lstat of {path} failed", errno, unknown, path);
        throw new EngineException(EngineError.ImageReadError, $"{what}: lstat of {path} failed: {Errno.Describe(errno)}. {unknown}.", path, errno);
    }

    /// <summary>The files every memory image's folder holds.</summary>
    private static readonly string[] ImageFiles = { ImageFormat.ManifestFile, ImageFormat.PagesFile, ImageFormat.IndexFile };

    /// <summary>
    /// Checks the entry <paramref name="name"/> of the opened <paramref name="parent"/>: absent (false), or an empty
    /// directory of the caller (true); a link or another user's directory is UnsafeDestination, a file or a non-empty
    /// directory ImageExists.
    /// </summary>
    public static bool CheckEntry(SafeDirectory parent, string name, string what)
    {
        var path = parent.Combine(name);
        var st = parent.Lstat(name, out int errno);
        if (st is null)
        {
            if (errno != Errno.ENOENT) throw WriteFailure(path, errno, $"{what} {path}: {Errno.Describe(errno)}");
            return false;
        }
        var s = st.Value;
        if (s.Type == FileNative.S_IFLNK)
            throw new EngineException(EngineError.UnsafeDestination, $"{what} {path} is a symbolic link; the module does not write through links. Give the real directory or a new path.", path);
        if (s.Type != FileNative.S_IFDIR)
            throw new EngineException(EngineError.ImageExists, $"{what} {path} exists and is not a directory; choose a new path.", path);
        if (s.Uid != FileNative.Geteuid())
            throw new EngineException(EngineError.UnsafeDestination, $"{what} {path} belongs to user {s.Uid}, not to you ({FileNative.Geteuid()}); the module writes only into directories of its caller.", path);
        // Refused before anything is written: the rename that puts the result in place cannot replace a mount point
        // (EBUSY), so a whole save or restore was made, then thrown away.
        if (s.MountRoot)
            throw new EngineException(EngineError.InvalidArgument,
                $"{what} {path} is a mount point: the module fills a folder beside the destination and renames it into place, which cannot replace a mount point. Give a new folder inside it (such as {path}/image).", path);
        using var dir = parent.OpenOwnDirectory(name) ?? throw WriteFailure(path, Errno.EEXIST, $"{what} {path} was removed meanwhile.");
        if (dir.HasEntries())
            throw new EngineException(EngineError.ImageExists, $"{what} {path} is not empty; the module writes only into a new or empty directory. Remove it or choose a new path.", path);
        return true;
    }

    /// <summary>
    /// Reads a whole file that must be a regular file (not a FIFO, device or symlink) of at most
    /// <paramref name="maxBytes"/>; a missing file throws FileNotFoundException, others an ImageCorrupt/PermissionDenied error.
    /// </summary>
    public static byte[] ReadRegular(string path, long maxBytes)
    {
        using var dir = OpenFolderOf(path, out var name);
        return ReadRegular(dir, name, maxBytes);
    }

    /// <summary><see cref="ReadRegular(string, long)"/> of the entry <paramref name="name"/> of an opened folder (O_NOFOLLOW relative to it).</summary>
    public static byte[] ReadRegular(SafeDirectory dir, string name, long maxBytes)
    {
        var rented = ReadRegularPooled(dir, name, maxBytes, out int length);
        try { return rented.AsSpan(0, length).ToArray(); }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(rented); }
    }

    /// <summary>
    /// <see cref="ReadRegular(SafeDirectory, string, long)"/> into an array rented from <see cref="System.Buffers.ArrayPool{T}.Shared"/>
    /// (the caller returns it); <paramref name="length"/> is the file's size.
    /// </summary>
    public static byte[] ReadRegularPooled(SafeDirectory dir, string name, long maxBytes, out int length)
    {
        var path = dir.Combine(name);
        using var handle = dir.OpenRegular(name, out var s);
        if (s.Size > (ulong)maxBytes || s.Size > (ulong)Array.MaxLength)
            throw new EngineException(EngineError.ImageCorrupt, $"{path} is {s.Size} bytes, more than the {maxBytes} this file can have.", path);
        length = (int)s.Size;
        var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(1, length));
        int got;
        try { got = ReadFull(handle, bytes.AsSpan(0, length), 0, path); }
        catch { System.Buffers.ArrayPool<byte>.Shared.Return(bytes); throw; }
        if (got != length)
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
            throw new EngineException(EngineError.ImageIncomplete, $"{path} changed while being read ({got} of {length} bytes).", path);
        }
        return bytes;
    }

    /// <summary>Opens an image data file for reading: a regular file, no symlink followed.</summary>
    public static SafeFileHandle OpenRegular(string path)
    {
        using var dir = OpenFolderOf(path, out var name);
        return OpenRegular(dir, name);
    }

    /// <summary><see cref="OpenRegular(string)"/> of the entry <paramref name="name"/> of an opened folder.</summary>
    public static SafeFileHandle OpenRegular(SafeDirectory dir, string name)
    {
        try { return dir.OpenRegular(name, out _); }
        catch (FileNotFoundException) { var path = dir.Combine(name); throw new EngineException(EngineError.ImageIncomplete, $"{path}: missing.", path, Errno.ENOENT); }
    }

    private static SafeDirectory OpenFolderOf(string path, out string name)
    {
        var full = Path.GetFullPath(path);
        name = Path.GetFileName(full);
        var folder = Path.GetDirectoryName(full) ?? "/";
        var dir = SafeDirectory.OpenForReading(folder, out int e);
        if (dir is not null) return dir;
        if (e is Errno.ENOENT or FileNative.ENOTDIR) throw new FileNotFoundException(full);
        if (e is Errno.EACCES or Errno.EPERM)
            throw new EngineException(EngineError.PermissionDenied, $"{full}: {Errno.Describe(e)} (an image of another user, or a directory you may not read).", full, e);
        // A limit of this process (no descriptor left) says nothing of the folder: it was ImageCorrupt (round 28), and a
        // write-tracking state read so was taken as malformed.
        if (Errno.IsResourceLimit(e))
            throw ResourceLimitError.For($"{full}: opening {folder} failed", e, "Nothing is known about the file", full);
        throw new EngineException(e == Errno.EIO ? EngineError.ImageReadError : EngineError.ImageCorrupt, $"{folder}: {Errno.Describe(e)}", full, e);
    }
}
