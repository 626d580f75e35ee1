using System;
using System.Diagnostics;
using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Whether the Id of an object piped into -Id names a process. PowerShell binds a property named Id (then PID or
/// ProcessId) of any object by property name, so Get-Job | Enable-WriteTracking injected into the process whose pid
/// was the job's number (1 is init), and a runspace's, a history entry's, a session's or a breakpoint's Id did the same.
/// A property named PID or ProcessId says what it holds; an Id is taken as a pid from a process, a thread (refused
/// later, naming its process), the module's own objects and objects made in PowerShell ([pscustomobject], Import-Csv,
/// ConvertFrom-Json), but not from one that Select-Object or deserialization made of another kind of object.
/// </summary>
internal static class PipedProcessId
{
    private const string Selected = "Selected.";
    private const string Deserialized = "Deserialized.";

    /// <summary>The type name of <paramref name="piped"/> when the Id it bound is not a process id, else null.</summary>
    public static string? ForeignKind(PSObject piped)
    {
        if (piped.Properties["Id"] is null) return null; // bound through PID or ProcessId
        var baseObject = piped.BaseObject;
        if (baseObject is not PSCustomObject) return IsProcessKind(baseObject.GetType().FullName) ? null : baseObject.GetType().FullName;
        // Made in PowerShell: its own kind unless it is a selection or a deserialized copy of another object.
        var name = piped.TypeNames.Count > 0 ? piped.TypeNames[0] : "";
        var origin = name;
        while (true)
        {
            if (origin.StartsWith(Selected, StringComparison.Ordinal)) origin = origin[Selected.Length..];
            else if (origin.StartsWith(Deserialized, StringComparison.Ordinal)) origin = origin[Deserialized.Length..];
            else break;
        }
        if (ReferenceEquals(origin, name) || origin == typeof(PSCustomObject).FullName || IsProcessKind(origin)) return null;
        return name;
    }

    /// <summary>A process, a thread, or one of the module's own objects (every one of them names its process's pid).</summary>
    private static bool IsProcessKind(string? typeName) =>
        typeName == typeof(Process).FullName || typeName == typeof(ProcessThread).FullName
        || (typeName?.StartsWith(nameof(SoftDirty) + ".", StringComparison.Ordinal) ?? false);

    /// <summary>The property PowerShell remoting adds to every object that comes back from a session (Invoke-Command, Receive-Job).</summary>
    private const string ComputerProperty = "PSComputerName";

    /// <summary>
    /// The computer a piped object came from where that is not this one, else null: Invoke-Command -Session $s { Get-Process x }
    /// | Save-MemoryImage bound the remote process's pid, and the command acted on whatever process has that pid here.
    /// This computer is "localhost", ".", a loopback address, or its host name as it is: the short name, or the full name
    /// where the host's name is a full one (a trailing dot ignored). A full name is never matched by its first label alone:
    /// web1.prod.example is another computer than web1.staging.example, whose short name is the same (round 20: it was taken
    /// for this one, and so was any name beginning "127.").
    /// </summary>
    public static string? RemoteComputer(PSObject piped)
    {
        if (piped.Properties[ComputerProperty]?.Value is not string computer || computer.Length == 0) return null;
        return IsThisComputer(computer) ? null : computer;
    }

    internal static bool IsThisComputer(string computer)
    {
        if (computer is "." || computer.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return true;
        var name = computer.EndsWith('.') ? computer[..^1] : computer;
        if (name.Equals(Environment.MachineName, StringComparison.OrdinalIgnoreCase)
            || name.Equals(System.Net.Dns.GetHostName(), StringComparison.OrdinalIgnoreCase)) return true;
        // A short name (no dot) is also this host's when it is the first label of this host's full name.
        if (!name.Contains('.', StringComparison.Ordinal)
            && name.Equals(System.Net.Dns.GetHostName().Split('.')[0], StringComparison.OrdinalIgnoreCase)) return true;
        return System.Net.IPAddress.TryParse(computer.Trim('[', ']'), out var address) && System.Net.IPAddress.IsLoopback(address);
    }

    /// <summary>The error for a process id that names a process on another computer.</summary>
    public static EngineException RemoteRefusal(string computer, int id) => new(EngineError.InvalidArgument,
        $"The piped object came from the computer {computer} ({ComputerProperty}): its process id {id} names a process there, not here, and process {id} here was not touched. " +
        "Run the command on that computer (Invoke-Command), or give -Id if you mean the process here.", id);

    /// <summary>The error for an Id of <paramref name="kind"/> that is not a process id.</summary>
    public static EngineException Refusal(string kind, int id) => new(EngineError.InvalidArgument,
        $"The piped {kind} has an Id ({id}) that is not a process id: process {id} was not touched. Pipe processes (Get-Process) or objects " +
        $"with a ProcessId or PID property, or give -Id {id} if you mean that process.", id);
}
