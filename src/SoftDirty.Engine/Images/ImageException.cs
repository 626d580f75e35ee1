namespace SoftDirty.Images;

/// <summary>An image error with the file and byte offset it is about.</summary>
public sealed class ImageException : SoftDirtyException
{
    internal ImageException(SoftDirtyError error, string message, string file, long? offset) : base(error, message, file)
    {
        File = file;
        Offset = offset;
    }
    public string File { get; }
    public long? Offset { get; }
}
