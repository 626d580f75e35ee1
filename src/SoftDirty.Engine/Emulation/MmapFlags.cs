using System;
using System.Diagnostics.CodeAnalysis;

namespace SoftDirty.Emulation;

/// <summary>How <see cref="EmulatedProcess.Mmap"/> maps: the mmap flags the emulator models (MAP_PRIVATE is the absence of <see cref="Shared"/>).</summary>
[Flags]
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
[SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix", Justification = "The kernel's name: mmap's flags argument (MAP_SHARED, MAP_FIXED).")]
public enum MmapFlags
{
    /// <summary>A private mapping (MAP_PRIVATE) placed where the kernel chooses, the address a hint only.</summary>
    None = 0,
    /// <summary>MAP_SHARED: writes are visible to every mapping of the file (or, without a path, shared anonymous memory).</summary>
    Shared = 1,
    /// <summary>MAP_FIXED: map exactly at the address, unmapping whatever was there.</summary>
    Fixed = 2,
    /// <summary>VM_HUGEPAGE (MADV_HUGEPAGE right after the mmap): aligned 2 MiB of private anonymous memory faults in as one THP.</summary>
    HugePage = 4,
}
