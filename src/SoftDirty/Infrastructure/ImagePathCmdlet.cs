using System;
using System.IO;
using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Base of the cmdlets that read images given as paths, by value or by a property (Test-MemoryImage, Get-MemoryImage).
/// PowerShell makes any object piped in a path by its ToString when no property binds: Invoke-PreCopyMigration |
/// Test-MemoryImage tested each round's image and then the summary as a folder named "SoftDirty.Workflows.PreCopySummary"
/// in the current one, and said $false (an invalid image) of a migration whose images were all valid. Such a record is
/// now InvalidArgument; the summary binds its FinalImage.
/// </summary>
public abstract class ImagePathCmdlet : PipedObjectCmdlet
{
    private static readonly string[] PathProperties = { "Path", "FullName", "ImagePath", "FinalImage" };

    /// <summary>The directories of memory images (each read with its whole chain).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "ImagePath", "FinalImage")]
    public string[] Path { get; set; } = Array.Empty<string>();

    /// <summary>The paths of this record; none, and an InvalidArgument error, where PowerShell made them of an object that is no path.</summary>
    protected string[] Paths()
    {
        if (PipedObject is not { } piped) return Path;
        if (Given(nameof(Path)))
        {
            if (Unused("-Path") is { } unused) { WriteError(ToErrorRecord(unused)); return Array.Empty<string>(); }
            return Path;
        }
        if (PipedImageComputer.Of(piped) is { } far) { WriteError(ToErrorRecord(PipedImageComputer.Refusal(far, Path.Length == 1 ? Path[0] : null))); return Array.Empty<string>(); }
        if (piped.BaseObject is string or FileSystemInfo or PathInfo) return Path;
        foreach (var name in PathProperties)
            if (piped.Properties[name]?.Value is not null) return Path;
        WriteError(EngineError.InvalidArgument,
            $"A {piped.BaseObject.GetType().FullName} is not an image: pipe paths, or objects with a Path, FullName, ImagePath or FinalImage property (a round or a migration that wrote no image has none).", Path.Length == 1 ? Path[0] : null);
        return Array.Empty<string>();
    }
}
