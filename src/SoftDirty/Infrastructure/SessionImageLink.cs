using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Remoting;
using System.Management.Automation.Runspaces;
using System.Threading;
using System.Threading.Tasks;
using SoftDirty.Images;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// The real link of Invoke-PreCopyMigration -ToSession: a PowerShell session to the destination machine.
/// Each image is streamed as pipeline input (its file names, then chunks of <see cref="ChunkBytes"/>) into
/// Receive-MemoryImage running there, which writes, verifies and puts it in place; Restore-MemoryImage there
/// restores the final one. The module must be available in the session. Remote failures keep their ErrorId
/// (an <see cref="EngineError"/> name); a session that breaks or closes is <see cref="EngineError.LinkBroken"/>.
/// </summary>
internal sealed class SessionImageLink : IImageLink
{
    /// <summary>
    /// Bytes per input object: 4 MiB, which serialized as base64 in CLIXML is about 5.6 MB, under the server's
    /// limit on one received object (MaximumReceivedObjectSizeMB, 10 MB by default). Each object costs a fixed
    /// overhead on the session, so larger chunks are faster (on a busy 2-core machine, 2 MiB chunks moved
    /// 7 MiB/s, 256 KiB chunks 2.5 MiB/s through a local out-of-process session).
    /// </summary>
    public const int ChunkBytes = 4 << 20;
    /// <summary>The image files in the order sent: the manifest last, as a save writes it.</summary>
    private static readonly string[] Files = { ImageFormat.PagesFile, ImageFormat.IndexFile, ImageFormat.ManifestFile };
    /// <summary>
    /// Module-qualified, so that a function, alias or other module's command of the same name in the session
    /// (a profile, a careless import) is never run in their place.
    /// </summary>
    private const string ReceiveCommand = "SoftDirty\\Receive-MemoryImage", RestoreCommand = "SoftDirty\\Restore-MemoryImage";
    /// <summary>Chunks sent ahead of what the destination has acknowledged as written.</summary>
    private const int InFlightChunks = 4;
    /// <summary>
    /// How long a sender hears nothing from the destination (no acknowledgement, heartbeat, output or error) before it
    /// calls the link broken, unless -LinkTimeoutSec says otherwise (<see cref="_stallSeconds"/>): a chunk (about 5.6 MB on the wire) must cross in that time, so links slower than about
    /// 90 KB/s fail. PowerShell's session need not notice that the receiver died (rounds 10 and 13: an out-of-process
    /// session stays open, its pipeline running, for good after its process is killed).
    /// </summary>
    internal const int DefaultStallSeconds = 60;
    /// <summary>The shortest silence -LinkTimeoutSec allows: two of the receiver's heartbeats (<see cref="Heartbeat.IntervalMilliseconds"/>) and more.</summary>
    internal const int MinStallSeconds = 15;
    /// <summary>The longest silence -LinkTimeoutSec allows: a day.</summary>
    internal const int MaxStallSeconds = 86400;
    /// <summary>How long Ctrl+C waits for the destination to stop its pipeline before the command ends anyway (a dead or stalled one never does).</summary>
    private const int StopGraceSeconds = 10;
    /// <summary>How often a sender waiting for an acknowledgement looks at the pipeline's state and at Ctrl+C.</summary>
    private const int AckPollMilliseconds = 200;

    private readonly PSSession _session;
    private readonly string _destination;
    /// <summary>The silence after which the link is broken (-LinkTimeoutSec; <see cref="DefaultStallSeconds"/>).</summary>
    private readonly int _stallSeconds;

    private SessionImageLink(PSSession session, string destination, int stallSeconds)
    {
        _session = session;
        _destination = destination;
        _stallSeconds = stallSeconds;
    }

    /// <inheritdoc/>
    public string Computer => _session.ComputerName;

    /// <inheritdoc/>
    public string PathOf(string name) => _destination.TrimEnd('/') + "/" + name;

    /// <summary>
    /// Opens the link: the session must be open and able to run Receive-MemoryImage (else ModuleNotOnDestination);
    /// <paramref name="destination"/> and <paramref name="restorePath"/> are resolved there (a relative path from the
    /// session's current location) and must be on the FileSystem provider there (else InvalidArgument, before any
    /// round): a path of another provider (Env:, Variable:, Function:) would otherwise resolve to its bare item name
    /// and the images would land in a folder of that name under the session's current location.
    /// </summary>
    public static SessionImageLink Open(PSSession session, string destination, string? restorePath, int stallSeconds, CancellationToken cancel)
    {
        var link = new SessionImageLink(session, destination, stallSeconds);
        var paths = restorePath is null ? new[] { destination } : new[] { destination, restorePath };
        var result = link.Run("the check of the destination paths", ps => ps.AddScript(ResolveScript).AddArgument(paths), null, cancel);
        if (result.Count == 0 || result[0]?.BaseObject is not string first)
            throw new EngineException(EngineError.ModuleNotOnDestination,
                $"The SoftDirty module is not available in the session to {session.ComputerName}: install it there (build.ps1 Install) or run Import-Module SoftDirty in the session first (Invoke-Command -Session $s {{ Import-Module SoftDirty }}).", session.ComputerName);
        // The receiver's revision: a cmdlet of an earlier version has none (0); a function (not the module's code) says nothing, and its answers are checked round by round.
        var revision = result.Count > 1 && result[1]?.BaseObject is string r1 && r1.StartsWith(RevisionMark, StringComparison.Ordinal) ? r1[RevisionMark.Length..] : null;
        if (revision is null)
            throw new EngineException(EngineError.InvalidArgument, $"On {session.ComputerName}: the destination paths could not be resolved.", destination);
        if (revision.Length > 0 && (!int.TryParse(revision, NumberStyles.None, CultureInfo.InvariantCulture, out int theirs) || theirs < ReceiveMemoryImageCommand.ReceiverRevision))
            throw new EngineException(EngineError.ModuleNotOnDestination,
                $"The SoftDirty module in the session to {session.ComputerName} is an earlier version than this one (receiver revision {(int.TryParse(revision, NumberStyles.None, CultureInfo.InvariantCulture, out int said) ? said.ToString(CultureInfo.InvariantCulture) : "unreadable")}, this version sends images that need revision {ReceiveMemoryImageCommand.ReceiverRevision}): it would refuse or misread them. Install this version (or a later one) there (build.ps1 Install) and import it in the session; nothing was sent.", session.ComputerName);
        var answers = result.Skip(2).Select(r => r?.BaseObject as string).ToArray();
        if (first != ResolvedMark || answers.Length != paths.Length || answers.Any(r => r is null || r.StartsWith(RefusedMark, StringComparison.Ordinal)))
        {
            var problem = answers.FirstOrDefault(r => r is not null && r.StartsWith(RefusedMark, StringComparison.Ordinal));
            throw new EngineException(EngineError.InvalidArgument,
                $"On {session.ComputerName}: {problem?[RefusedMark.Length..] ?? "the destination paths could not be resolved"}.", destination);
        }
        return new SessionImageLink(session, answers[0]!, stallSeconds) { RestorePath = restorePath is null ? null : answers[1] };
    }

    /// <summary>The final image's restore folder on the destination, resolved there by <see cref="Open"/> (null without -RestorePath).</summary>
    public string? RestorePath { get; private init; }

    /// <summary>The first answer of <see cref="ResolveScript"/> when the module is there; each path then resolves, or is refused with <see cref="RefusedMark"/> and why.</summary>
    private const string ResolvedMark = "SoftDirty.Resolved", RefusedMark = "SoftDirty.Refused:";
    /// <summary>The second answer of <see cref="ResolveScript"/>: the destination's <see cref="ReceiveMemoryImageCommand.ReceiverRevision"/> (0: a cmdlet of a version before it; empty: not a cmdlet).</summary>
    private const string RevisionMark = "SoftDirty.Revision:";

    /// <summary>Resolves each path in the session as a file-system path, as the module's cmdlets do locally (EngineCmdlet.FileSystemPath).</summary>
    private const string ResolveScript =
        "param([string[]] $Paths)\n" +
        "$c = Get-Command " + ReceiveCommand + " -ErrorAction Ignore\n" +
        "if (-not $c) { return }\n" +
        "'" + ResolvedMark + "'\n" +
        "$f = if ($c.CommandType -eq 'Cmdlet') { $c.ImplementingType.GetField('" + nameof(ReceiveMemoryImageCommand.ReceiverRevision) + "') }\n" +
        "'" + RevisionMark + "' + $(if ($f) { $f.GetValue($null) } elseif ($c.CommandType -eq 'Cmdlet') { 0 })\n" +
        "foreach ($p in $Paths) {\n" +
        "  $provider = $null; $drive = $null\n" +
        "  try { $r = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($p, [ref] $provider, [ref] $drive) }\n" +
        "  catch { '" + RefusedMark + "the path ' + $p + ' cannot be resolved: ' + $_.Exception.Message; continue }\n" +
        "  if ($provider.ImplementingType -ne [Microsoft.PowerShell.Commands.FileSystemProvider]) { '" + RefusedMark + "the path ' + $p + ' is on the PowerShell provider ' + $provider.Name + ', not the file system: give a file-system path there'; continue }\n" +
        "  $r\n" +
        "}\n";

    /// <inheritdoc/>
    public LinkTransfer Send(string localImage, string name, Action<ulong, ulong>? progress, CancellationToken cancel)
    {
        ulong total = Files.Aggregate(0UL, (sum, f) => sum + (ulong)new FileInfo(Path.Combine(localImage, f)).Length);
        long sent = 0, shown = -1;
        var clock = Stopwatch.StartNew();
        // The feed runs on a thread of its own; the progress is reported here, on the command's thread.
        void Report()
        {
            long now = Interlocked.Read(ref sent);
            if (now != shown) progress?.Invoke((ulong)(shown = now), total);
        }
        // The start of each transfer shows at once (0 of its size): a small image is fed whole before the first poll.
        Report();
        var output = Run($"{ReceiveCommand} -Path {PathOf(name)}", ps => ps.AddCommand(ReceiveCommand).AddParameter("Path", PathOf(name)).AddParameter("ProgressAction", ActionPreference.Continue),
            (ps, input, stop) => Feed(ps, input, localImage, ref sent, stop), cancel, Report);
        ConfirmReceived(output, localImage, name, total);
        Interlocked.Exchange(ref sent, (long)total);
        Report();
        return new LinkTransfer(total, clock.Elapsed.TotalSeconds);
    }

    /// <summary>
    /// Feeds an image's files to Receive-MemoryImage (on a thread of its own: <see cref="Run"/> waits meanwhile, and gives
    /// up on a receiver that died or stalled), counting the bytes handed over in <paramref name="sent"/>.
    /// </summary>
    private static void Feed(PowerShell ps, PSDataCollection<object> input, string localImage, ref long sent, CancellationToken stop)
    {
        // Back-pressure: the receiver acknowledges the bytes it has written (its progress records); at most
        // InFlightChunks chunks are sent ahead of that, so an image is never queued whole in memory here.
        // The handlers run on the session's threads, also after this method: they are removed before the event is disposed.
        long acked = 0;
        using var moved = new AutoResetEvent(false);
        void Acknowledged(object? sender, DataAddedEventArgs e)
        {
            var r = ps.Streams.Progress[e.Index];
            if (r.ActivityId == ReceiveMemoryImageCommand.ProgressActivityId && long.TryParse(r.CurrentOperation, NumberStyles.None, CultureInfo.InvariantCulture, out long bytes))
            {
                Interlocked.Exchange(ref acked, bytes);
                Wake();
            }
        }
        void Ended(object? sender, PSInvocationStateChangedEventArgs e) => Wake();
        void Wake()
        {
            try { moved.Set(); }
            catch (ObjectDisposedException) { } // a record that came in while the handlers were being removed
        }
        ps.Streams.Progress.DataAdded += Acknowledged;
        ps.InvocationStateChanged += Ended;
        try
        {
            foreach (var file in Files)
            {
                input.Add(file);
                using var stream = new FileStream(SafeFiles.OpenRegular(Path.Combine(localImage, file)), FileAccess.Read, 1);
                while (true)
                {
                    stop.ThrowIfCancellationRequested();
                    // A fresh buffer per chunk: the collection holds it until the transport has serialized it.
                    var chunk = new byte[(int)Math.Min(ChunkBytes, Math.Max(1, stream.Length - stream.Position))];
                    int n = stream.ReadAtLeast(chunk, chunk.Length, throwOnEndOfStream: false);
                    if (n == 0) break;
                    input.Add(n == chunk.Length ? chunk : chunk[..n]);
                    Interlocked.Add(ref sent, n);
                    while (Interlocked.Read(ref sent) - Interlocked.Read(ref acked) > InFlightChunks * (long)ChunkBytes
                           && ps.InvocationStateInfo.State is PSInvocationState.Running or PSInvocationState.NotStarted)
                    {
                        stop.ThrowIfCancellationRequested();
                        moved.WaitOne(AckPollMilliseconds);
                    }
                }
            }
        }
        finally
        {
            ps.Streams.Progress.DataAdded -= Acknowledged;
            ps.InvocationStateChanged -= Ended;
        }
    }

    /// <summary>
    /// The receiver's answer must be the image it put in place: one MemoryImageInfo with the sent image's id, its depth, its
    /// data and zero pages and its bytes. A receiver that answers nothing (not the module's, or one that dropped the stream)
    /// or describes another image (one that misread or lost part of the stream and verified what it kept) is LinkBroken,
    /// never a round reported as sent.
    /// </summary>
    private void ConfirmReceived(PSDataCollection<PSObject> output, string localImage, string name, ulong total)
    {
        var sent = ImageReader.ReadManifest(localImage);
        var info = output.Count == 1 ? output[0] : null;
        object? Said(string property) => info?.Properties[property]?.Value;
        bool confirmed = info is not null
            && info.TypeNames.Any(t => t.EndsWith(typeof(MemoryImageInfo).FullName!, StringComparison.Ordinal))
            && Said(nameof(MemoryImageInfo.Id)) is Guid id && id == sent.Id;
        if (!confirmed)
            throw new EngineException(EngineError.LinkBroken,
                $"{ReceiveCommand} on {Computer} did not confirm {PathOf(name)} (it answered {output.Count} object(s), not the image {sent.Id} it was sent): the destination keeps its last complete, verified image.", Computer);
        bool same = Said(nameof(MemoryImageInfo.Depth)) is int depth && depth == sent.Depth
            && Said(nameof(MemoryImageInfo.DataPages)) is ulong data && data == sent.DataPages
            && Said(nameof(MemoryImageInfo.ZeroPages)) is ulong zero && zero == sent.ZeroPages
            && Said(nameof(MemoryImageInfo.FileBytes)) is long bytes && bytes >= 0 && (ulong)bytes == total;
        if (!same)
            throw new EngineException(EngineError.LinkBroken,
                $"{ReceiveCommand} on {Computer} answered the image {sent.Id} with other contents than were sent (depth {Shown(Said(nameof(MemoryImageInfo.Depth)))}, {Shown(Said(nameof(MemoryImageInfo.DataPages)))} data and {Shown(Said(nameof(MemoryImageInfo.ZeroPages)))} zero pages, {Shown(Said(nameof(MemoryImageInfo.FileBytes)))} bytes; sent: depth {sent.Depth}, {sent.DataPages} data and {sent.ZeroPages} zero pages, {total} bytes): {PathOf(name)} there is not this round's image; the rounds before it are as they were confirmed.", Computer);
    }

    /// <summary>A number the far end answered, as text for a message (anything else, which could carry terminal sequences, as "?").</summary>
    private static string Shown(object? value) => value is int or long or ulong ? Convert.ToString(value, CultureInfo.InvariantCulture)! : "?";

    /// <inheritdoc/>
    public void Restore(string name, string restorePath, CancellationToken cancel) =>
        Run($"{RestoreCommand} -Path {PathOf(name)}", ps => ps.AddCommand(RestoreCommand).AddParameter("Path", PathOf(name)).AddParameter("Destination", restorePath).AddParameter("ProgressAction", ActionPreference.Continue), null, cancel);

    /// <summary>
    /// Runs a pipeline in the session, feeding it input on a thread of its own, and calling <paramref name="poll"/> on
    /// this thread while it waits; any failure becomes an <see cref="EngineException"/>. The wait is bounded
    /// (round 13): PowerShell's session need not notice that its far end died (an out-of-process session stays Opened,
    /// its pipeline Running, for good after its process is killed), so a pipeline from which nothing is heard (no
    /// acknowledgement, heartbeat, output or error; <see cref="Heartbeat"/>) for <see cref="_stallSeconds"/> while
    /// it runs is LinkBroken. A pipeline that did not end is never disposed: its Dispose stops it and waits for the far
    /// end to confirm, for good on a dead one (the hang of round 11's test, seen in a stack: PowerShell.Dispose, Stop).
    /// </summary>
    /// <param name="what">What runs there, for the messages.</param>
    /// <param name="build">Adds the commands.</param>
    /// <param name="feed">Adds the input on the feeding thread (never completes it), and ends when its token is cancelled.</param>
    /// <param name="cancel">Ctrl+C.</param>
    /// <param name="poll">Called on this thread while the pipeline runs.</param>
    private PSDataCollection<PSObject> Run(string what, Action<PowerShell> build, Action<PowerShell, PSDataCollection<object>, CancellationToken>? feed, CancellationToken cancel, Action? poll = null)
    {
        if (_session.Runspace.RunspaceStateInfo.State != RunspaceState.Opened)
            throw new EngineException(EngineError.LinkBroken, $"The session to {Computer} is {_session.Runspace.RunspaceStateInfo.State}, not open.", Computer);
        var ps = PowerShell.Create();
        ps.Runspace = _session.Runspace;
        build(ps);
        var input = new PSDataCollection<object>();
        var output = new PSDataCollection<PSObject>();
        // When this end last heard from the far end, or handed it input (TimeSpan ticks on the quiet clock).
        var quiet = Stopwatch.StartNew();
        long heard = 0;
        void Heard(object? sender, DataAddedEventArgs e) => Interlocked.Exchange(ref heard, quiet.Elapsed.Ticks);
        ps.Streams.Progress.DataAdded += Heard;
        ps.Streams.Error.DataAdded += Heard;
        output.DataAdded += Heard;
        input.DataAdded += Heard;
        using var done = new CancellationTokenSource();
        IAsyncResult? pending = null;
        try
        {
            // Without input to feed, no input collection: a cmdlet given one runs ProcessRecord once per object in it, never for none.
            pending = feed is null ? ps.BeginInvoke<PSObject, PSObject>(null, output) : ps.BeginInvoke(input, output);
            var feeding = feed is null ? Task.CompletedTask : Task.Factory.StartNew(() =>
            {
                try { feed(ps, input, done.Token); }
                finally { input.Complete(); }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            var stopping = TimeSpan.MinValue;
            while (!pending.AsyncWaitHandle.WaitOne(AckPollMilliseconds))
            {
                poll?.Invoke();
                if (cancel.IsCancellationRequested)
                {
                    // Ctrl+C: the far end is asked to stop, and given a few seconds to end (its partial image removed, the session free again).
                    if (stopping == TimeSpan.MinValue) { stopping = quiet.Elapsed; RequestStop(ps); }
                    else if ((quiet.Elapsed - stopping).TotalSeconds >= StopGraceSeconds) throw new OperationCanceledException(cancel);
                    continue;
                }
                // A feed that failed in the transport (a NullReferenceException from PowerShell's fragmentor once the far
                // end died, round 10) while the pipeline goes on: the input never reached the receiver whole.
                if (feeding.Exception?.InnerException is { } failed && failed is NullReferenceException or ObjectDisposedException or IOException or PSRemotingTransportException)
                    throw Torn(failed);
                if ((quiet.Elapsed - TimeSpan.FromTicks(Interlocked.Read(ref heard))).TotalSeconds >= _stallSeconds)
                    throw new EngineException(EngineError.LinkBroken,
                        $"Nothing was heard from {Computer} for {_stallSeconds} seconds while {what} ran there: the receiver is gone or the link is stalled (-LinkTimeoutSec); the destination keeps its last complete, verified image.", Computer);
            }
            poll?.Invoke();
            cancel.ThrowIfCancellationRequested();
            ps.EndInvoke(pending);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested) { throw; }
        catch (PipelineStoppedException) when (cancel.IsCancellationRequested) { throw new OperationCanceledException(cancel); }
        catch (Exception ex) when (ex is RuntimeException or PSRemotingTransportException or InvalidOperationException)
        {
            throw Map(ex);
        }
        catch (Exception ex) when (ex is NullReferenceException or ObjectDisposedException or IOException)
        {
            // PowerShell's remoting client fails so when the transport is torn down under a running pipeline; a pipeline
            // started on a session whose process died fails writing to it (IOException: broken pipe; round 13, seen as
            // System.IO.IOException reaching the user when the receiver was killed between rounds).
            throw Torn(ex);
        }
        finally
        {
            done.Cancel();
            ps.Streams.Progress.DataAdded -= Heard;
            ps.Streams.Error.DataAdded -= Heard;
            output.DataAdded -= Heard;
            input.DataAdded -= Heard;
            if (pending is null || pending.IsCompleted) ps.Dispose();
            else RequestStop(ps); // and left undisposed: see above
        }
        if (ps.Streams.Error.Count > 0) throw Map(ps.Streams.Error[0]);
        if (ps.InvocationStateInfo.State == PSInvocationState.Failed)
            throw Map(ps.InvocationStateInfo.Reason ?? new PSInvalidOperationException("The remote pipeline failed."));
        return output;
    }

    /// <summary>
    /// Asks the far end to stop a pipeline, on a thread of its own: PowerShell's client may block in the transport (a
    /// write to a far end that stopped reading), and nothing here waits for the answer.
    /// </summary>
    private static void RequestStop(PowerShell ps) => _ = Task.Run(() => ps.BeginStop(null, null));

    /// <summary>The transport failed under a running pipeline: LinkBroken (never the .NET exception PowerShell's client threw).</summary>
    private EngineException Torn(Exception ex) =>
        new(EngineError.LinkBroken, $"The session to {Computer} broke during the transfer (its transport was torn down under the pipeline: {ex.GetType().Name}): the destination keeps its last complete, verified image.", Computer);

    /// <summary>A remote error keeps its ErrorId when it is one of the module's; the session breaking is LinkBroken.</summary>
    private EngineException Map(ErrorRecord record)
    {
        var id = record.FullyQualifiedErrorId.Split(',')[0];
        if (Enum.TryParse<EngineError>(id, out var error) && Enum.IsDefined(error))
            return new EngineException(error, $"On {Computer}: {record.Exception?.Message ?? record.ToString()}", record.TargetObject ?? Computer);
        if (record.CategoryInfo.Category == ErrorCategory.ObjectNotFound && id == "CommandNotFoundException")
            return new EngineException(EngineError.ModuleNotOnDestination, $"On {Computer}: {record}. Import the SoftDirty module in the session.", Computer);
        return new EngineException(EngineError.LinkBroken, $"The transfer to {Computer} failed: {record}", Computer);
    }

    private EngineException Map(Exception ex) => ex switch
    {
        RuntimeException { ErrorRecord: { } record } when ex is not PSRemotingTransportException and not PSRemotingDataStructureException && record.FullyQualifiedErrorId.Split(',')[0] is { } id
            && (Enum.TryParse<EngineError>(id, out _) || id == "CommandNotFoundException") => Map(record),
        _ => new EngineException(EngineError.LinkBroken, $"The session to {Computer} broke during the transfer ({ex.Message}): the destination keeps its last complete, verified image.", Computer),
    };
}
