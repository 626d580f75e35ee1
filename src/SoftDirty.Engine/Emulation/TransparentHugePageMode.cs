namespace SoftDirty.Emulation;

/// <summary>When a fault may map a transparent huge page (/sys/kernel/mm/transparent_hugepage/enabled).</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum TransparentHugePageMode
{
    /// <summary>Never: every fault maps 4 KiB pages.</summary>
    Never,
    /// <summary>Only in VMAs marked MADV_HUGEPAGE.</summary>
    Madvise,
    /// <summary>In every private anonymous VMA (not marked MADV_NOHUGEPAGE).</summary>
    Always,
}
