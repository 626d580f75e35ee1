namespace SoftDirty;

/// <summary>
/// The kind of an engine failure, for the caller's error reporting. Each member is named exactly as the
/// PowerShell ErrorCategory it stands for (the engine knows nothing of PowerShell; the cmdlets map by name).
/// </summary>
internal enum FailureCategory
{
    /// <summary>No category applies.</summary>
    NotSpecified,
    /// <summary>An argument is out of range, unaligned or malformed.</summary>
    InvalidArgument,
    /// <summary>Data read back is malformed or inconsistent.</summary>
    InvalidData,
    /// <summary>The operation does not fit the object's state.</summary>
    InvalidOperation,
    /// <summary>The platform or kernel lacks the feature.</summary>
    NotImplemented,
    /// <summary>What was asked for does not exist.</summary>
    ObjectNotFound,
    /// <summary>The caller lacks the privilege.</summary>
    PermissionDenied,
    /// <summary>Something else holds the resource.</summary>
    ResourceBusy,
    /// <summary>The resource to create exists already.</summary>
    ResourceExists,
    /// <summary>The resource went away (an exited process).</summary>
    ResourceUnavailable,
    /// <summary>Reading failed.</summary>
    ReadError,
    /// <summary>Writing failed.</summary>
    WriteError,
    /// <summary>Doing it would be unsafe.</summary>
    SecurityError,
    /// <summary>A connection to another machine failed.</summary>
    ConnectionError,
}
