using System;
using System.IO;
using System.Text;
using System.Text.Json;
using System.Threading;
using Microsoft.Win32.SafeHandles;
using SoftDirty.Images;

namespace SoftDirty.Injection;

/// <summary>
/// Where <see cref="WriteTrackingState"/> lives between commands: one file per process in a per-user folder
/// with mode 0700 ($SOFTDIRTY_STATE_DIR, else $XDG_STATE_HOME/SoftDirty/write-tracking where absolute, else
/// ~/.local/state/SoftDirty/write-tracking, ~ being an absolute $HOME or the user database's home; its subfolder pidns-INODE in a
/// pid namespace other than the host's: <see cref="Folder"/>). A file is trusted only while the process has the same start
/// time and its descriptor still is the same userfaultfd (the inode recorded at enable: a target that
/// closed it and made a userfaultfd of its own under that number is not mistaken for tracked); a stale one
/// is deleted when found, and every save removes the files of processes that are gone. A folder that is a link, another user's or writable by others is refused
/// (UnsafeDestination); state files are regular files of bounded size, created 0600 without following links.
/// Commands and sessions that share one process's tracking take turns (<see cref="Lock"/>): a reset and the
/// check of the reset it counts from happen under one lock, so no tracker's reset slips between another's check and scan.
/// </summary>
internal static partial class WriteTrackingStore
{
    /// <summary>The environment variable that moves the state folder (tests use a folder of their own).</summary>
    public const string FolderVariable = "SOFTDIRTY_STATE_DIR";

    /// <summary>
    /// The state folder: <see cref="BaseFolder"/>, or its subfolder pidns-INODE where this command runs in a pid namespace other
    /// than the first (a container sharing the folder). State files are named by the pid the command sees: in one folder a
    /// command in the container took the host's state of the host's pid for a stale one of its own pid, deleted it and wrote
    /// its own there (and its prune removed the states of host pids it could not see); the host's tracking stayed in its
    /// process with no state (Disable-WriteTracking: not enabled; Enable-WriteTracking: in use).
    /// </summary>
    public static string Folder => PidNamespace.Of("self") is { } ns && ns != PidNamespace.Initial ? Path.Combine(BaseFolder, NamespaceFolderPrefix + ns) : BaseFolder;

    /// <summary>The folder the user chose or the default one (<see cref="Folder"/> is it, or a subfolder in a pid namespace of a container).</summary>
    private static string BaseFolder
    {
        get
        {
            var overridden = Environment.GetEnvironmentVariable(FolderVariable);
            if (!string.IsNullOrEmpty(overridden))
            {
                // Relative, it would name another folder in each working directory (as a relative HOME did): refused, not guessed.
                if (!Path.IsPathRooted(overridden))
                    throw new EngineException(EngineError.InvalidArgument,
                        $"${FolderVariable} is '{overridden}', a relative path: each working directory would have a state folder of its own, and commands would not find each other's write tracking. Set it to an absolute path.", overridden);
                return overridden;
            }
            var state = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
            // A relative one is invalid (XDG Base Directory: "must be absolute", else ignored): taken relative to the working
            // directory, each directory a command ran in would hold a state of its own, and commands would not find each other's.
            if (string.IsNullOrEmpty(state) || !Path.IsPathRooted(state)) state = Path.Combine(Home() ?? NoHome, ".local", "state");
            return Path.Combine(state, "SoftDirty", "write-tracking");
        }
    }

    /// <summary>Stands for the home directory where the user has none, so that the state folder never lies in the working directory.</summary>
    private const string NoHome = "/nonexistent";

    /// <summary>
    /// The user's home directory: $HOME where absolute, else the user database's; null where neither is. .NET's
    /// UserProfile is "" for a home that does not exist (HOME=/nonexistent, as for nobody and many services) or is
    /// relative, which put the state folder under the working directory of each command (a Disable run from another
    /// directory found no state and left the tracking in the target).
    /// </summary>
    private static string? Home()
    {
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile, Environment.SpecialFolderOption.DoNotVerify);
        if (!Path.IsPathRooted(home)) home = FileNative.PasswdHome(FileNative.Geteuid());
        return Path.IsPathRooted(home) ? home : null;
    }

    /// <summary>
    /// Refuses to make the state folder where its home directory does not exist: the module makes the folders of its state,
    /// never a home (root would create /nonexistent).
    /// </summary>
    private static void RequireHome(string folder)
    {
        var overridden = Environment.GetEnvironmentVariable(FolderVariable);
        var xdg = Environment.GetEnvironmentVariable("XDG_STATE_HOME");
        if (!string.IsNullOrEmpty(overridden) || !string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg)) return;
        var home = Home();
        if (home is not null && Directory.Exists(home)) return;
        throw new EngineException(EngineError.ImageWriteError,
            $"The write-tracking state folder {folder} would lie in the home directory {home ?? "(none)"}, which does not exist; the module does not create a home. Set $XDG_STATE_HOME or ${FolderVariable} to a folder of your own.", folder, Errno.ENOENT);
    }

    /// <summary>The most bytes a state file may have (a few hundred in practice).</summary>
    private const long MaxStateBytes = 64 << 10;

    private static string FileOf(int pid) => Path.Combine(Folder, $"{pid}.json");

    /// <summary>
    /// The state folder, checked: null where it does not exist and <paramref name="create"/> is false;
    /// created 0700 where missing; UnsafeDestination where it is a link, not a directory, another user's or
    /// writable by group or others (someone else could plant or swap the state of a process).
    /// </summary>
    private static string? SafeFolder(bool create)
    {
        using var dir = OpenSafeFolder(create);
        return dir?.Path is null ? null : Path.GetFullPath(Folder);
    }

    /// <summary>
    /// The state folder opened and checked on its descriptor (<see cref="SafeDirectory"/>: every folder above is the
    /// caller's or root's, and sticky where others may write), the folder itself the caller's and writable by no one
    /// else; created 0700 (with missing folders above) where <paramref name="create"/>, else null where missing.
    /// </summary>
    private static SafeDirectory? OpenSafeFolder(bool create)
    {
        var folder = Path.GetFullPath(Folder);
        const string What = "The write-tracking state folder";
        SafeDirectory? dir;
        if (create)
        {
            RequireHome(folder);
            using var parent = SafeDirectory.OpenParent(folder, What, create: true, out var name);
            dir = parent.Lstat(name, out _) is null ? CreateOrOpen(parent, name) : parent.OpenOwnDirectory(name);
        }
        else
        {
            using var parent = SafeDirectory.Open(Path.GetDirectoryName(folder) ?? "/", What, folder, create: false);
            if (parent is null) return null;
            dir = parent.OpenOwnDirectory(Path.GetFileName(folder));
        }
        if (dir is null) return null;
        const uint GroupOrOtherWrite = FileNative.S_IWGRP | FileNative.S_IWOTH;
        if (FileNative.Fstat(dir.Fd, out _) is not { } s || (s.Permissions & GroupOrOtherWrite) != 0)
        {
            dir.Dispose();
            throw new EngineException(EngineError.UnsafeDestination,
                $"{What} {folder} is writable by others; the module keeps its state only in a folder of its own (0700). Remove it or set ${FolderVariable} to one.", folder);
        }
        return dir;
    }

    /// <summary>
    /// Whether the state folder can be used (opened, or made where missing) and, where not, why: Auto takes Hash instead
    /// of the write tracking of another process where it cannot keep that tracking's state (a user without a home).
    /// </summary>
    public static bool FolderUsable(out string? reason)
    {
        reason = null;
        try
        {
            using var dir = OpenSafeFolder(create: true);
            return true;
        }
        catch (EngineException ex)
        {
            reason = $"the write-tracking state folder cannot be used ({ex.Message})";
            return false;
        }
    }

    private static SafeDirectory CreateOrOpen(SafeDirectory parent, string name)
    {
        try { return parent.CreateDirectory(name); }
        catch (EngineException ex) when (ex.Errno == Errno.EEXIST) { return parent.OpenOwnDirectory(name)!; } // made meanwhile (another command)
    }

    /// <summary>The state of <paramref name="pid"/>, or null when tracking is not enabled there (a stale or malformed file is removed).</summary>
    /// <remarks>
    /// PermissionDenied, the file kept, where the process hides its descriptors now (not dumpable: PR_SET_DUMPABLE 0, a
    /// setuid program; its own user may not read /proc/PID/fd): the tracking cannot be checked, which is not a stale state.
    /// Deleted, the tracking stayed in the process with no state, and no command of the module could disable it any more.
    /// </remarks>
    public static WriteTrackingState? Load(int pid)
    {
        // An exec under way hides the descriptors of a process of this user for a moment (its new memory not dumpable yet):
        // looked at again then (round 23: a Disable said PermissionDenied, 1 in 900 unprivileged).
        for (int retry = 0; ; retry++)
        {
            try { return LoadOnce(pid); }
            catch (EngineException hidden) when (hidden.Error == EngineError.PermissionDenied && retry < HiddenRetries && ExecWait.DeniedForAMoment(pid)) { }
        }
    }

    /// <summary>How often <see cref="Load"/> looks again at a process whose descriptors an exec under way hides.</summary>
    private const int HiddenRetries = 5;

    private static WriteTrackingState? LoadOnce(int pid)
    {
        if (SafeFolder(create: false) is null) return null;
        var state = Read(pid, out bool found);
        if (!found) return null;
        if (state is not null && state.ProcessId == pid && StartTime(pid) == state.StartTime && state.Inode != 0)
        {
            if (DescriptorInode(pid, state.Descriptor) == state.Inode) return state;
            // A main thread that called pthread_exit lists no descriptor (a zombie: /proc/PID/fd is empty) while the other
            // threads run on with the descriptor table, the userfaultfd and its registrations: not stale (round 31: deleted
            // here, Disable-WriteTracking said the process had exited, and the tracking stayed in it with no state).
            if (ThreadDescriptorInode(pid, state.Descriptor) == state.Inode) return state;
            // A process that exits hides its descriptors from its own user too: its tracking ended with it (stale), never
            // PermissionDenied (seen as the unprivileged user on a target exiting under Enable-WriteTracking).
            if (!DescriptorsReadable(pid) && !InjectionSupport.HasExited(pid))
                throw new EngineException(EngineError.PermissionDenied,
                    $"The write tracking of process {pid} cannot be checked now: the process hides its descriptors (/proc/{pid}/fd; it is not dumpable, PR_SET_DUMPABLE 0, or a setuid program). Its state is kept; run as root, or again once the process is dumpable.", pid);
        }
        // Under a /proc with hidepid=1 such a process hides its start time too (/proc/PID/stat): that is no stale state either.
        if (state is not null && state.ProcessId == pid && StartTime(pid) == 0 && !ProcessStart.Absent(pid))
            throw new EngineException(EngineError.PermissionDenied,
                $"The write tracking of process {pid} cannot be checked now: /proc hides the process's start time (hidepid, and it is not dumpable now: PR_SET_DUMPABLE 0, or a setuid program). Its state is kept; run as root, or again once the process is dumpable.", pid);
        Delete(pid);
        return null;
    }

    /// <summary>The state file of <paramref name="pid"/> as it is, unchecked (null where malformed); <paramref name="found"/>: whether there is one.</summary>
    private static WriteTrackingState? Read(int pid, out bool found)
    {
        found = true;
        try { return JsonSerializer.Deserialize<WriteTrackingState>(SafeFiles.ReadRegular(FileOf(pid), MaxStateBytes)); }
        catch (FileNotFoundException) { found = false; return null; }
        catch (JsonException) { return null; }
        catch (EngineException ex) when (ex.Error is EngineError.ImageCorrupt or EngineError.ImageIncomplete) { return null; } // a FIFO, link or huge file planted there
    }

    /// <summary>Whether this process may read the descriptors of <paramref name="pid"/> (/proc/PID/fd needs ptrace access).</summary>
    private static bool DescriptorsReadable(int pid)
    {
        try
        {
            foreach (var _ in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd")) break;
            return true;
        }
        catch (UnauthorizedAccessException) { return false; }
        catch (IOException ex)
        {
            // Out of descriptors says nothing of the process: read as "gone", its state was deleted while its tracking lived on.
            ProcReadFailure.ThrowIfLimit(ex, $"/proc/{pid}/fd");
            return true; // gone: stale
        }
    }

    /// <summary>
    /// Writes <paramref name="state"/> (a new file renamed over the old one). A failure is classed as every file the module
    /// writes (<see cref="SafeFiles.WriteFailure"/>), a directory at the file's name as one at the lock's
    /// (UnsafeDestination, <see cref="LockFile"/>); the prune that follows is housekeeping and never fails the save (a
    /// failure there reported a recorded reset as not recorded).
    /// </summary>
    public static void Save(WriteTrackingState state)
    {
        using (var dir = OpenSafeFolder(create: true)!)
        {
            // Its folder is not synced: a state describes a live process, which a crash ends with the boot (states of another boot are stale).
            try { SafeFiles.WriteReplacing(dir, $"{state.ProcessId}.json", JsonSerializer.SerializeToUtf8Bytes(state), syncFolder: false); }
            catch (EngineException ex) when (ex.Errno == FileNative.EISDIR)
            {
                throw new EngineException(EngineError.UnsafeDestination,
                    $"The write-tracking state file {dir.Combine($"{state.ProcessId}.json")} is not a regular file (a directory); remove it.", state.ProcessId, ex.Errno, ex);
            }
        }
        try
        {
            var folder = Path.GetFullPath(Folder);
            Prune(folder);
            if (folder == Path.GetFullPath(BaseFolder)) PruneNamespaces(folder);
        }
        // The state is in place; a prune that cannot tell whether a process is gone (out of descriptors: ResourceLimit) removes
        // nothing. That failed the save after the state was written, so an Enable closed the userfaultfd it had just recorded (round 30).
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or EngineException) { }
    }

    /// <summary>The prefix of the subfolders of <see cref="Folder"/> that commands in other pid namespaces use.</summary>
    private const string NamespaceFolderPrefix = "pidns-";

    /// <summary>
    /// From the host's pid namespace: removes the state and lock files in the pidns-INODE subfolders (commands in containers,
    /// <see cref="Folder"/>) of processes no longer on the system, none of which started at the state's start time
    /// (<see cref="SystemStartTimes"/>, which only a command that sees every process can tell; elsewhere nothing is removed).
    /// A container that ended left its states there for good: no command of its namespace came again to prune them. The
    /// subfolders stay (a command in a container may be about to write into one); links are not followed.
    /// </summary>
    private static void PruneNamespaces(string baseFolder)
    {
        System.Collections.Generic.HashSet<ulong>? starts = null;
        foreach (var sub in Directory.EnumerateDirectories(baseFolder, NamespaceFolderPrefix + "*"))
        {
            if (FileNative.Lstat(sub, out _) is not { Type: FileNative.S_IFDIR }) continue;
            foreach (var f in Directory.EnumerateFiles(sub, "*.json"))
            {
                WriteTrackingState? state;
                try { state = JsonSerializer.Deserialize<WriteTrackingState>(SafeFiles.ReadRegular(f, MaxStateBytes)); }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or EngineException) { continue; }
                if (state is null || state.StartTime == 0) continue; // malformed: a command of its namespace tells
                starts ??= SystemStartTimes.Read();
                if (starts is null) return;
                if (SystemStartTimes.Near(starts, state.StartTime)) continue;
                foreach (var gone in new[] { f, f[..^".json".Length] + LockSuffix })
                {
                    try { File.Delete(gone); }
                    catch (IOException) { }
                    catch (UnauthorizedAccessException) { }
                }
            }
        }
    }

    /// <summary>
    /// Removes the state and lock files of processes that are gone (a target that exited keeps no file behind): provably gone
    /// (<see cref="ProcessStart.Absent"/>), never one whose start time cannot be read now.
    /// </summary>
    private static void Prune(string folder)
    {
        foreach (var f in Directory.EnumerateFiles(folder, "*.*"))
            if ((f.EndsWith(".json", StringComparison.Ordinal) || f.EndsWith(LockSuffix, StringComparison.Ordinal))
                && int.TryParse(Path.GetFileNameWithoutExtension(f), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid) && StartTime(pid) == 0 && ProcessStart.Absent(pid))
            {
                try { File.Delete(f); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
    }

    /// <summary>
    /// The inode of descriptor <paramref name="fd"/> of <paramref name="pid"/> when it is a userfaultfd
    /// ("ino:" of /proc/PID/fdinfo/FD: each userfaultfd has an inode of its own), else 0.
    /// </summary>
    public static ulong DescriptorInode(int pid, int fd) => fd < 0 ? 0 : DescriptorInode($"/proc/{pid}", fd);

    /// <summary>The same, of the process or thread folder <paramref name="task"/> (/proc/PID or /proc/PID/task/TID).</summary>
    private static ulong DescriptorInode(string task, int fd)
    {
        if (fd < 0 || ProcLink.Read($"{task}/fd/{fd}", out _) != UffdAbi.FdLink) return 0;
        try
        {
            foreach (var line in File.ReadLines($"{task}/fdinfo/{fd}"))
                if (line.StartsWith("ino:", StringComparison.Ordinal) && ulong.TryParse(line.AsSpan(4).Trim(), out ulong ino)) return ino;
        }
        catch (IOException ex) { ProcReadFailure.ThrowIfLimit(ex, $"{task}/fdinfo/{fd}"); }
        catch (UnauthorizedAccessException) { }
        return 0;
    }

    /// <summary>
    /// The inode of the userfaultfd descriptor <paramref name="fd"/> as a live thread of <paramref name="pid"/> sees it
    /// (/proc/PID/task/TID/fd), where the leader is a zombie that stays one (pthread_exit, not an exec under way:
    /// <see cref="ExecWait.LeaderReplaced"/>); else 0. The threads of a process share one descriptor table, which a zombie
    /// leader no longer shows.
    /// </summary>
    private static ulong ThreadDescriptorInode(int pid, int fd)
    {
        if (fd < 0 || !InjectionSupport.HasExited(pid) || ProcPageSource.LiveThreads(pid) == 0 || ExecWait.LeaderReplaced(pid)) return 0;
        string[] tasks;
        try { tasks = Directory.GetDirectories($"/proc/{pid}/task"); }
        catch (IOException ex)
        {
            ProcReadFailure.ThrowIfLimit(ex, $"/proc/{pid}/task");
            return 0;
        }
        catch (UnauthorizedAccessException) { return 0; }
        foreach (var task in tasks)
        {
            if (!int.TryParse(Path.GetFileName(task), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int tid) || tid == pid) continue;
            if (SoftDirty.Tracking.ProcessFreeze.ThreadState(Path.Combine(task, "stat")) is null or 'Z' or 'X') continue;
            ulong inode = DescriptorInode(task, fd);
            if (inode != 0) return inode;
        }
        return 0;
    }

    public static void Delete(int pid)
    {
        try { File.Delete(FileOf(pid)); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>The start time of <paramref name="pid"/> in clock ticks after boot (<see cref="ProcessStart"/>); 0 when the process is gone.</summary>
    public static ulong StartTime(int pid) => ProcessStart.Ticks(pid) ?? 0;

    /// <summary>
    /// Whether descriptor <paramref name="fd"/> of <paramref name="pid"/> is a userfaultfd. ResourceLimit where the link cannot
    /// be read for want of memory (<see cref="ProcLink"/>): read as "no", a later command deleted the state of a tracking that
    /// lived on, and Enable saved a state no command could match to its descriptor (round 29).
    /// </summary>
    public static bool IsUserfaultfd(int pid, int fd) => ProcLink.Read($"/proc/{pid}/fd/{fd}", out _) == UffdAbi.FdLink;

    /// <summary>The userfaultfd descriptors of <paramref name="pid"/> (from /proc/PID/fd), for diagnostics and tests.</summary>
    public static int[] UserfaultfdDescriptors(int pid)
    {
        var found = new System.Collections.Generic.List<int>();
        try
        {
            foreach (var f in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
                if (int.TryParse(Path.GetFileName(f), out int fd) && IsUserfaultfd(pid, fd)) found.Add(fd);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        found.Sort();
        return found.ToArray();
    }

    /// <summary>
    /// Marks the tracking of <paramref name="pid"/> as kept between commands (<see cref="WriteTrackingState.Kept"/>);
    /// call under <see cref="Lock"/>. Returns the state, null where tracking is not enabled.
    /// </summary>
    public static WriteTrackingState? MarkKept(int pid)
    {
        var state = Load(pid);
        if (state is null || state.Kept) return state;
        state.Kept = true;
        Save(state);
        return state;
    }

    /// <summary>
    /// Adds the command <paramref name="token"/> of this process to the users of the tracking <paramref name="state"/>
    /// (loaded under <see cref="Lock"/>) where it is not kept and is counted (<see cref="WriteTrackingState.Counted"/>, or
    /// <paramref name="enabledHere"/>: this command enabled it for itself), and saves it; returns whether it was added.
    /// </summary>
    public static bool Join(WriteTrackingState state, Guid token, bool enabledHere)
    {
        if (state.Kept || !(enabledHere || state.Counted)) return false;
        state.Counted = true;
        // Commands whose PowerShell is gone (killed outright) are dropped here too, not only when a command ends: watches
        // killed again and again grew the file past MaxStateBytes, and the state was then deleted as malformed (the
        // tracking left in the process with no state, never to be disabled or used again by the module).
        state.Users.RemoveAll(u => StartTime(u.ProcessId) != u.StartTime);
        int self = Environment.ProcessId;
        state.Users.Add(new WriteTrackingUser(self, StartTime(self), token));
        Save(state);
        return true;
    }

    /// <summary>
    /// Removes the command <paramref name="token"/> (and commands whose process is gone) from the users of the tracking of
    /// <paramref name="pid"/>; call under <see cref="Lock"/>. Returns the state when the tracking is now unused (not kept,
    /// no other command left), for the caller to disable; null where it is not enabled or still used.
    /// </summary>
    public static WriteTrackingState? Leave(int pid, Guid token)
    {
        WriteTrackingState? state;
        try { state = Load(pid); }
        catch (EngineException ex) when (ex.Error == EngineError.PermissionDenied)
        {
            // Hidden now (not dumpable): this command leaves all the same, so that the last one to end once it shows again disables it.
            if (Read(pid, out _) is { } hidden && hidden.Users.RemoveAll(u => u.Token == token) > 0) Save(hidden);
            throw;
        }
        if (state is null) return null;
        // Only a command still listed ends it: a tracking disabled and enabled again meanwhile is not the one it used.
        bool listed = state.Users.RemoveAll(u => u.Token == token) > 0;
        state.Users.RemoveAll(u => StartTime(u.ProcessId) != u.StartTime);
        if (listed && state.Counted && !state.Kept && state.Users.Count == 0) return state;
        Save(state);
        return null;
    }

    private const string LockSuffix = ".lock";

    /// <summary>
    /// Takes the write-tracking lock of <paramref name="pid"/> (flock of PID.lock in the state folder, created 0600
    /// without following links), waiting while another command or session holds it; Ctrl+C
    /// (<paramref name="cancel"/>) ends the wait. Held from a tracker's check of the state to the reset it records,
    /// and around enabling and disabling. Disposing it releases the lock, and removes the lock file where the process
    /// has no tracking state (a command waiting on that file then takes the lock on the new one).
    /// </summary>
    public static IDisposable Lock(int pid, CancellationToken cancel)
    {
        var name = pid.ToString(System.Globalization.CultureInfo.InvariantCulture) + LockSuffix;
        var handle = LockFile.Take(() => OpenSafeFolder(create: true)!, name, "write-tracking lock", pid, cancel);
        return new HeldLock(handle, Path.Combine(Path.GetFullPath(Folder), name), FileOf(pid));
    }

    /// <summary>
    /// <see cref="Lock"/> where the state folder exists; null where it does not, and nothing made: no process has a tracking
    /// state then, and a look that changes nothing (Enable-WriteTracking -WhatIf) made the folder before (round 32).
    /// </summary>
    public static IDisposable? LockWhereFolder(int pid, CancellationToken cancel)
    {
        using (var dir = OpenSafeFolder(create: false)) if (dir is null) return null;
        return Lock(pid, cancel);
    }

    /// <summary>A held lock: released on dispose, its file removed first where the process has no state file.</summary>
    private sealed class HeldLock(SafeFileHandle handle, string lockPath, string statePath) : IDisposable
    {
        public void Dispose()
        {
            if (handle.IsClosed) return;
            try
            {
                if (!File.Exists(statePath)) File.Delete(lockPath); // still held: no one else can have locked this name meanwhile
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            finally { handle.Dispose(); }
        }
    }
}
