namespace SoftDirty.Commands;

/// <summary>
/// The refusal of a piped mapping or range by a command that saves or migrates whole mappings chosen by -Mapping
/// (Save-MemoryImage, Invoke-PreCopyMigration). Such an object carries its process's id, which binds -Id by property
/// name: Get-MemoryMapping -Mapping '[heap]' | Save-MemoryImage saved every mapping of the process, the selection the
/// user piped dropped without a word. Its Start binds a hidden parameter instead, and the record is refused.
/// </summary>
internal static class PipedRange
{
    public static string Message(string command, ulong start) =>
        $"{command} takes a process, not a piped mapping or range (Start 0x{start:x}): it would work on every mapping of the process. " +
        "Give the mappings with -Mapping (their names or paths), and pipe the process or give -Id.";
}
