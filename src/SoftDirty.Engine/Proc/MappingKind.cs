using System;
using System.Collections.Generic;

namespace SoftDirty;

/// <summary>What a mapping is, from its path column in /proc/PID/maps.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum MappingKind
{
    /// <summary>Private anonymous memory (no path, or a private mapping of /dev/zero).</summary>
    Anonymous,
    /// <summary>A named anonymous mapping ([anon:name], PR_SET_VMA_ANON_NAME).</summary>
    NamedAnonymous,
    /// <summary>Shared anonymous memory or System V / POSIX shared memory (/dev/zero mapped shared, SYSV*, memfd:, [anon_shmem:*]).</summary>
    SharedAnonymous,
    /// <summary>A mapped file.</summary>
    File,
    /// <summary>The brk heap ([heap]).</summary>
    Heap,
    /// <summary>The main thread's stack ([stack]).</summary>
    Stack,
    /// <summary>The kernel's virtual shared object ([vdso]).</summary>
    Vdso,
    /// <summary>The vDSO's data pages ([vvar], [vvar_vclock]).</summary>
    Vvar,
    /// <summary>The legacy vsyscall page ([vsyscall]), past the task size.</summary>
    Vsyscall,
    /// <summary>Any other bracketed kernel mapping.</summary>
    Other,
}
