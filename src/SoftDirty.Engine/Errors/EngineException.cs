using System;

namespace SoftDirty;

/// <summary>An engine failure with a stable <see cref="EngineError"/> and the errno when one applies.</summary>
public class EngineException : Exception
{
    /// <summary>A failure with its error id, message, subject, errno (0: none) and inner exception.</summary>
    internal EngineException(EngineError error, string message, object? target = null, int errno = 0, Exception? inner = null)
        : base(message, inner)
    {
        Error = error;
        Target = target;
        Errno = errno;
    }

    /// <summary>The stable error id (the ErrorRecord's ErrorId).</summary>
    public EngineError Error { get; }
    /// <summary>What the error is about (a pid, an address, a path).</summary>
    public object? Target { get; }
    /// <summary>The Linux errno behind the failure, 0 when none.</summary>
    public int Errno { get; }
}
