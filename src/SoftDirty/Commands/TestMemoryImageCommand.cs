using System.Management.Automation;
using SoftDirty;
using SoftDirty.Images;

namespace SoftDirty.Commands;

/// <summary>
/// Test-MemoryImage: verifies a chain (manifest checksums and invariants, parent links, files, index, every
/// page's checksum, completeness). Returns $true or $false, so <c>if (Test-MemoryImage $p)</c> means what it
/// says; -Detailed returns what is wrong instead: the file and the byte offset.
/// </summary>
[Cmdlet(VerbsDiagnostic.Test, "MemoryImage")]
[OutputType(typeof(bool), typeof(MemoryImageTestResult))]
public sealed class TestMemoryImageCommand : ImagePathCmdlet
{
    /// <summary>Return the verdict with every problem (file, offset, message) instead of $true/$false.</summary>
    [Parameter]
    public SwitchParameter Detailed { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        foreach (var p in Paths())
        {
            MemoryImageTestResult result;
            try { result = ImageVerifier.Test(FileSystemPath(p), Cancellation); }
            catch (EngineException ex) { WriteError(ToErrorRecord(ex)); continue; } // no verdict (ResourceLimit): neither $true nor $false
            foreach (var problem in result.Problems) WriteVerbose(problem.Message);
            if (Detailed) WriteObject(result);
            else WriteObject(result.Valid);
        }
    }
}
