using System.Management.Automation;
using SoftDirty;
using SoftDirty.Images;

namespace SoftDirty.Commands;

/// <summary>
/// Test-MemoryImage: verifies a chain (parent links, files, index, every page's checksum, completeness) and
/// says exactly what is wrong: the file and the byte offset.
/// </summary>
[Cmdlet(VerbsDiagnostic.Test, "MemoryImage")]
[OutputType(typeof(MemoryImageTestResult), typeof(bool))]
public sealed class TestMemoryImageCommand : SoftDirtyCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "ImagePath")]
    public string[] Path { get; set; } = System.Array.Empty<string>();

    /// <summary>Only $true or $false.</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    protected override void ProcessRecord()
    {
        foreach (var p in Path)
        {
            var result = ImageVerifier.Test(GetUnresolvedProviderPathFromPSPath(p), Cancellation);
            foreach (var problem in result.Problems) WriteVerbose(problem.Message);
            if (Quiet) WriteObject(result.Valid);
            else WriteObject(result);
        }
    }
}
