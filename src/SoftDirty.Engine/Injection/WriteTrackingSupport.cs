namespace SoftDirty.Injection;

/// <summary>Whether one process can be tracked by WriteProtect from outside (Get-SoftDirtySupport -Id), and why not.</summary>
public sealed class WriteTrackingSupport
{
    internal WriteTrackingSupport() { }

    /// <summary>The process asked about.</summary>
    public int ProcessId { get; init; }
    /// <summary>The process's name.</summary>
    public string Name { get; init; } = "";
    /// <summary>Enable-WriteTracking may register this process (the injected userfaultfd still has the last word under a seccomp filter).</summary>
    public bool WriteProtect { get; init; }
    /// <summary>Write tracking is enabled there now.</summary>
    public bool Enabled { get; init; }
    /// <summary>The error Enable-WriteTracking would give (a EngineError name), null when none.</summary>
    public string? ErrorId { get; init; }
    /// <summary>Why write tracking is or is not possible, for a person.</summary>
    public string? Reason { get; init; }
    /// <summary>0 none, 1 strict, 2 filter (each injected call is judged against it first); -1 unreadable.</summary>
    public int SeccompMode { get; init; }

    internal static WriteTrackingSupport For(ProcPageSource source)
    {
        var refused = InjectionSupport.Check(source.ProcessId, source.Features);
        int seccomp = InjectionSupport.SeccompMode(source.ProcessId);
        bool enabled;
        try { enabled = WriteTrackingStore.Load(source.ProcessId) is not null; }
        catch (EngineException hidden) when (hidden.Error == EngineError.PermissionDenied) { enabled = true; refused ??= hidden; } // kept, but not checkable now
        if (refused is null && !enabled) refused = InjectionSupport.ForeignTracking(source);
        return new WriteTrackingSupport
        {
            ProcessId = source.ProcessId,
            Name = source.Name,
            WriteProtect = refused is null,
            Enabled = enabled,
            ErrorId = refused?.Error.ToString(),
            Reason = refused?.Message ?? (seccomp == 2 ? "Allowed; the process has a seccomp filter: each injected call is run through it first, and one it would refuse makes Enable-WriteTracking say SeccompForbids, changing nothing." : null),
            SeccompMode = seccomp,
        };
    }
}
