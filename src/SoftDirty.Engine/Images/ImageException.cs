using System;

namespace SoftDirty.Images;

/// <summary>An image error with the file and byte offset it is about.</summary>
public sealed class ImageException : EngineException
{
    internal ImageException(EngineError error, string message, string file, long? offset, Exception? inner = null) : base(error, message, file, 0, inner)
    {
        File = file;
        Offset = offset;
    }
    /// <summary>The image file the problem is in.</summary>
    public string File { get; }
    /// <summary>The byte offset in <see cref="File"/>, where the problem has one.</summary>
    public long? Offset { get; }
}
