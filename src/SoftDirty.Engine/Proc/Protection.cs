using System;

namespace SoftDirty;

/// <summary>Memory protection of a mapping (PROT_READ, PROT_WRITE, PROT_EXEC).</summary>
[Flags]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum Protection
{
    None = 0,
    Read = 1,
    Write = 2,
    Execute = 4,
}
