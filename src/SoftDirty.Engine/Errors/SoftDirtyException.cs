using System;

namespace SoftDirty;

/// <summary>
/// What went wrong, one value per stable error id. The cmdlets use the name as the ErrorRecord's
/// ErrorId and pick the ErrorCategory from it, so keep the names stable.
/// </summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum SoftDirtyError
{
    /// <summary>No process with that id.</summary>
    ProcessNotFound,
    /// <summary>The caller lacks the privilege to read or write the /proc file.</summary>
    PermissionDenied,
    /// <summary>The process exited while it was being read.</summary>
    ProcessExited,
    /// <summary>An argument is out of range, unaligned or malformed.</summary>
    InvalidArgument,
    /// <summary>The /proc interface exists only on Linux.</summary>
    PlatformNotSupported,
    /// <summary>The kernel accepts clear_refs "4" but never sets bit 55 (no CONFIG_MEM_SOFT_DIRTY).</summary>
    SoftDirtyNotSupported,
    /// <summary>The kernel has no PAGEMAP_SCAN ioctl (before 6.7).</summary>
    PagemapScanNotSupported,
    /// <summary>No mapping matched the requested name or range.</summary>
    MappingNotFound,
    /// <summary>Reading or writing a /proc file failed for another reason.</summary>
    ProcIOError,
    /// <summary>An emulated system call rejected its arguments (EINVAL: unaligned or zero-length range, bad flags).</summary>
    EmulatorInvalidArgument,
    /// <summary>An emulated system call needs a mapped range and part of it is not mapped (ENOMEM).</summary>
    EmulatorNotMapped,
    /// <summary>An emulated access outside any mapping or against its protection (SIGSEGV); nothing changed.</summary>
    SegmentationFault,
    /// <summary>Async write-protect tracking is impossible for this target (another real process, or no userfaultfd WP_ASYNC).</summary>
    WriteProtectNotSupported,
    /// <summary>A memory image's data does not match its checksums, or a file is malformed (the message names file and offset).</summary>
    ImageCorrupt,
    /// <summary>A memory image was never finished (no manifest.json, or a file shorter than its manifest says).</summary>
    ImageIncomplete,
    /// <summary>An image's parent is missing or is not the image it was taken against.</summary>
    ImageParentMismatch,
    /// <summary>The destination of a new memory image already holds one.</summary>
    ImageExists,
    /// <summary>Writing a memory image failed (disk full, permissions).</summary>
    ImageWriteError,
    /// <summary>A destination is a symbolic link or belongs to another user: the module does not write there.</summary>
    UnsafeDestination,
    /// <summary>Export-DirtyPageChart got nothing to draw (no input, or only objects it passes over).</summary>
    ChartNoData,
    /// <summary>Writing a chart failed: a missing or unwritable folder, a full disk.</summary>
    ChartWriteError,
    /// <summary>This process may not ptrace the target (Yama ptrace_scope, another user without CAP_SYS_PTRACE); the message says which.</summary>
    PtraceNotPermitted,
    /// <summary>The target is already traced by another process (TracerPid), which excludes syscall injection.</summary>
    ProcessAlreadyTraced,
    /// <summary>The target's seccomp filter (or strict mode) forbids a syscall that write tracking injects (userfaultfd); nothing was left behind.</summary>
    SeccompForbids,
    /// <summary>Write tracking is not enabled in that process (Enable-WriteTracking), or its state no longer matches it.</summary>
    WriteTrackingNotEnabled,
}

/// <summary>An engine failure with a stable <see cref="SoftDirtyError"/> and the errno when one applies.</summary>
public class SoftDirtyException : Exception
{
    public SoftDirtyException(SoftDirtyError error, string message, object? target = null, int errno = 0, Exception? inner = null)
        : base(message, inner)
    {
        Error = error;
        Target = target;
        Errno = errno;
    }

    public SoftDirtyError Error { get; }
    /// <summary>What the error is about (a pid, an address, a path).</summary>
    public object? Target { get; }
    /// <summary>The Linux errno behind the failure, 0 when none.</summary>
    public int Errno { get; }
}
