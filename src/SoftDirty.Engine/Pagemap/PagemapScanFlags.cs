using System;
using System.Runtime.InteropServices;

namespace SoftDirty;

/// <summary>PAGEMAP_SCAN flags (PM_SCAN_*).</summary>
[Flags]
[System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1711", Justification = "The kernel's PM_SCAN_* flags; a cmdlet parameter type users name.")]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
internal enum PagemapScanFlags : ulong
{
    /// <summary>No flag set.</summary>
    None = 0,
    /// <summary>Write-protect the pages that match (get-and-clear of WRITTEN).</summary>
    WriteProtectMatching = 1UL << 0,
    /// <summary>Fail with EPERM on a VMA not registered for async write-protect.</summary>
    CheckWriteProtectAsync = 1UL << 1,
}
