namespace SoftDirty.Injection;

/// <summary>
/// A command using write tracking that no one kept (<see cref="WriteTrackingState.Kept"/>): the PowerShell process it runs in
/// (pid and start time, so a command killed outright is known gone) and the tracker's own token (two runspaces of one
/// process are two commands). The last command of those to end disables the tracking, not the first.
/// </summary>
internal sealed record WriteTrackingUser(int ProcessId, ulong StartTime, System.Guid Token);
