using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Runtime.CompilerServices;
using System.Text;
using System.Threading;
using Microsoft.Win32.SafeHandles;
using SoftDirty.Images;
using SoftDirty.Injection;

namespace SoftDirty.Tracking;

/// <summary>
/// The tracking epoch of each process: every soft-dirty clear the module makes goes through
/// <see cref="PageSourceExtensions.ClearRefs"/>, which records a new epoch here. An incremental save trusts
/// soft-dirty only while the epoch its parent armed is still the current one; after any other clear by the
/// module (Clear-SoftDirty, Watch-DirtyPage, a migration, another chain) it compares page contents instead.
/// A real process is known by boot id, pid namespace, its pid there and start time (pids are reused; <see cref="FileKey"/>: the
/// same from the host and from a container that shares the folders), its epoch kept in a per-user
/// 0700 folder (softdirty-epochs-UID in /run/user/UID while that is the user's, and in /tmp, regardless of the environment) that every command and session sees; an
/// emulated process by its object, in memory. Root acting on another user's process records and reads in that user's folders
/// too (opened without following links, files made theirs), so that each sees the other's clears. Clears the module cannot see (CRIU, another tool writing
/// clear_refs) are not recorded: Save-MemoryImage -Verify compares contents whatever the epoch says.
/// A command reads soft-dirty, checks the epoch, records a new one and clears under the process's <see cref="Lock"/>,
/// so two commands never interleave their records and clears.
/// </summary>
internal static class TrackingEpoch
{
    private static readonly ConditionalWeakTable<object, string> EmulatedIds = new();
    private static readonly ConditionalWeakTable<object, StrongBox<string>> EmulatedEpochs = new();
    private static readonly ConditionalWeakTable<object, object> EmulatedGates = new();
    private const long MaxEpochFileBytes = 256;
    private const string LockSuffix = ".lock";

    /// <summary>The step <see cref="Lock"/> marks (<see cref="InjectionSteps"/>) when another command holds the lock and it waits.</summary>
    public const string LockWaitStep = "SoftDirtyLockWait";

    /// <summary>The step a soft-dirty clear marks between recording its epoch and clearing (tests stop or interleave there).</summary>
    public const string RecordedStep = "SoftDirtyEpochRecorded";

    /// <summary>How long one wait for an emulated process's lock lasts before Ctrl+C is checked again.</summary>
    private static readonly TimeSpan EmulatedLockRetry = TimeSpan.FromMilliseconds(5);

    /// <summary>The identities of the real processes whose lock this thread holds, with how many times (re-entry).</summary>
    [ThreadStatic] private static Dictionary<string, int>? _held;

    /// <summary>The other user whose folders this thread locked for each identity it holds (<see cref="ForeignOwner"/> when the lock was taken).</summary>
    [ThreadStatic] private static Dictionary<string, uint?>? _heldFor;

    /// <summary>The object whose tracking state a source shares (wrappers unwrapped).</summary>
    private static object Root(IPageSource source)
    {
        object o = source;
        for (int i = 0; i < 16 && o is IPageSourceWrapper w; i++) o = w.Inner;
        return o;
    }

    /// <summary>Who the process is, beyond its pid: "boot/pid/starttime" for a real one (a /proc source), "emulated:GUID" for any other (an emulated process, a test double); null where unknown (exited).</summary>
    public static string? Identity(IPageSource source)
    {
        if (Root(source) is not ProcPageSource) return EmulatedIds.GetValue(Root(source), _ => "emulated:" + Guid.NewGuid().ToString("N"));
        return RealIdentity(source.ProcessId);
    }

    /// <summary>Who the real process <paramref name="pid"/> is: "boot/pid/starttime"; null where unknown (exited).</summary>
    private static string? RealIdentity(int pid)
    {
        var start = StartTime(pid);
        var boot = BootId();
        return start is null || boot is null ? null : $"{boot}/{pid}/{start}";
    }

    /// <summary>Records a new epoch for a soft-dirty clear of <paramref name="source"/> about to be made; returns it (null where it cannot be kept).</summary>
    /// <remarks>
    /// Written into every state folder usable now (<see cref="StateDirectories"/>), and returned as <see cref="Current"/> then reads
    /// it: which folders there are is part of the epoch. /run/user/UID comes and goes with the user's logins, so a clear made in a
    /// login (recorded there) and a chain armed by a cron job (in /tmp) must still see each other's records.
    /// </remarks>
    public static string? Record(IPageSource source)
    {
        var epoch = Guid.NewGuid().ToString("N");
        if (Root(source) is not ProcPageSource)
        {
            EmulatedEpochs.AddOrUpdate(Root(source), new StrongBox<string>(epoch));
            return epoch;
        }
        var id = FileKey(source.ProcessId);
        if (id is null) return null;
        var foreign = ForeignOwner(source.ProcessId);
        // The process's user changed since its lock was taken (a daemon dropped privileges to serve a user): the new user's
        // commands did not wait for this one, and a clear of theirs between this record and this clear would be trusted by them.
        if (_heldFor is { } heldFor && heldFor.TryGetValue(id, out var lockedFor) && lockedFor != foreign)
            throw new EngineException(EngineError.ProcIOError,
                $"Process {source.ProcessId} changed its user during the command (from {lockedFor?.ToString(CultureInfo.InvariantCulture) ?? "root"} to {foreign?.ToString(CultureInfo.InvariantCulture) ?? "root"}): not clearing its soft-dirty bits under a lock that user's commands do not take. Run the command again.", source.ProcessId);
        return RecordReal(source.ProcessId, id, foreign, epoch) ? Current(source) : null;
    }

    /// <summary>
    /// Records a new epoch for each of <paramref name="sharers"/>, processes that share the memory of one whose soft-dirty
    /// bits are cleared (<see cref="MemorySharers"/>): clear_refs clears the bits of the address space, so the clear of one
    /// is the clear of all, and a chain or watch of another must not trust its bits after it. Called before the clear and
    /// again after it, without the sharers' locks (a command holding one takes the other's; no lock order would keep two
    /// such commands from waiting on each other): a command of a sharer that checks its epoch after reading its bits sees
    /// the record made before the clear, and one that armed its epoch before the clear sees the record made after it.
    /// </summary>
    public static void RecordSharers(IReadOnlyList<int> sharers)
    {
        foreach (var pid in sharers)
            if (FileKey(pid) is { } id) RecordReal(pid, id, ForeignOwner(pid), Guid.NewGuid().ToString("N"));
    }

    /// <summary>The processes that share the memory of the real process behind <paramref name="source"/> (<see cref="MemorySharers"/>); none for an emulated one.</summary>
    public static IReadOnlyList<int> Sharers(IPageSource source) =>
        Root(source) is ProcPageSource ? MemorySharers.Find(source.ProcessId) : Array.Empty<int>();

    /// <summary>Writes <paramref name="epoch"/> as the record <paramref name="id"/> (<see cref="FileKey"/>) into every state folder (and its owner's, for root); false where one failed.</summary>
    private static bool RecordReal(int pid, string id, uint? foreign, string epoch)
    {
        var dirs = StateDirectories();
        if (dirs.Length == 0) return false;
        // Every folder, even after one failed: a folder left with the previous epoch would keep its readers trusting it.
        bool recorded = true;
        var legacy = LegacyKey(pid);
        foreach (var dir in dirs)
        {
            recorded &= RecordIn(dir, id, epoch, pid);
            if (legacy is not null && FileNative.Lstat(Path.Combine(dir, legacy), out _) is not null) recorded &= RecordIn(dir, legacy, epoch, pid);
        }
        if (legacy is not null)
            foreach (var dir in EarlierFolders(dirs))
                if (FileNative.Lstat(Path.Combine(dir, legacy), out _) is not null) recorded &= RecordIn(dir, legacy, epoch, pid);
        if (foreign is { } owner)
            foreach (var runtime in new[] { true, false })
            {
                using var dir = OpenOwnersFolder(owner, runtime);
                if (dir is null) continue;
                recorded &= RecordForOwner(dir, id, epoch, owner, pid);
                if (legacy is not null && dir.Lstat(legacy, out _) is not null) recorded &= RecordForOwner(dir, legacy, epoch, owner, pid);
            }
        return recorded;
    }

    /// <summary>
    /// The owner of the process behind <paramref name="pid"/> where the caller is root and the owner another user, else null. That user's commands read only their own folders: a clear by root recorded only in root's was not seen by
    /// the user's chain or watch, which trusted soft-dirty bits root's clear had taken (and root's chain missed the user's clears).
    /// Root's records go into the owner's folders too, and root reads them there. Only root's: another user cannot write in them.
    /// </summary>
    private static uint? ForeignOwner(int pid)
    {
        if (FileNative.Geteuid() != 0) return null;
        return FileNative.Stat("/proc/" + pid.ToString(CultureInfo.InvariantCulture), out _) is { } st && st.Uid != 0 ? st.Uid : null;
    }

    /// <summary>
    /// The pid of <paramref name="pid"/> in its own pid namespace (the last of NSpid in /proc/PID/status; <paramref name="pid"/>
    /// where there is no NSpid, before Linux 4.1), null where unreadable (gone); <paramref name="ours"/>: whether that namespace
    /// is this command's (NSpid lists the pids from the reader's namespace down to the process's).
    /// </summary>
    private static string? InnermostPid(int pid, out bool ours)
    {
        var text = pid.ToString(CultureInfo.InvariantCulture);
        ours = true;
        try
        {
            foreach (var line in File.ReadLines($"/proc/{text}/status"))
                if (line.StartsWith("NSpid:", StringComparison.Ordinal))
                {
                    var pids = line["NSpid:".Length..].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                    ours = pids.Length == 1;
                    return pids.Length > 0 ? pids[^1] : null;
                }
            return text;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            ProcReadFailure.ThrowIfLimit(ex, $"/proc/{text}/status");
            return null;
        }
    }

    /// <summary>
    /// The state folder of <paramref name="owner"/> in their runtime folder or in /tmp, opened without following links and
    /// checked on its descriptor (theirs, 0700); null where there is none such (root never makes one for them: a folder that
    /// does not exist holds no epoch of theirs to keep current). Everything in it is then done relative to the descriptor.
    /// </summary>
    private static SafeDirectory? OpenOwnersFolder(uint owner, bool runtime)
    {
        var uid = owner.ToString(CultureInfo.InvariantCulture);
        try
        {
            using var top = SafeDirectory.Open(runtime ? RuntimeRoot : SharedTempFolder, "The soft-dirty epoch folder", "softdirty-epochs-" + uid, create: false);
            if (!runtime) return top?.OpenPrivateDirectoryOf("softdirty-epochs-" + uid, owner);
            using var user = top?.OpenPrivateDirectoryOf(uid, owner);
            return user?.OpenPrivateDirectoryOf("softdirty-epochs-" + uid, owner);
        }
        // Absent, or not the owner's private folder: none. Out of descriptors (ResourceLimit) or a failing disk is no answer: read
        // as "none", a clear by root left the owner's record as it was (the owner's chain then trusted the bits root took), and
        // root's epoch left out the owner's clears (round 28).
        catch (EngineException ex) when (ex.Error is not (EngineError.ResourceLimit or EngineError.ImageWriteError)) { return null; }
    }

    /// <summary>Writes <paramref name="epoch"/> as <paramref name="name"/> in a folder of <paramref name="owner"/> (a new file of theirs, 0600, renamed over it); false where that failed, the previous record removed (as <see cref="RecordIn"/>).</summary>
    private static bool RecordForOwner(SafeDirectory dir, string name, string epoch, uint owner, int pid)
    {
        var temp = "." + Guid.NewGuid().ToString("N");
        try
        {
            bool written = false;
            using (var fs = dir.CreateFile(temp))
            {
                if (FileNative.Fchown((int)fs.SafeFileHandle.DangerousGetHandle(), owner, KeepGroup) == 0)
                {
                    fs.Write(Encoding.ASCII.GetBytes(epoch));
                    fs.Flush();
                    written = true;
                }
            }
            if (written && dir.RenameTo(temp, dir, name, replace: true) == 0) return true;
        }
        catch (Exception ex) when (ex is EngineException or IOException) { }
        dir.Remove(temp);
        if (!dir.Remove(name) && dir.Lstat(name, out _) is not null)
            throw new EngineException(EngineError.ProcIOError,
                $"The soft-dirty clear of process {pid} cannot be recorded in {dir.Path}, and its previous epoch there cannot be removed: not clearing, as a chain or watch of the process would trust the bits the clear takes.", pid);
        return false;
    }

    /// <summary>fchown's "leave the group as it is".</summary>
    private const uint KeepGroup = uint.MaxValue;

    /// <summary>
    /// Writes <paramref name="epoch"/> as <paramref name="name"/> in <paramref name="dir"/> (a new file renamed over it); false where
    /// that failed, with the previous record removed: a full /tmp left the old epoch in place while the clear went ahead, and
    /// every chain or watch armed at it trusted the bits that clear took. Where even that fails, the clear is refused.
    /// </summary>
    private static bool RecordIn(string dir, string name, string epoch, int pid)
    {
        var file = Path.Combine(dir, name);
        var tmp = Path.Combine(dir, "." + Guid.NewGuid().ToString("N"));
        string why;
        try
        {
            using (var fs = SafeFiles.CreateNew(tmp)) fs.Write(Encoding.ASCII.GetBytes(epoch));
            if (FileNative.Rename(tmp, file) == 0)
            {
                try { Prune(dir); }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { } // the record is in place
                return true;
            }
            why = Errno.Describe(System.Runtime.InteropServices.Marshal.GetLastPInvokeError());
        }
        catch (Exception ex) when (ex is EngineException or IOException or UnauthorizedAccessException) { why = ex.Message; }
        try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        try { File.Delete(file); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new EngineException(EngineError.ProcIOError,
                $"The soft-dirty clear of process {pid} cannot be recorded in {dir} ({why}), and its previous epoch {file} cannot be removed ({ex.Message}): not clearing, as a chain or watch of the process would trust the bits the clear takes. Free space there or remove the file.", pid);
        }
        return false;
    }

    /// <summary>
    /// The epoch of the last soft-dirty clear the module made of this process: "" where it made none, null
    /// where it cannot tell (no usable state folder, the process gone). For a real process, the record of every
    /// usable state folder, each named by its folder: a folder that appeared or vanished since changes it too.
    /// </summary>
    public static string? Current(IPageSource source)
    {
        if (Root(source) is not ProcPageSource)
            return EmulatedEpochs.TryGetValue(Root(source), out var box) ? box.Value : "";
        var id = FileKey(source.ProcessId);
        var legacy = LegacyKey(source.ProcessId);
        var dirs = StateDirectories();
        if (id is null || dirs.Length == 0) return null;
        var all = new StringBuilder();
        foreach (var dir in dirs)
        {
            string value;
            string? before = null;
            try
            {
                value = ReadRecord(dir, id) ?? "";
                if (legacy is not null) before = ReadRecord(dir, legacy);
            }
            catch (Exception ex) when (ex is EngineException or IOException or UnauthorizedAccessException) { return null; }
            if (all.Length > 0) all.Append(';');
            all.Append(dir).Append('=').Append(value);
            // Only where an earlier version made one: a chain that never met one keeps the epoch it armed.
            if (before is not null) all.Append(';').Append(dir).Append(LegacyMark).Append(before);
        }
        if (legacy is not null)
            foreach (var dir in EarlierFolders(dirs))
            {
                string? before;
                try { before = ReadRecord(dir, legacy); }
                catch (Exception ex) when (ex is EngineException or IOException or UnauthorizedAccessException) { return null; }
                if (before is not null) all.Append(';').Append(dir).Append(LegacyMark).Append(before);
            }
        if (ForeignOwner(source.ProcessId) is { } owner)
            foreach (var runtime in new[] { true, false })
            {
                using var dir = OpenOwnersFolder(owner, runtime);
                if (dir is null) continue;
                string? value, before = null;
                try
                {
                    value = ReadOwners(dir, id, owner);
                    if (legacy is not null)
                    {
                        try { before = ReadOwners(dir, legacy, owner) ?? throw new UnauthorizedAccessException(); }
                        catch (FileNotFoundException) { }
                    }
                }
                catch (FileNotFoundException) { value = ""; }
                catch (Exception ex) when (ex is EngineException or IOException or UnauthorizedAccessException) { return null; }
                if (value is null) return null;
                all.Append(';').Append(dir.Path).Append('=').Append(value);
                if (before is not null) all.Append(';').Append(dir.Path).Append(LegacyMark).Append(before);
            }
        return all.ToString();
    }

    /// <summary>
    /// The record <paramref name="name"/> in a folder of <paramref name="owner"/>, read by root; null where the file is not
    /// theirs (every record there is: theirs, or root's made theirs). The user can link any file they may reach into their
    /// folder (with fs.protected_hardlinks 0, root's own): its bytes were taken as the epoch and went into root's manifest.
    /// </summary>
    private static string? ReadOwners(SafeDirectory dir, string name, uint owner)
    {
        using var handle = dir.OpenRegular(name, out var st);
        if (st.Uid != owner || st.Size > MaxEpochFileBytes) return null;
        var bytes = new byte[st.Size];
        int got = 0;
        while (got < bytes.Length && RandomAccess.Read(handle, bytes.AsSpan(got), got) is int n && n > 0) got += n;
        return got == bytes.Length ? Encoding.ASCII.GetString(bytes) : null;
    }

    /// <summary>The record <paramref name="name"/> in <paramref name="dir"/>; null where there is none.</summary>
    private static string? ReadRecord(string dir, string name)
    {
        try { return Encoding.ASCII.GetString(SafeFiles.ReadRegular(Path.Combine(dir, name), MaxEpochFileBytes)); }
        catch (FileNotFoundException) { return null; }
    }

    /// <summary>What separates a folder from the record of an earlier version (<see cref="LegacyKey"/>) in <see cref="Current"/>.</summary>
    private const string LegacyMark = "#before-round-21=";

    /// <summary>
    /// The name versions of the module before round 21 gave the records and lock of <paramref name="pid"/>: "BOOT-PID-START",
    /// PID as the command sees it; null where unknown (gone). Such a version, loaded in another session of the user (one started
    /// before an upgrade) or run by another installation, records its clears and takes its lock there and reads nothing else, and
    /// this version read only <see cref="FileKey"/>: each trusted soft-dirty bits the other's clear had taken, and a chain of
    /// either silently kept stale pages. Where such a record exists, <see cref="Current"/> reads it and <see cref="Record"/>
    /// writes it too, and <see cref="Lock"/> takes its lock as well.
    /// </summary>
    internal static string? LegacyKey(int pid)
    {
        var start = StartTime(pid);
        var boot = BootId();
        return start is null || boot is null ? null : $"{boot}-{pid.ToString(CultureInfo.InvariantCulture)}-{start}";
    }

    /// <summary>
    /// The name of the records and lock of the real process <paramref name="pid"/>: "BOOT-NS.PID-START", NS the inode of the
    /// process's own pid namespace and PID its pid there (the last of NSpid), START its start time; null where unknown (gone).
    /// The same from every pid namespace that sees the process: named by the pid of the namespace looking (as the manifest's
    /// <see cref="Identity"/> is), a process of a container was two records, and a clear from the host (root's, into the
    /// owner's folders) went into one while the owner's chain in the container read the other and trusted its bits.
    /// </summary>
    internal static string? FileKey(int pid)
    {
        var start = StartTime(pid);
        var boot = BootId();
        var inner = InnermostPid(pid, out bool ours);
        // The process's ns/pid link needs ptrace access (a command in a user namespace of its own has none to its user's processes
        // outside); a process of this command's pid namespace is named by this command's own.
        var ns = ours ? PidNamespace.Of("self") : PidNamespace.Of(pid.ToString(CultureInfo.InvariantCulture));
        // The start time again after the rest: a pid reused meanwhile changes it, and the namespace and pid read may be the new process's.
        return start is null || boot is null || ns is null || inner is null || StartTime(pid) != start ? null : $"{boot}-{ns}.{inner}-{start}";
    }

    /// <summary>
    /// Takes the soft-dirty lock of the process behind <paramref name="source"/>, to hold from reading soft-dirty (and
    /// checking the epoch) to recording a new epoch and clearing. Without it two commands could interleave (A records,
    /// B records, B clears, A clears): B's next read would trust its epoch though A's clear emptied its window, and
    /// the writes between the two clears would be missing from B's chain, watch or migration for good. A real process's
    /// lock is a flock of IDENTITY.lock in the epoch folder (between commands and sessions of this user); an emulated
    /// one's a monitor of its object. Re-entrant on one thread; Ctrl+C ends a wait. Null where no state folder can be
    /// used (no epoch is kept then either: increments compare contents).
    /// </summary>
    public static IDisposable? Lock(IPageSource source, CancellationToken cancel)
    {
        var root = Root(source);
        if (root is not ProcPageSource)
        {
            var gate = EmulatedGates.GetValue(root, _ => new object());
            if (!Monitor.TryEnter(gate))
            {
                InjectionSteps.Mark(LockWaitStep);
                while (!Monitor.TryEnter(gate, EmulatedLockRetry)) cancel.ThrowIfCancellationRequested();
            }
            return new Held(() => Monitor.Exit(gate));
        }
        var id = FileKey(source.ProcessId);
        var dirs = id is null ? [] : StateDirectories();
        if (id is null || dirs.Length == 0) return null;
        var held = _held ??= new(StringComparer.Ordinal);
        if (held.TryGetValue(id, out int count))
        {
            held[id] = count + 1;
            return new Held(() => Release(id, []));
        }
        // The lock of every usable folder, always in the same order: two commands that saw different folders (the
        // runtime folder appeared or vanished between them) still meet at the one they share.
        var handles = new List<SafeFileHandle>(dirs.Length);
        uint? lockedFor;
        // A lock file that is one this command holds already (a hard link between the folders, one folder bind-mounted
        // on the other: /run and /tmp are often one filesystem) is held: waiting for it was waiting for itself, forever.
        var files = new HashSet<(string, ulong)>();
        bool Held(FileNative.PathStatus st) => files.Contains((st.Device, st.Inode));
        void Add(SafeFileHandle? h)
        {
            if (h is null) return;
            handles.Add(h);
            if (FileNative.Fstat((int)h.DangerousGetHandle(), out _) is { } st) files.Add((st.Device, st.Inode));
        }
        try
        {
            // Then the lock an earlier version takes (LegacyKey), after this version's: such a version takes only that one, so no
            // order of the two makes commands wait on each other.
            var legacy = LegacyKey(source.ProcessId);
            foreach (var name in legacy is null ? new[] { id } : new[] { id, legacy })
                foreach (var dir in name == id ? dirs : [.. dirs, .. EarlierFolders(dirs)])
                    Add(LockFile.TakeUnlessHeld(() => SafeDirectory.Open(dir, "The soft-dirty epoch folder", dir, create: false)
                            ?? throw new EngineException(EngineError.ProcIOError, $"The soft-dirty epoch folder {dir} was removed.", source.ProcessId),
                        name + LockSuffix, "soft-dirty lock", source.ProcessId, Held, cancel, () => InjectionSteps.Mark(LockWaitStep)));
            lockedFor = ForeignOwner(source.ProcessId);
            if (lockedFor is { } owner)
                foreach (var name in legacy is null ? new[] { id } : new[] { id, legacy })
                    foreach (var runtime in new[] { true, false })
                    {
                        using (var present = OpenOwnersFolder(owner, runtime)) if (present is null) continue;
                        Add(LockFile.TakeUnlessHeld(() => OwnersLockFolder(owner, runtime, name + LockSuffix, source.ProcessId),
                            name + LockSuffix, "soft-dirty lock", source.ProcessId, Held, cancel, () => InjectionSteps.Mark(LockWaitStep)));
                    }
        }
        catch
        {
            foreach (var h in handles) h.Dispose();
            throw;
        }
        held[id] = 1;
        (_heldFor ??= new(StringComparer.Ordinal))[id] = lockedFor;
        return new Held(() => Release(id, handles));
    }

    /// <summary>
    /// The owner's folder for <see cref="LockFile.Take"/>, with the lock file made theirs where missing (a lock file of root's
    /// there would keep the owner's own commands out: they open it read-write).
    /// </summary>
    private static SafeDirectory OwnersLockFolder(uint owner, bool runtime, string name, int pid)
    {
        var dir = OpenOwnersFolder(owner, runtime)
            ?? throw new EngineException(EngineError.ProcIOError, $"The soft-dirty epoch folder of user {owner} was removed.", pid);
        int fd = FileNative.OpenAt(dir.Fd, name, FileNative.O_WRONLY | FileNative.O_CREAT | FileNative.O_EXCL | FileNative.O_NOFOLLOW | FileNative.O_CLOEXEC, (uint)ImageFormat.FileMode);
        if (fd >= 0)
        {
            FileNative.Fchmod(fd, (uint)ImageFormat.FileMode);
            FileNative.Fchown(fd, owner, KeepGroup);
            FileNative.Close(fd);
        }
        return dir;
    }

    private static void Release(string id, List<SafeFileHandle> handles)
    {
        var held = _held!;
        if (held[id] > 1) { held[id]--; return; }
        held.Remove(id);
        _heldFor?.Remove(id);
        foreach (var h in handles) h.Dispose();
    }

    /// <summary>A held lock, released once on dispose.</summary>
    private sealed class Held(Action release) : IDisposable
    {
        private Action? _release = release;

        public void Dispose()
        {
            var r = _release;
            _release = null;
            r?.Invoke();
        }
    }

    /// <summary>The folder of the users' runtime folders (/run/user/UID); tests point it elsewhere.</summary>
    internal static string RuntimeRoot { get; set; } = "/run/user";

    /// <summary>The shared temp folder the state folder is also kept in (not $TMPDIR: see <see cref="StateDirectories"/>); tests point it elsewhere.</summary>
    internal static string SharedTempFolder { get; set; } = "/tmp";

    /// <summary>The first of <see cref="StateDirectories"/>, or null where there is none.</summary>
    public static string? StateDirectory() => StateDirectories() is [var first, ..] ? first : null;

    /// <summary>
    /// The per-user state folders (created 0700) usable now: softdirty-epochs-UID in /run/user/UID where that is the user's,
    /// and in /tmp; a folder that exists as a link, is another user's or open to others is left out. Chosen from the uid alone,
    /// never from the environment: every command of the user must see the same epochs and locks; with $XDG_RUNTIME_DIR (or
    /// $TMPDIR) a session that has it (a login) and one that has not or has another (cron, sudo, a service) kept two folders,
    /// and a chain trusted soft-dirty that the other cleared. Both folders, not the first: /run/user/UID exists only while
    /// the user is logged in, and with one folder a chain armed in /tmp (cron, no login) trusted soft-dirty that a login cleared
    /// in /run/user/UID, once the login had ended.
    /// </summary>
    public static string[] StateDirectories()
    {
        uint uid = FileNative.Geteuid();
        var name = $"softdirty-epochs-{uid}";
        var runtime = Path.Combine(RuntimeRoot, uid.ToString(CultureInfo.InvariantCulture));
        bool hasRuntime = FileNative.Lstat(runtime, out _) is { Type: FileNative.S_IFDIR } r && r.Uid == uid;
        var found = new List<string>(2);
        foreach (var dir in hasRuntime ? new[] { Path.Combine(runtime, name), Path.Combine(SharedTempFolder, name) } : [Path.Combine(SharedTempFolder, name)])
            if (Usable(dir, uid)) found.Add(dir);
        return found.ToArray();
    }

    /// <summary>The environment as versions before round 10 read it ($XDG_RUNTIME_DIR, $TMPDIR); tests point it elsewhere.</summary>
    internal static Func<string, string?> EnvironmentVariable { get; set; } = Environment.GetEnvironmentVariable;

    /// <summary>
    /// The folders versions before round 10 (commit 0d09890) kept their records and locks in, as this command's environment names
    /// them, beyond <paramref name="dirs"/>: softdirty-epochs-UID in $XDG_RUNTIME_DIR where that is the user's folder, and in $TMPDIR
    /// (/tmp where unset). Such a version chose its one folder from its environment; with $TMPDIR or $XDG_RUNTIME_DIR elsewhere than
    /// /tmp and /run/user/UID, round 26 (which reads their records in this version's folders only) never saw its clears, nor it
    /// this version's, and a chain of either kept stale pages. Only folders that exist and are the user's alone (0700, no link):
    /// none is made, as only such a version makes them. A version run with another environment than this command's stays unseen.
    /// </summary>
    internal static string[] EarlierFolders(string[] dirs)
    {
        uint uid = FileNative.Geteuid();
        var name = $"softdirty-epochs-{uid}";
        var seen = new HashSet<(string, ulong)>();
        foreach (var d in dirs)
            if (FileNative.Lstat(d, out _) is { } st) seen.Add((st.Device, st.Inode));
        var found = new List<string>(2);
        var runtime = EnvironmentVariable("XDG_RUNTIME_DIR");
        var temp = EnvironmentVariable("TMPDIR");
        var candidates = new[]
        {
            !string.IsNullOrEmpty(runtime) && Path.IsPathRooted(runtime) && FileNative.Lstat(runtime, out _) is { Type: FileNative.S_IFDIR } r && r.Uid == uid ? runtime : null,
            string.IsNullOrEmpty(temp) || !Path.IsPathRooted(temp) ? SharedTempFolder : temp,
        };
        const uint GroupOrOther = 0x3F; // 077
        foreach (var top in candidates)
        {
            if (top is null) continue;
            var dir = Path.Combine(top, name);
            if (FileNative.Lstat(dir, out _) is { Type: FileNative.S_IFDIR } s && s.Uid == uid && (s.Permissions & GroupOrOther) == 0 && seen.Add((s.Device, s.Inode)))
                found.Add(dir);
        }
        return found.ToArray();
    }

    /// <summary>Whether <paramref name="dir"/> is (made, 0700, where missing) a directory of <paramref name="uid"/> that no one else may enter.</summary>
    private static bool Usable(string dir, uint uid)
    {
        if (FileNative.Lstat(dir, out _) is null && FileNative.Mkdir(dir, (uint)ImageFormat.DirectoryMode) != 0 && FileNative.Lstat(dir, out _) is null) return false;
        var st = FileNative.Lstat(dir, out _);
        const uint GroupOrOther = 0x3F; // 077
        return st is { Type: FileNative.S_IFDIR } s && s.Uid == uid && (s.Permissions & GroupOrOther) == 0;
    }

    /// <summary>
    /// Removes the records (and locks) of processes that are gone: another boot, the pid's start time differs or the process is provably
    /// absent (<see cref="ProcessStart.Absent"/>: one whose start time cannot be read is kept), or, for a process
    /// of another pid namespace (a container's, which cannot be looked up by its pid here), no process of the system started at its
    /// start time (<see cref="SystemStartTimes"/>: only from the first pid namespace, which sees them all). Round 21 left those to
    /// a command in their namespace, and a container that was gone left its records in the host's folders until the boot ended.
    /// </summary>
    private static void Prune(string dir)
    {
        var boot = BootId();
        var self = PidNamespace.Of("self");
        HashSet<ulong>? starts = null;
        bool startsRead = false;
        foreach (var f in Directory.EnumerateFiles(dir))
        {
            var name = Path.GetFileName(f);
            if (name.EndsWith(LockSuffix, StringComparison.Ordinal)) name = name[..^LockSuffix.Length];
            var parts = name.Split('-');
            if (parts.Length != 3) continue;
            var nsPid = parts[1].Split('.');
            bool live;
            if (parts[0] == boot && nsPid.Length == 2 && nsPid[0] != self)
            {
                if (!startsRead) { starts = SystemStartTimes.Read(); startsRead = true; }
                live = starts is null || !ulong.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out ulong start)
                    || SystemStartTimes.Near(starts, start);
            }
            else if (parts[0] != boot || !int.TryParse(nsPid[^1], NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) live = false;
            // A start time that cannot be read (hidepid=1 and a process not dumpable for a moment) is no proof the process is gone.
            else if (StartTime(pid) is not { } seen) live = !ProcessStart.Absent(pid);
            else live = seen == parts[2] && (nsPid.Length == 1 || FileKey(pid) is not { } key || key == name);
            if (!live) { try { File.Delete(f); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
        }
    }

    private static string? _bootId;

    /// <summary>This boot's id (/proc/sys/kernel/random/boot_id without dashes); null where unreadable.</summary>
    internal static string? BootId()
    {
        if (_bootId is not null) return _bootId;
        const string BootIdFile = "/proc/sys/kernel/random/boot_id";
        try { return _bootId = File.ReadAllText(BootIdFile).Trim().Replace("-", ""); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            ProcReadFailure.ThrowIfLimit(ex, BootIdFile);
            return null;
        }
    }

    /// <summary>The start time of <paramref name="pid"/> in clock ticks after boot (<see cref="ProcessStart"/>; with the pid, unique for this boot); null where unknown (gone).</summary>
    public static string? StartTime(int pid) => ProcessStart.Ticks(pid)?.ToString(CultureInfo.InvariantCulture);
}
