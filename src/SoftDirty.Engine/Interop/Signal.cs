namespace SoftDirty;

/// <summary>Linux signal numbers the engine sends or recognises (asm-generic/signal.h), in one place.</summary>
internal static class Signal
{
    /// <summary>A ptrace stop reports SIGTRAP for a PTRACE_EVENT stop.</summary>
    public const int SIGTRAP = 5;
    /// <summary>Ends a process; it cannot be caught or blocked.</summary>
    public const int SIGKILL = 9;
    /// <summary>Stops a process; it cannot be caught or blocked.</summary>
    public const int SIGSTOP = 19;
    /// <summary>Sent to a parent when a child exits or stops (and to a tracer at each ptrace stop).</summary>
    public const int SIGCHLD = 17;
}
