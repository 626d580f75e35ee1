using System;
using System.IO;
using System.Management.Automation;
using SoftDirty.Images;

namespace SoftDirty.Commands;

/// <summary>
/// Receive-MemoryImage: writes a memory image that arrives through the pipeline (from another session, or
/// from the files of an image here) into -Path, with the rules of Save-MemoryImage (a private folder, files
/// created exclusively, 0700/0600, links and other users' folders refused), verifies it with its whole chain
/// as Test-MemoryImage does, and only then puts it in place: the image is there complete and verified, or not
/// at all. Invoke-PreCopyMigration -ToSession runs it on the destination for each round.
/// </summary>
[Cmdlet(VerbsCommunications.Receive, "MemoryImage", SupportsShouldProcess = true)]
[OutputType(typeof(MemoryImageInfo))]
public sealed class ReceiveMemoryImageCommand : EngineCmdlet, IDisposable
{
    /// <summary>
    /// The new image's directory (created, mode 0700; it must not hold an image). An increment's parent must
    /// already lie where its manifest names it (relative to this directory, as a chain is saved: a sibling).
    /// </summary>
    [Parameter(Mandatory = true, Position = 0)]
    public string Path { get; set; } = "";

    /// <summary>
    /// The image's stream: a file name (pages.bin, index.bin or manifest.json) starts each file and byte
    /// arrays (chunks) carry its bytes; or the image's files themselves (Get-ChildItem IMAGE).
    /// </summary>
    [Parameter(Mandatory = true, ValueFromPipeline = true)]
    [AllowEmptyCollection]
    public object? InputObject { get; set; }

    /// <summary>
    /// The progress activity of a receive. Each record (one per input object) carries the bytes written so far
    /// in CurrentOperation: the sender over a session reads them as acknowledgements and keeps only a few chunks
    /// in flight (back-pressure).
    /// </summary>
    public const int ProgressActivityId = 0x5E01;

    /// <summary>
    /// What this receiver reads, as a number a sender compares: Invoke-PreCopyMigration -ToSession asks the destination's module
    /// for it before any round and refuses (ModuleNotOnDestination) one lower than its own, or a cmdlet without it (versions before
    /// round 27): an earlier version refused this version's images as edited or damaged, after the process had been tracked and its
    /// first round sent. Raised whenever a save may write what an earlier receiver refuses or reads otherwise; a later receiver
    /// reads what earlier versions send.
    /// </summary>
    public const int ReceiverRevision = 1;

    private ImageReceiver? _receiver;
    private ProgressRecord? _progress;
    private bool _skip;

    /// <inheritdoc/>
    protected override void BeginProcessing()
    {
        var path = FileSystemPath(Path);
        if (!ShouldProcess(path, "Write and verify a received memory image")) { _skip = true; return; }
        try { _receiver = ImageReceiver.Begin(path); }
        catch (EngineException ex) { ThrowTerminatingError(ToErrorRecord(ex)); }
        _progress = new ProgressRecord(ProgressActivityId, $"Receiving a memory image into {path}", "receiving");
    }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        if (_skip || _receiver is null) return;
        try
        {
            var item = InputObject;
            while (item is PSObject wrapped && !ReferenceEquals(wrapped.BaseObject, wrapped)) item = wrapped.BaseObject;
            switch (item)
            {
                case string name: _receiver.StartFile(name); break;
                case byte[] chunk: _receiver.Write(chunk); break;
                case byte one: _receiver.Write(new[] { one }); break;
                case FileInfo file:
                    _receiver.StartFile(file.Name);
                    using (var handle = SafeFiles.OpenRegular(file.FullName))
                    using (var stream = new FileStream(handle, FileAccess.Read))
                    {
                        var buffer = new byte[SessionImageLink.ChunkBytes];
                        int n;
                        while ((n = stream.Read(buffer)) > 0) _receiver.Write(buffer.AsSpan(0, n));
                    }
                    break;
                default:
                    throw new EngineException(EngineError.InvalidArgument,
                        $"Receive-MemoryImage takes file names, byte arrays and files, not {item?.GetType().Name ?? "null"}.", InputObject);
            }
            if (_progress is not null)
            {
                _progress.StatusDescription = $"{_receiver.Bytes / (double)(1 << 20):N1} MiB received";
                _progress.CurrentOperation = _receiver.Bytes.ToString(System.Globalization.CultureInfo.InvariantCulture);
                WriteProgress(_progress);
            }
        }
        catch (EngineException ex) { Abort(ex); }
        // Only the read of a piped file throws this (the receiver's writes say their own error): a read error, not a write error.
        catch (IOException ex) { Abort(new EngineException(EngineError.ImageReadError, $"Reading {InputObject} failed: {ex.Message}", InputObject, inner: ex)); }
    }

    /// <inheritdoc/>
    protected override void EndProcessing()
    {
        if (_skip || _receiver is null) return;
        try
        {
            // Verification reads the whole chain: a progress record every few seconds meanwhile tells a sender that this end still works.
            var receiver = _receiver;
            var info = Heartbeat.Run(() => receiver.Finish(Cancellation), () =>
            {
                if (_progress is null) return;
                _progress.StatusDescription = $"verifying {receiver.Bytes / (double)(1 << 20):N1} MiB with its chain";
                WriteProgress(_progress);
            });
            if (_progress is not null) { _progress.RecordType = ProgressRecordType.Completed; WriteProgress(_progress); }
            WriteVerbose($"{info.Path}: received {_receiver.Bytes} bytes, verified with its chain and put in place.");
            WriteObject(info);
        }
        catch (EngineException ex) { Abort(ex); }
        catch (OperationCanceledException) when (Cancellation.IsCancellationRequested) { throw new PipelineStoppedException(); }
    }

    private void Abort(EngineException ex)
    {
        Dispose();
        ThrowTerminatingError(ToErrorRecord(ex));
    }

    /// <summary>Removes the private folder of an image not put in place.</summary>
    public void Dispose()
    {
        _receiver?.Dispose();
        _receiver = null;
    }
}
