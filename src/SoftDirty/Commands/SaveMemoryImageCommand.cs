using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;
using SoftDirty.Workflows;
using SoftDirty.Images;
using SoftDirty.Tracking;

namespace SoftDirty.Commands;

/// <summary>
/// Save-MemoryImage: a full memory image of a process (every present or swapped page with data), or with
/// -Parent an incremental one holding only the pages changed since the parent image.
/// </summary>
[Cmdlet(VerbsData.Save, "MemoryImage", DefaultParameterSetName = EmulatorSet, SupportsShouldProcess = true)]
[OutputType(typeof(MemoryImageInfo))]
public sealed class SaveMemoryImageCommand : EmulatorTargetCmdlet
{
    // -Id and -Mapping are WorkflowCmdlet's too, but that base adds the Id set's hidden -PipedEmulator; this
    // cmdlet defaults to the Emulator set, where a piped EmulatedProcess binds -Emulator by value without it.
    /// <summary>The process id of a real process to save.</summary>
    [Parameter(ParameterSetName = IdSet, Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PID", "ProcessId")]
    [ArgumentCompleter(typeof(ProcessIdCompleter))]
    [ProcessId]
    public int Id { get; set; }

    /// <summary>The new image's directory (created, mode 0700; it must not hold an image).</summary>
    [Parameter(Mandatory = true, Position = 1)]
    public string Path { get; set; } = "";

    /// <summary>The image this one is an increment of.</summary>
    [Parameter]
    public string? Parent { get; set; }

    /// <summary>How changed pages are found for an increment.</summary>
    [Parameter]
    public TrackingMethod Method { get; set; } = TrackingMethod.Auto;

    /// <summary>
    /// Stop the process for the dump (ptrace: PTRACE_SEIZE and PTRACE_INTERRUPT of every thread), so that the
    /// kernel resumes it even if this command dies; a process that was already stopped is left stopped.
    /// </summary>
    [Parameter]
    public SwitchParameter Freeze { get; set; }

    /// <summary>
    /// Compare every page's contents with the parent's hashes even where soft-dirty could narrow the search:
    /// for when something outside this module may have cleared soft-dirty since the parent (CRIU, another tool).
    /// </summary>
    [Parameter]
    public SwitchParameter Verify { get; set; }

    /// <summary>Save only these mappings (names or paths, wildcards).</summary>
    [Parameter]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(MappingNameCompleter))]
    public string[]? Mapping { get; set; }

    /// <summary>A piped mapping's or range's Start, which refuses the record (<see cref="PipedRange"/>); never given by hand.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true, DontShow = true)]
    [Alias("Start")]
    public ulong? PipedStart { get; set; }

    private IPageSource? Target() => OneTarget(Id, null);

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        if (PipedStart is { } start) { WriteError(EngineError.InvalidArgument, PipedRange.Message("Save-MemoryImage", start), start); return; }
        ForEachSource(new[] { Target() }, Save);
    }

    private void Save(IPageSource source)
    {
        var path = FileSystemPath(Path);
        var parent = Parent is null ? null : FileSystemPath(Parent);
        if (!ShouldProcess($"{source.Name} ({source.ProcessId})", $"Save {(parent is null ? "a full" : "an incremental")} memory image to {path}")) return;
        var progress = new Progress(this, $"Saving the memory of {source.Name} ({source.ProcessId})", path);
        var result = ImageSave.Run(source, new ImageSaveRequest
        {
            Path = path, Parent = parent, Method = Method, Freeze = Freeze, Verify = Verify,
            Select = () => WorkflowSelector.Checked(source, Mapping),
            Warn = WriteWarning, Verbose = WriteVerbose, Progress = (done, total) => progress.Report(done, total, Progress.PagesStatus),
        }, Cancellation);
        progress.Complete();
        // The process was resumed (ImageSave) before anything is emitted, as a migration's last round is: the commands further
        // down the pipeline run while this one waits in WriteObject, and the process stayed frozen for as long as they took
        // (one that talked to it waited for good).
        if (result.UnopenedObjectPages > 0)
            WriteWarning($"{result.UnopenedObjectPages} page(s) of memory that ends with process {source.ProcessId} (a memfd, shared anonymous or System V memory, a deleted file: first {DisplayText.Visible(result.FirstUnopenedObject)}) are not mapped in the process now and could not be read from the object, which this user cannot open (/proc/PID/map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE, and the process holds no descriptor of it), or which lies on a file system whose reads may never answer: the image lacks them, and Test-MemoryImage reports it. Save as root, or keep a descriptor of the object open in the process.");
        if (result.Manifest.UnreadablePages > result.UnopenedObjectPages)
            WriteWarning($"{result.Manifest.UnreadablePages - result.UnopenedObjectPages} present page(s) of process {source.ProcessId} could not be read (kept from other processes as memfd_secret is, served by the process's own userfaultfd, which the module never waits for, or in a mapping of device memory, VM_PFNMAP or VM_IO, such as a perf_event ring buffer, which pagemap cannot show): the image lacks them, and Test-MemoryImage reports it.");
        WriteObject(result.Describe());
    }
}
