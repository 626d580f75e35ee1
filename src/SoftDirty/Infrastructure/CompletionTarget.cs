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
        if (!OperatingSystem.IsLinux() || bound["Id"] is not { } bid) yield break;
        // An -Id that is no number yet ("-Id abc"): nothing to offer. A completer that threw would make PowerShell
        // fall back to file names.
        if (!LanguagePrimitives.TryConvertTo<int[]>(bid, out var ids)) yield break;
        foreach (var id in ids)
        {
            IPageSource? s = null;
            try { s = ProcPageSource.Open(id); } catch (EngineException) { }
            if (s is not null) yield return s;
        }
    }
}
