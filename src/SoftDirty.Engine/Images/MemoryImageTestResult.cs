using System.Linq;

namespace SoftDirty.Images;

/// <summary>The verdict of Test-MemoryImage on a chain.</summary>
public sealed class MemoryImageTestResult
{
    internal MemoryImageTestResult() { }

    public string Path { get; init; } = "";
    public bool Valid { get; init; }
    public int ImagesChecked { get; init; }
    public ulong PagesChecked { get; init; }
    public JoinedList<ImageProblem> Problems { get; init; } = JoinedList<ImageProblem>.Empty;
    /// <summary>What joins the problems' messages in the string form of <see cref="Problems"/> (a message holds spaces).</summary>
    public const string ProblemSeparator = "; ";
    public override string ToString() => Valid ? $"{Path}: valid" : $"{Path}: {Problems.Count} problem(s): {Problems.FirstOrDefault()?.Message}";
}
