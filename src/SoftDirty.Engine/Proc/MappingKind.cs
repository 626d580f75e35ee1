using System;
using System.Collections.Generic;

namespace SoftDirty;

/// <summary>What a mapping is, from its path column in /proc/PID/maps.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum MappingKind
{
    /// <summary>Private anonymous memory (no path).</summary>
    Anonymous,
    /// <summary>A named anonymous mapping ([anon:name], PR_SET_VMA_ANON_NAME).</summary>
    NamedAnonymous,
    /// <summary>Shared anonymous memory or System V / POSIX shared memory (/dev/zero, SYSV*, memfd:, [anon_shmem:*]).</summary>
    SharedAnonymous,
    /// <summary>A mapped file.</summary>
    File,
    Heap,
    Stack,
    Vdso,
    Vvar,
    Vsyscall,
    /// <summary>Any other bracketed kernel mapping.</summary>
    Other,
}
