namespace SoftDirty.Tracking;

/// <summary>The page hash of the Hash method and of memory image checksums.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PageHashAlgorithm
{
    /// <summary>A fast non-cryptographic 128-bit hash (<see cref="PageHash"/>).</summary>
    Fast128,
    /// <summary>SHA-256, truncated to its first 128 bits (16 bytes a page).</summary>
    Sha256,
}
