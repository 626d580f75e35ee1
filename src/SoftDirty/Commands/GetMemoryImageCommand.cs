using System.Management.Automation;
using SoftDirty;
using SoftDirty.Images;

namespace SoftDirty.Commands;

/// <summary>Get-MemoryImage: the chain of an image, from the full image to the one given, with statistics.</summary>
[Cmdlet(VerbsCommon.Get, "MemoryImage")]
[OutputType(typeof(MemoryImageInfo))]
public sealed class GetMemoryImageCommand : EngineCmdlet
{
    /// <summary>The directories of memory images.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "ImagePath")]
    public string[] Path { get; set; } = System.Array.Empty<string>();

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        foreach (var p in Path)
        {
            try
            {
                using var chain = ImageReader.Chain(FileSystemPath(p));
                foreach (var image in chain)
                    WriteObject(MemoryImageInfo.From(image));
            }
            catch (EngineException ex) { WriteError(ToErrorRecord(ex)); }
        }
    }
}
