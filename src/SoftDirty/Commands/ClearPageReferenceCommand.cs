using System;
using System.Linq;
using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>
/// Clear-PageReference: the other clear_refs types: referenced (young) bits of all, anonymous or
/// file-backed pages, or the peak RSS. Soft-dirty has its own cmdlet, Clear-SoftDirty.
/// </summary>
[Cmdlet(VerbsCommon.Clear, "PageReference", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = IdSet)]
[OutputType(typeof(System.Diagnostics.Process), typeof(EmulatedProcess))]
public sealed class ClearPageReferenceCommand : ClearRefsCmdlet
{
    /// <summary>Which clear_refs type: All, Anonymous, Mapped or PeakRss.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [NotSoftDirty]
    [ValidateSet(nameof(ClearRefsType.All), nameof(ClearRefsType.Anonymous), nameof(ClearRefsType.Mapped), nameof(ClearRefsType.PeakRss))]
    public ClearRefsType Type { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() => ClearRefs(Type);
}
