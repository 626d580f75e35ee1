using System;
using System.Runtime.InteropServices;
using System.Threading;
using Microsoft.Win32.SafeHandles;

namespace SoftDirty.Images;

/// <summary>
/// An exclusive lock between commands, sessions and runspaces: flock(2) of a 0600 regular file made in a checked
/// folder without following links. flock belongs to the open file, so two runspaces of one PowerShell exclude each
/// other as two processes do; a holder killed with -9 releases it with its descriptors.
/// </summary>
internal static partial class LockFile
{
    private const int LOCK_EX = 2, LOCK_NB = 4, O_RDWR = 2;
    /// <summary>The link count of a file that has no name but this one.</summary>
    private const uint SingleName = 1;
    /// <summary>How long <see cref="Take"/> waits between tries while another holds the lock.</summary>
    private static readonly TimeSpan Retry = TimeSpan.FromMilliseconds(5);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int Flock(int fd, int operation);

    /// <summary>
    /// Why the lock file at <paramref name="path"/> could not be opened, classed as every file the module writes is
    /// (<see cref="SafeFiles.WriteFailure"/>: PermissionDenied, ResourceLimit, else ImageWriteError, the path its target),
    /// and something there that is not a regular file (a link, a directory, a socket) as the FIFO that opens is:
    /// UnsafeDestination. Round 21 saw one failure give three ErrorIds: a read-only state folder was ProcIOError (a read
    /// error) for the lock and PermissionDenied for the state file, a full one ProcIOError and ImageWriteError, and a
    /// directory at the lock's name ProcIOError.
    /// </summary>
    private static EngineException OpenFailure(string path, string what, object target, int errno) => errno switch
    {
        Errno.ELOOP or FileNative.EISDIR or FileNative.ENXIO => new EngineException(EngineError.UnsafeDestination,
            $"The {what} {path} is not a regular file ({Errno.Describe(errno)}); remove it.", target, errno),
        _ => SafeFiles.WriteFailure(path, errno, $"Opening the {what} {path} failed: {Errno.Describe(errno)}"),
    };

    /// <summary>Whether the file open as <paramref name="fd"/> has been unlinked (no name left).</summary>
    private static bool IsUnlinked(int fd) => FileNative.Fstat(fd, out _) is { Links: 0 };

    /// <summary>
    /// Takes the lock <paramref name="name"/> in the folder <paramref name="openFolder"/> opens, waiting while another
    /// holds it; <paramref name="onWait"/> is called once when it has to wait, and <paramref name="cancel"/> (Ctrl+C)
    /// ends the wait. A file its holder removed meanwhile is not a lock any more: the one now under that name is taken.
    /// Dispose the handle to release. <paramref name="what"/> names the lock in errors, <paramref name="target"/> is their target object.
    /// </summary>
    public static SafeFileHandle Take(Func<SafeDirectory> openFolder, string name, string what, object target, CancellationToken cancel, Action? onWait = null)
        => TakeUnlessHeld(openFolder, name, what, target, heldHere: null, cancel, onWait)!;

    /// <summary>
    /// <see cref="Take"/>, except that a file <paramref name="heldHere"/> says the caller holds already (the same file under
    /// another name: a hard link, or a folder bind-mounted on another) is not waited for, which would be forever: null then.
    /// </summary>
    public static SafeFileHandle? TakeUnlessHeld(Func<SafeDirectory> openFolder, string name, string what, object target,
        Func<FileNative.PathStatus, bool>? heldHere, CancellationToken cancel, Action? onWait = null)
    {
        while (true)
        {
            using var dir = openFolder();
            int fd = FileNative.OpenAt(dir.Fd, name, O_RDWR | FileNative.O_CREAT | FileNative.O_NOFOLLOW | FileNative.O_NONBLOCK | FileNative.O_CLOEXEC, (uint)ImageFormat.FileMode);
            if (fd < 0) throw OpenFailure(dir.Combine(name), what, target, Marshal.GetLastPInvokeError());
            var handle = new SafeFileHandle(fd, ownsHandle: true);
            try
            {
                if (FileNative.Fstat(fd, out _) is not { Type: FileNative.S_IFREG } st)
                    throw new EngineException(EngineError.UnsafeDestination, $"The {what} {dir.Combine(name)} is not a regular file; remove it.", target);
                // Made by this open under the umask (0777 left it 0000, and the next open of it failed with EACCES): exactly 0600.
                // Only a file with no other name: root taking the lock in a user's epoch folder found there a hard link the
                // user had made to a file of root's (any 0666 one, every one with fs.protected_hardlinks 0) and made it 0600.
                if (st.Uid == FileNative.Geteuid() && st.Links == SingleName && st.Permissions != (uint)ImageFormat.FileMode)
                    FileNative.Fchmod(fd, (uint)ImageFormat.FileMode);
                if (heldHere?.Invoke(st) == true)
                {
                    handle.Dispose();
                    return null;
                }
                while (Flock(fd, LOCK_EX | LOCK_NB) != 0)
                {
                    int e = Marshal.GetLastPInvokeError();
                    if (e != Errno.EAGAIN && e != Errno.EINTR)
                        throw new EngineException(EngineError.ProcIOError, $"Locking {dir.Combine(name)} failed: {Errno.Describe(e)}", target, e);
                    if (onWait is not null) { onWait(); onWait = null; }
                    if (cancel.WaitHandle.WaitOne(Retry)) cancel.ThrowIfCancellationRequested();
                }
                if (IsUnlinked(fd)) { handle.Dispose(); continue; }
                return handle;
            }
            catch
            {
                handle.Dispose();
                throw;
            }
        }
    }
}
