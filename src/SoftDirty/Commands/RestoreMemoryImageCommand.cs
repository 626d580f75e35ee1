using System;
using System.Collections.Generic;
using System.Linq;
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
public sealed class RestoreMemoryImageCommand : PipedObjectCmdlet
{
    /// <summary>The image to restore: the latest of its chain.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "ImagePath", "FinalImage")]
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

    // Images piped into one -Destination or -Emulator: the latest of one chain is restored, once, when the input ends.
    // Get-MemoryImage lists a whole chain (its full image first) and Invoke-PreCopyMigration emits one image per round:
    // each was a restore of its own, so the first (the chain's oldest memory, a live round of a running process) was put
    // in place and every later one was ImageExists.
    private string? _pending;
    private HashSet<Guid> _pendingChain = new();

    // A piped image that could not be read (or was refused), with its error: it may be the latest of the chain, so nothing is
    // restored. Before, the latest of the images that could be read was put in place and the command emitted its files as a
    // whole restore: under -ErrorAction SilentlyContinue or Ignore, Get-ChildItem CHAIN | Restore-MemoryImage with a damaged
    // newest increment restored older memory without a word (round 32).
    private (string Path, EngineException Error)? _unread;

    // The rounds of a migration piped in (Invoke-PreCopyMigration -Destination | Restore-MemoryImage): its final image comes
    // with its stop-and-copy round and its summary. Live rounds alone are a migration that failed or was cut short (its error
    // suppressed by -ErrorAction SilentlyContinue, Select-Object -First): their latest is memory of a running process, and
    // was restored as the migration's result, complete-looking (round 32).
    private string? _liveRound;
    private bool _finalRound;

    private string _dest = "";

    /// <inheritdoc/>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (ParameterSetName == FileSet) _dest = FileSystemPath(Destination); // a bad path stops the command before its input runs
    }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        if (PipedObject is { } piped)
        {
            // An object piped with -Path given binds nothing (it was InputObjectNotBound before PipedObject existed); one
            // whose image lies on another computer (-ToSession's rounds and summary, Invoke-Command's output) is refused.
            var refused = Given(nameof(Path)) ? Unused("-Path") : PipedImageComputer.Of(piped) is { } far ? PipedImageComputer.Refusal(far, Path) : null;
            if (refused is not null)
            {
                // An object piped beside -Path binds nothing, and -Path is restored as asked; an image of another computer is unread.
                if (!Given(nameof(Path))) _unread ??= (Path, refused);
                WriteError(ToErrorRecord(refused));
                return;
            }
        }
        switch (PipedObject?.BaseObject)
        {
            case SoftDirty.Workflows.PreCopyRound { Phase: SoftDirty.Workflows.PreCopyPhase.Live }: _liveRound = Path; break;
            case SoftDirty.Workflows.PreCopyRound or SoftDirty.Workflows.PreCopySummary: _finalRound = true; break;
        }
        var path = FileSystemPath(Path);
        if (ParameterSetName == EmulatorSet && Emulator is null) return;
        HashSet<Guid> chain;
        Guid leaf;
        try
        {
            using var opened = ImageReader.Chain(path);
            (chain, leaf) = (opened.Select(i => i.Manifest.Id).ToHashSet(), opened[^1].Manifest.Id);
        }
        catch (EngineException ex)
        {
            _unread ??= (path, ex);
            WriteError(ToErrorRecord(ex));
            return;
        }
        catch (OperationCanceledException) when (Cancellation.IsCancellationRequested) { throw new PipelineStoppedException(); }
        if (_pending is null || chain.IsSupersetOf(_pendingChain)) { (_pending, _pendingChain) = (path, chain); return; }
        if (_pendingChain.Contains(leaf)) { WriteVerbose($"{path} is in the chain of {_pending}, which is restored: it adds nothing."); return; }
        WriteError(EngineError.ImageExists,
            $"{Into} gets the restore of {_pending}, piped before: {path} is an image of another chain and was not restored. Restore each chain into a place of its own.", path);
    }

    /// <summary>Where this command restores: the -Destination folder or the -Emulator.</summary>
    private string Into => ParameterSetName == EmulatorSet ? $"Emulated process {Emulator!.ProcessId} ({Emulator.Name})" : _dest;

    /// <inheritdoc/>
    protected override void EndProcessing()
    {
        if (_pending is not { } path) return;
        if (_unread is { } unread)
        {
            WriteError(unread.Error.Error,
                $"Nothing was restored into {Into}: the image {unread.Path}, given with the others, could not be read ({unread.Error.Message}), and it may hold later memory than {path}, the latest of those read. Restore the image you mean with -Path.",
                unread.Path);
            return;
        }
        if (_liveRound is { } live && !_finalRound)
        {
            WriteError(EngineError.InvalidArgument,
                $"Nothing was restored into {Into}: the rounds piped in are live rounds of a migration that ended without its stop-and-copy round (it failed, or the pipeline took only its first rounds), and their latest, {live}, is memory of the process while it ran, not the migrated state. Restore a round with -Path if that is what you want.",
                live);
            return;
        }
        if (ParameterSetName == EmulatorSet)
        {
            if (!ShouldProcess(path, $"Restore into emulated process {Emulator!.ProcessId} ({Emulator.Name})")) return;
            Guarded(() =>
            {
                using var target = new SoftDirty.Workflows.EmulatedProcessRestoreTarget(Emulator, Cancellation);
                ImageRestorer.Restore(path, target, Cancellation);
                WriteObject(Emulator);
            });
            return;
        }
        var dest = _dest;
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
                foreach (var (m, file, pages) in target.Results)
                    WriteObject(new RestoredMapping { Start = m.Start, End = m.End, Permissions = m.Permissions, Mapping = m.Path, File = file, PagesWritten = pages });
            }
            catch (IOException ex) { throw new EngineException(EngineError.ImageWriteError, $"Restoring into {dest} failed: {ex.Message}", dest); }
            catch (UnauthorizedAccessException ex) { throw new EngineException(EngineError.PermissionDenied, $"Restoring into {dest} failed: {ex.Message}", dest); }
        });
    }
}
