namespace SoftDirty;

/// <summary>
/// What went wrong, one value per stable error id. The cmdlets use the name as the ErrorRecord's
/// ErrorId and the member's <see cref="CategorizedAttribute"/> as its category, so keep the names stable.
/// A kernel errno maps to the same id whether a real or an emulated kernel returned it.
/// </summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum EngineError
{
    /// <summary>No process with that id.</summary>
    [Categorized(FailureCategory.ObjectNotFound)]
    ProcessNotFound,
    /// <summary>The caller lacks the privilege to read or write the /proc file.</summary>
    [Categorized(FailureCategory.PermissionDenied)]
    PermissionDenied,
    /// <summary>The process exited while it was being read.</summary>
    [Categorized(FailureCategory.ResourceUnavailable)]
    ProcessExited,
    /// <summary>An argument is out of range, unaligned or malformed: the kernel's EINVAL, from /proc and from an emulated system call alike.</summary>
    [Categorized(FailureCategory.InvalidArgument)]
    InvalidArgument,
    /// <summary>The /proc interface exists only on Linux.</summary>
    [Categorized(FailureCategory.NotImplemented)]
    PlatformNotSupported,
    /// <summary>The kernel accepts clear_refs "4" but never sets bit 55 (no CONFIG_MEM_SOFT_DIRTY).</summary>
    [Categorized(FailureCategory.NotImplemented)]
    SoftDirtyNotSupported,
    /// <summary>The kernel has no PAGEMAP_SCAN ioctl (before 6.7).</summary>
    [Categorized(FailureCategory.NotImplemented)]
    PagemapScanNotSupported,
    /// <summary>No mapping matched the requested name or range.</summary>
    [Categorized(FailureCategory.ObjectNotFound)]
    MappingNotFound,
    /// <summary>Reading or writing a /proc file failed for another reason.</summary>
    [Categorized(FailureCategory.ReadError)]
    ProcIOError,
    /// <summary>An emulated system call needs a mapped range and part of it is not mapped (ENOMEM).</summary>
    [Categorized(FailureCategory.InvalidArgument)]
    EmulatorNotMapped,
    /// <summary>An emulated access outside any mapping or against its protection (SIGSEGV); nothing changed.</summary>
    [Categorized(FailureCategory.InvalidOperation)]
    SegmentationFault,
    /// <summary>Async write-protect tracking is impossible for this target (another real process, or no userfaultfd WP_ASYNC).</summary>
    [Categorized(FailureCategory.InvalidOperation)]
    WriteProtectNotSupported,
    /// <summary>A memory image's data does not match its checksums, or a file is malformed (the message names file and offset).</summary>
    [Categorized(FailureCategory.InvalidData)]
    ImageCorrupt,
    /// <summary>A memory image was never finished (no manifest.json, or a file shorter than its manifest says).</summary>
    [Categorized(FailureCategory.InvalidData)]
    ImageIncomplete,
    /// <summary>An image's parent is missing or is not the image it was taken against.</summary>
    [Categorized(FailureCategory.InvalidData)]
    ImageParentMismatch,
    /// <summary>The destination of a new memory image already holds one.</summary>
    [Categorized(FailureCategory.ResourceExists)]
    ImageExists,
    /// <summary>Writing a memory image failed (disk full, permissions).</summary>
    [Categorized(FailureCategory.WriteError)]
    ImageWriteError,
    /// <summary>A destination is a symbolic link or belongs to another user: the module does not write there.</summary>
    [Categorized(FailureCategory.SecurityError)]
    UnsafeDestination,
    /// <summary>Export-DirtyPageChart got nothing to draw (no input, or only objects it passes over).</summary>
    [Categorized(FailureCategory.InvalidData)]
    ChartNoData,
    /// <summary>Writing a chart failed: a missing or unwritable folder, a full disk.</summary>
    [Categorized(FailureCategory.WriteError)]
    ChartWriteError,
    /// <summary>This process may not ptrace the target (Yama ptrace_scope, another user without CAP_SYS_PTRACE); the message says which.</summary>
    [Categorized(FailureCategory.PermissionDenied)]
    PtraceNotPermitted,
    /// <summary>The target is already traced by another process (TracerPid), which excludes syscall injection.</summary>
    [Categorized(FailureCategory.ResourceBusy)]
    ProcessAlreadyTraced,
    /// <summary>The target's seccomp filter (or strict mode) forbids a syscall that write tracking injects (userfaultfd); nothing was left behind.</summary>
    [Categorized(FailureCategory.PermissionDenied)]
    SeccompForbids,
    /// <summary>Write tracking is not enabled in that process (Enable-WriteTracking), or its state no longer matches it.</summary>
    [Categorized(FailureCategory.InvalidOperation)]
    WriteTrackingNotEnabled,
    /// <summary>
    /// The process exec'd another program while it was being read: the memory the command had begun to read
    /// (its /proc/PID/mem and pagemap belong to the old program) is gone, so the result would mix two programs.
    /// </summary>
    [Categorized(FailureCategory.ResourceUnavailable)]
    ProcessExecuted,
    /// <summary>The link to another machine (a PowerShell session) broke or closed during a transfer: the destination keeps its last complete, verified image.</summary>
    [Categorized(FailureCategory.ConnectionError)]
    LinkBroken,
    /// <summary>The destination session cannot run the SoftDirty module (not installed there, or not importable).</summary>
    [Categorized(FailureCategory.ObjectNotFound)]
    ModuleNotOnDestination,
    /// <summary>
    /// Memory of the process is registered for userfaultfd write-protect by a tracking this command cannot see (another
    /// user's or another state folder's Enable-WriteTracking, or the process's own userfaultfd): resets of one would
    /// silently hide writes from the other, so write tracking is not enabled a second time.
    /// </summary>
    [Categorized(FailureCategory.ResourceBusy)]
    WriteTrackingInUse,
    /// <summary>
    /// The system refused a resource the command needed to read an image (too many open files: a chain holds each of its
    /// images open while it is read; out of memory): nothing is known about the image, which is neither called valid nor
    /// invalid. Raise the limit (ulimit -n) and try again. Likewise for opening /proc/PID, a /proc file of the process, a
    /// folder on the way to a destination or a file there (round 13): never ProcessNotFound of a process that runs on. Likewise
    /// for a thread this process may not start (ulimit -u, a pids cgroup; round 28), and for the folder of a file piped to
    /// Receive-MemoryImage: never ImageCorrupt of an image that is whole.
    /// </summary>
    [Categorized(FailureCategory.ResourceUnavailable)]
    ResourceLimit,
    /// <summary>
    /// The mappings of the process kept changing (mmap, munmap, mremap, mprotect) where its pages were being read:
    /// no page is reported under a mapping that was no longer there when its entry was read, so the read stops.
    /// </summary>
    [Categorized(FailureCategory.ResourceUnavailable)]
    MappingsChanged,
    /// <summary>
    /// The target's syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH) would send a syscall write tracking injects to
    /// its SIGSYS handler, or its selector would have the kernel kill it; nothing was issued or left behind.
    /// </summary>
    [Categorized(FailureCategory.PermissionDenied)]
    SyscallDispatchForbids,
    /// <summary>Reading a memory image's file failed (EIO: the disk under it): the image can be neither trusted nor restored.</summary>
    [Categorized(FailureCategory.ReadError)]
    ImageReadError,
    /// <summary>Reading a workload trace failed (EIO and the like, not a malformed line): the message names the path and the errno.</summary>
    [Categorized(FailureCategory.ReadError)]
    TraceReadError,
    /// <summary>An emulated call would change a mapping sealed by mseal(2) (EPERM): the message names the address.</summary>
    [Categorized(FailureCategory.PermissionDenied)]
    EmulatorMappingSealed,
}
