using System.Management.Automation;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>The one place that writes clear_refs for a cmdlet: support check, ShouldProcess, write.</summary>
internal static class ClearRefsAction
{
    /// <summary>Clears <paramref name="type"/> on <paramref name="source"/> unless -WhatIf or the user declines; false then.</summary>
    public static bool Run(EngineCmdlet cmdlet, IPageSource source, ClearRefsType type)
    {
        if (type == ClearRefsType.SoftDirty && !source.Features.SoftDirty)
            throw new SoftDirtyException(SoftDirtyError.SoftDirtyNotSupported,
                $"Not clearing soft-dirty bits of process {source.ProcessId} ({source.Name}): {source.Features.SoftDirtyReason}", source.ProcessId);
        if (!cmdlet.ShouldProcess($"process {source.ProcessId} ({source.Name})", $"Write {(int)type} ({type}) to clear_refs"))
            return false;
        source.ClearRefs(type);
        return true;
    }
}
