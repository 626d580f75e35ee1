using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets that look at what a pipeline record came as, not only at the values PowerShell bound from it:
/// an object's Id bound to -Id (<see cref="PipedIdCmdlet"/>), an object made a path by its ToString (<see cref="ImagePathCmdlet"/>).
/// </summary>
public abstract class PipedObjectCmdlet : EngineCmdlet
{
    /// <summary>The object this pipeline record came as; never given by hand.</summary>
    [Parameter(ValueFromPipeline = true, DontShow = true)]
    public PSObject? PipedObject { get; set; }
}
