namespace SoftDirty.Images;

[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum MemoryImageKind { Full, Incremental }
