namespace SoftDirty;

/// <summary>
/// ResourceLimit: this PowerShell ran out of descriptors (EMFILE: its open-file limit, ulimit -n; ENFILE: the system's file
/// table) or memory (ENOMEM) where it opened or read something. That says nothing of the process, image or file it was about,
/// so it is never read as an answer about them (rounds 13, 28 and 29). One wording everywhere: what failed, what that leaves
/// undone or unknown, and the remedy its errno calls for (each place said "raise the limit (ulimit -n)", for ENOMEM too).
/// </summary>
internal static class ResourceLimitError
{
    /// <summary>"<paramref name="failed"/>: ERRNO: description. <paramref name="consequence"/>; remedy."</summary>
    public static EngineException For(string failed, int errno, string consequence, object? target = null, System.Exception? inner = null) =>
        new(EngineError.ResourceLimit, $"{failed}: {Errno.Describe(errno)}. {consequence}; {Remedy(errno)}.", target, errno, inner);

    /// <summary><paramref name="message"/> (a sentence, its full stop optional) and then the remedy, as a sentence of its own.</summary>
    public static string WithRemedy(string message, int errno)
    {
        var remedy = Remedy(errno);
        return $"{message.TrimEnd('.')}. {char.ToUpperInvariant(remedy[0])}{remedy[1..]}.";
    }

    /// <summary>What the user can do about <paramref name="errno"/> (lower case, no full stop).</summary>
    public static string Remedy(int errno) => errno switch
    {
        Errno.EMFILE => "raise this PowerShell's open-file limit (ulimit -n) and try again",
        Errno.ENFILE => "the system's file table is full (fs.file-max): try again once other programs have closed files",
        _ => "try again once memory is free",
    };
}
