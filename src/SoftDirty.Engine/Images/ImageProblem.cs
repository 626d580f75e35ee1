namespace SoftDirty.Images;

/// <summary>A problem found in an image: the file, the byte offset where it lies, and what is wrong.</summary>
public sealed class ImageProblem
{
    internal ImageProblem(SoftDirtyError error, string file, long? offset, string message)
    {
        Error = error;
        File = file;
        Offset = offset;
        Message = message;
    }

    public SoftDirtyError Error { get; }
    public string File { get; }
    public long? Offset { get; }
    public string Message { get; }
    public override string ToString() => Message;
    public SoftDirtyException ToException() => new(Error, Message, File);
}
