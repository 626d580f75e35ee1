using System.Linq;

namespace SoftDirty.Images;

/// <summary>The verdict of Test-MemoryImage on a chain.</summary>
public sealed class MemoryImageTestResult
{
    internal MemoryImageTestResult() { }

    /// <summary>The image checked (the newest of the chain).</summary>
    public string Path { get; init; } = "";
    /// <summary>True when no problem was found.</summary>
    public bool Valid { get; init; }
    /// <summary>Images of the chain checked.</summary>
    public int ImagesChecked { get; init; }
    /// <summary>Pages whose hash was checked.</summary>
    public ulong PagesChecked { get; init; }
    /// <summary>What was found wrong, in the order found.</summary>
    public JoinedList<ImageProblem> Problems { get; init; } = JoinedList<ImageProblem>.Empty;
    /// <summary>What joins the problems' messages in the string form of <see cref="Problems"/> (a message holds spaces).</summary>
    public const string ProblemSeparator = "; ";
    /// <inheritdoc/>
    public override string ToString() => Valid ? $"{Path}: valid" : $"{Path}: {Problems.Count} problem(s): {Problems.FirstOrDefault()?.Message}";
}
