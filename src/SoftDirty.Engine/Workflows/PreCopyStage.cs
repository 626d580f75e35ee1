using System;
using System.Globalization;
using System.IO;
using SoftDirty.Images;
using SoftDirty.Tracking;

namespace SoftDirty.Workflows;

/// <summary>
/// The private folder (0700) in the temp directory where a migration over a link stages its round images: they hold
/// the process's memory. Its name says who made it (boot, pid namespace, pid, start time), so that the folder of a sender
/// that was killed (nothing removed it) is removed by the next migration of the same user once its maker is provably gone
/// (round 13): another boot, or in this pid namespace the pid gone or started at another time. A folder made in another
/// pid namespace (a container sharing this temp directory) is left alone: its pid means nothing here.
/// </summary>
internal static class PreCopyStage
{
    /// <summary>The staging folders' name prefix in the temp directory.</summary>
    public const string Prefix = "softdirty-precopy-";

    /// <summary>The fields of a staging folder's name after the prefix: boot, pid namespace, pid, start time, a GUID.</summary>
    private const int NameFields = 5;

    /// <summary>A field of the name that could not be read.</summary>
    private const string Unknown = "unknown";

    /// <summary>Past the largest errno (MAX_ERRNO, include/linux/err.h): an HResult under it is an errno.</summary>
    private const int MaxErrno = 4096;

    /// <summary>Group and other permission bits: a staging folder has none.</summary>
    private const uint GroupOrOther = 0x3F; // 077

    /// <summary>Removes the stale staging folders of this user, then creates a new one for this process; its path.</summary>
    public static string Create()
    {
        var temp = TempFolder();
        RemoveStale(temp);
        int self = Environment.ProcessId;
        var stage = Path.Combine(temp, $"{Prefix}{TrackingEpoch.BootId() ?? Unknown}-{PidNamespace.Of("self") ?? Unknown}-{self.ToString(CultureInfo.InvariantCulture)}-{TrackingEpoch.StartTime(self) ?? "0"}-{Guid.NewGuid():N}");
        SafeFiles.CreateDirectory(stage, durable: false); // removed when the migration ends: nothing in it has to survive a crash
        return stage;
    }

    /// <summary>
    /// Removes the staging folder <paramref name="stage"/> at the end of a migration: null, or a warning that names the folder
    /// where it (or part of it) stays. It holds round images, the process's memory; a failed removal was ignored (round 30), and
    /// a later migration removes it only once this PowerShell has exited.
    /// </summary>
    public static string? Remove(string stage)
    {
        try
        {
            Directory.Delete(stage, recursive: true);
            return null;
        }
        catch (DirectoryNotFoundException) { return null; }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // .NET's IOException carries the errno as its HResult on Linux.
            var why = ex.HResult is > 0 and < MaxErrno ? Errno.Describe(ex.HResult) : ex.Message;
            return $"The migration's staging folder {stage} could not be removed ({why}): what is left of it holds round images, the process's memory. Remove it (Remove-Item -Recurse); a later migration of this user removes it once this PowerShell has exited.";
        }
    }

    /// <summary>The folder a staging folder goes in: $TMPDIR where absolute, else /tmp.</summary>
    private const string DefaultTemp = "/tmp";

    /// <summary>
    /// The temp directory (.NET's, from $TMPDIR), or /tmp where that is relative: a relative TMPDIR put the process's memory
    /// in a folder under PowerShell's working directory (not its current location), and left the folders it made there.
    /// </summary>
    private static string TempFolder()
    {
        var temp = Path.GetTempPath();
        return Path.IsPathRooted(temp) ? temp : DefaultTemp;
    }

    /// <summary>
    /// Removes the staging folders in <paramref name="temp"/> whose maker is gone, of this user only: a private
    /// directory of the caller (never a link, another user's folder, or one that others may enter), named as
    /// <see cref="Create"/> names them. A folder of unknown origin (older names without the maker) is left alone.
    /// </summary>
    public static void RemoveStale(string temp)
    {
        var boot = TrackingEpoch.BootId();
        var ns = PidNamespace.Of("self");
        uint uid = FileNative.Geteuid();
        string[] found;
        try { found = Directory.GetDirectories(temp, Prefix + "*"); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return; }
        foreach (var dir in found)
        {
            var parts = Path.GetFileName(dir)[Prefix.Length..].Split('-');
            if (parts.Length != NameFields || !int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            bool otherBoot = boot is not null && parts[0] != Unknown && parts[0] != boot;
            bool gone = otherBoot || ns is not null && parts[1] == ns && (TrackingEpoch.StartTime(pid) is not { } start || start != parts[3]);
            if (!gone) continue;
            if (FileNative.Lstat(dir, out _) is not { Type: FileNative.S_IFDIR } st || st.Uid != uid || (st.Permissions & GroupOrOther) != 0) continue;
            try { Directory.Delete(dir, recursive: true); }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
        }
    }
}
