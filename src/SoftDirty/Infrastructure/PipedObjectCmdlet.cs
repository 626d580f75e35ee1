using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets that look at what a pipeline record came as, not only at the values PowerShell bound from it:
/// an object's Id bound to -Id (<see cref="PipedIdCmdlet"/>), an object made a path by its ToString (<see cref="ImagePathCmdlet"/>).
/// </summary>
public abstract class PipedObjectCmdlet : EngineCmdlet
{
    private HashSet<string> _given = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The object this pipeline record came as; never given by hand.</summary>
    /// <remarks>
    /// In every parameter set, so that it binds beside the by-value parameter of whichever set the record picks; a cmdlet
    /// whose default set takes no pipeline input declares it in its other sets instead (Get-SoftDirtySupport), or binding
    /// it in the default set first would keep a piped emulated process from binding -Emulator.
    /// </remarks>
    [Parameter(ValueFromPipeline = true, DontShow = true)]
    public virtual PSObject? PipedObject { get; set; }

    /// <inheritdoc/>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        // Bound before any input arrives: on the command line or by $PSDefaultParameterValues.
        _given = new(MyInvocation.BoundParameters.Keys, StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>Whether <paramref name="name"/> was given on the command line (or by $PSDefaultParameterValues), not bound from the pipeline.</summary>
    protected bool Given(string name) => _given.Contains(name);

    /// <summary>
    /// The error for a record whose object bound no parameter but <see cref="PipedObject"/>, or null. Without this
    /// parameter such an object was InputObjectNotBound; with it, $e | Save-MemoryImage under a $PSDefaultParameterValues
    /// of -Id saved the real process of that pid, not the emulated one piped in.
    /// </summary>
    private protected EngineException? Unused(string given)
    {
        if (PipedObject is not { } piped || MyInvocation.BoundParameters.Keys.Any(k => k != nameof(PipedObject) && !_given.Contains(k))) return null;
        return new EngineException(EngineError.InvalidArgument,
            $"The piped {piped.BaseObject.GetType().FullName} binds no parameter of this command: {given} is given (on the command line or by $PSDefaultParameterValues), and the object was not used. " +
            "Pipe it without that parameter, or give the parameter without piping.", null);
    }
}
