using System;
using System.IO;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Images;

namespace SoftDirty.Commands;

/// <summary>
/// Restore-MemoryImage: rebuilds the memory of a chain's latest state (full image plus increments) into one
/// flat file per mapping in -Destination, checking every page's checksum.
/// </summary>
[Cmdlet(VerbsData.Restore, "MemoryImage", SupportsShouldProcess = true, DefaultParameterSetName = FileSet)]
[OutputType(typeof(RestoredMapping), typeof(EmulatedProcess))]
public sealed class RestoreMemoryImageCommand : EngineCmdlet
{
    /// <summary>The image to restore: the latest of its chain.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "ImagePath")]
    public string Path { get; set; } = "";

    private const string FileSet = "File";

    /// <summary>The progress activity of a restore into flat files (a record every few seconds while it runs).</summary>
    public const int ProgressActivityId = 0x5E02;

    /// <summary>
    /// The directory for the flat files (START-END.bin per mapping, and mappings.json last): it must not exist or
    /// be an empty directory of yours (never a link); it appears complete or not at all.
    /// </summary>
    [Parameter(ParameterSetName = FileSet, Mandatory = true, Position = 1)]
    public string Destination { get; set; } = "";

    /// <summary>Rebuild the memory into this emulated process instead (its mappings are created as the image records them); it is returned.</summary>
    [Parameter(ParameterSetName = EmulatorSet, Mandatory = true)]
    public EmulatedProcess? Emulator { get; set; }

    // The image this command restored first, and where: Get-MemoryImage lists a whole chain (its full image first), and
    // each image piped in is a restore of its own into the same -Destination or -Emulator, so the second one would only
    // have said "not empty" while the first had put the chain's oldest memory there.
    private string? _restoredImage, _restoredInto;

    /// <summary>ImageExists, saying why, for a second piped image into the place this command already restored into.</summary>
    private bool RestoredHereBefore(string path, string into, object target)
    {
        if (_restoredInto != into) return false;
        WriteError(EngineError.ImageExists,
            $"{into} already holds the restore of {_restoredImage}, made by this command: each image piped to Restore-MemoryImage is a restore of its own, and {path} was not restored. " +
            "Get-MemoryImage lists the whole chain, full image first: to restore its latest memory, pipe only the last image (Get-MemoryImage ... | Select-Object -Last 1).", target);
        return true;
    }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        var path = FileSystemPath(Path);
        if (ParameterSetName == EmulatorSet && Emulator is not null)
        {
            var into = $"Emulated process {Emulator.ProcessId} ({Emulator.Name})";
            if (RestoredHereBefore(path, into, Emulator)) return;
            if (!ShouldProcess(path, $"Restore into emulated process {Emulator.ProcessId} ({Emulator.Name})")) return;
            Guarded(() =>
            {
                using var target = new SoftDirty.Workflows.EmulatedProcessRestoreTarget(Emulator);
                ImageRestorer.Restore(path, target, Cancellation);
                (_restoredImage, _restoredInto) = (path, into);
                WriteObject(Emulator);
            });
            return;
        }
        var dest = FileSystemPath(Destination);
        if (RestoredHereBefore(path, dest, dest)) return;
        if (!ShouldProcess(path, $"Restore into flat files in {dest}")) return;
        Guarded(() =>
        {
            try
            {
                using var target = new FlatFileRestoreTarget(dest);
                target.CheckDestination();
                // A progress record every few seconds of a long restore: shown here, and a sign of life to a sender over a session (-ToSession -RestorePath).
                var restoring = new ProgressRecord(ProgressActivityId, $"Restoring {path} into {dest}", "restoring");
                bool shown = false;
                Heartbeat.Run(() => ImageRestorer.Restore(path, target, Cancellation), () => { WriteProgress(restoring); shown = true; });
                if (shown) { restoring.RecordType = ProgressRecordType.Completed; WriteProgress(restoring); }
                (_restoredImage, _restoredInto) = (path, dest);
                foreach (var (m, file, pages) in target.Results)
                    WriteObject(new RestoredMapping { Start = m.Start, End = m.End, Permissions = m.Permissions, Mapping = m.Path, File = file, PagesWritten = pages });
            }
            catch (IOException ex) { throw new EngineException(EngineError.ImageWriteError, $"Restoring into {dest} failed: {ex.Message}", dest); }
            catch (UnauthorizedAccessException ex) { throw new EngineException(EngineError.PermissionDenied, $"Restoring into {dest} failed: {ex.Message}", dest); }
        });
    }
}
