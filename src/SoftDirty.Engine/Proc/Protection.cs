using System;

namespace SoftDirty;

/// <summary>Memory protection of a mapping (PROT_READ, PROT_WRITE, PROT_EXEC).</summary>
[Flags]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum Protection
{
    /// <summary>No access (PROT_NONE).</summary>
    None = 0,
    /// <summary>PROT_READ.</summary>
    Read = 1,
    /// <summary>PROT_WRITE.</summary>
    Write = 2,
    /// <summary>PROT_EXEC.</summary>
    Execute = 4,
}
