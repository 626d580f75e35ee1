using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>PAGEMAP_SCAN flags (PM_SCAN_*).</summary>
[Flags]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PagemapScanFlags : ulong
{
    None = 0,
    /// <summary>Write-protect the pages that match (get-and-clear of WRITTEN).</summary>
    WriteProtectMatching = 1UL << 0,
    /// <summary>Fail with EPERM on a VMA not registered for async write-protect.</summary>
    CheckWriteProtectAsync = 1UL << 1,
}
