using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// The computer whose file system the image path of a piped object names, where that is not this computer. A migration over
/// a session (Invoke-PreCopyMigration -ToSession) emits rounds and a summary whose ImagePath and FinalImage are paths on the
/// destination (its ToComputer), and objects that came back from a session (Invoke-Command: PSComputerName) name images
/// there: piped into Test-, Get- or Restore-MemoryImage here, they bound those paths, and the command read whatever image
/// this computer had under the same path (another chain, an older migration to the same folder), said it valid and
/// restored it, with no error (round 20).
/// </summary>
internal static class PipedImageComputer
{
    private const string ToComputerProperty = "ToComputer";

    /// <summary>The other computer <paramref name="piped"/>'s image path lies on, else null.</summary>
    public static string? Of(PSObject piped)
    {
        if (PipedProcessId.RemoteComputer(piped) is { } computer) return computer;
        return piped.Properties[ToComputerProperty]?.Value is string to && to.Length != 0 && !PipedProcessId.IsThisComputer(to) ? to : null;
    }

    /// <summary>The error for an image path of another computer.</summary>
    public static EngineException Refusal(string computer, string? path) => new(EngineError.InvalidArgument,
        $"The piped object names the image {path} on the computer {computer}, not here: the image here under that path (if any) was not read. " +
        "Run the command on that computer (Invoke-Command -Session), or give -Path if you mean an image here.", path);
}
