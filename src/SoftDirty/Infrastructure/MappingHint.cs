namespace SoftDirty.Commands;

/// <summary>
/// Where an error about a range or a -Mapping name sends the user to list the mappings: -Id for a real process,
/// -Emulator for an emulated one (its id is no pid: "-Id 4194305" is ProcessNotFound).
/// </summary>
internal static class MappingHint
{
    public static string For(IPageSource source) => source.Features.Emulated
        ? $"see Get-MemoryMapping -Emulator (emulated process {source.ProcessId})"
        : $"see Get-MemoryMapping -Id {source.ProcessId}";
}
