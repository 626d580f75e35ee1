namespace SoftDirty.Images;

/// <summary>A problem found in an image: the file, the byte offset where it lies, and what is wrong.</summary>
public sealed class ImageProblem
{
    internal ImageProblem(EngineError error, string file, long? offset, string message)
    {
        Error = error;
        File = file;
        Offset = offset;
        Message = message;
    }

    /// <summary>The error the problem is reported as.</summary>
    public EngineError Error { get; }
    /// <summary>The image file the problem is in.</summary>
    public string File { get; }
    /// <summary>The byte offset in <see cref="File"/>, where the problem has one.</summary>
    public long? Offset { get; }
    /// <summary>What is wrong, for a person.</summary>
    public string Message { get; }
    /// <inheritdoc/>
    public override string ToString() => Message;
    internal EngineException ToException() => new(Error, Message, File);
}
