using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;

namespace SoftDirty;

/// <summary>How pagemap entries are found.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PageReadMethod
{
    /// <summary>PAGEMAP_SCAN when a filter lets the kernel skip pages and the kernel has it, else Pread.</summary>
    Auto,
    /// <summary>pread of every entry, in large chunks into a reused buffer.</summary>
    Pread,
    /// <summary>PAGEMAP_SCAN finds the candidate regions, pread reads their entries.</summary>
    PagemapScan,
}
