using System.Management.Automation;
using SoftDirty;
using SoftDirty.Images;

namespace SoftDirty.Commands;

/// <summary>Get-MemoryImage: the chain of an image, from the full image to the one given, with statistics.</summary>
[Cmdlet(VerbsCommon.Get, "MemoryImage")]
[OutputType(typeof(MemoryImageInfo))]
public sealed class GetMemoryImageCommand : ImagePathCmdlet
{
    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        foreach (var p in Paths())
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
