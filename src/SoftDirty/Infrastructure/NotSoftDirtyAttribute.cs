using System;
using System.Management.Automation;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>
/// Refuses ClearRefsType.SoftDirty on Clear-PageReference -Type with a message that names Clear-SoftDirty; it
/// runs before [ValidateSet] (which only keeps Tab from offering SoftDirty and says nothing about where to go).
/// </summary>
internal sealed class NotSoftDirtyAttribute : ArgumentTransformationAttribute
{
    /// <inheritdoc/>
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        var value = inputData is PSObject ps ? ps.BaseObject : inputData;
        if (value is ClearRefsType.SoftDirty || value is string s && s.Equals(nameof(ClearRefsType.SoftDirty), StringComparison.OrdinalIgnoreCase))
            throw new ArgumentTransformationMetadataException("Use Clear-SoftDirty to clear soft-dirty bits; Clear-PageReference -Type takes All, Anonymous, Mapped or PeakRss.");
        return inputData;
    }
}
