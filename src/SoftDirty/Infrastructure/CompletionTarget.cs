using System;
using System.Collections;
using System.Collections.Generic;
using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>The target a command line being completed names (-Emulator or -Id), for the argument completers.</summary>
internal static class CompletionTarget
{
    /// <summary>The mappings of every target the bound parameters name; a target that cannot be read adds none.</summary>
    public static List<MemoryMapping> Mappings(IDictionary fakeBoundParameters)
    {
        var mappings = new List<MemoryMapping>();
        foreach (var source in Sources(fakeBoundParameters))
        {
            try
            {
                using (source) mappings.AddRange(source.ReadMappings(withCounters: false));
            }
            catch (EngineException) { }
        }
        return mappings;
    }

    /// <summary>The page sources the bound -Emulator or -Id name (an emulated process is borrowed, not disposed).</summary>
    private static IEnumerable<IPageSource> Sources(IDictionary bound)
    {
        if (bound["Emulator"] is { } emu && LanguagePrimitives.ConvertTo<object>(emu) is IPageSource emulated)
        {
            yield return new BorrowedSource(emulated);
            yield break;
        }
        if (!OperatingSystem.IsLinux() || bound["Id"] is not { } ids) yield break;
        foreach (var id in LanguagePrimitives.ConvertTo<int[]>(ids))
        {
            IPageSource? s = null;
            try { s = ProcPageSource.Open(id); } catch (EngineException) { }
            if (s is not null) yield return s;
        }
    }
}
