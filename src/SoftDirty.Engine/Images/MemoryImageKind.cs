namespace SoftDirty.Images;

/// <summary>Whether an image stands alone or records the changes since its parent.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum MemoryImageKind
{
    /// <summary>Every page with data; no parent.</summary>
    Full,
    /// <summary>The pages changed since the parent image.</summary>
    Incremental,
}
