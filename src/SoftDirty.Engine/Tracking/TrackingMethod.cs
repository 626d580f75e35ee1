namespace SoftDirty.Tracking;

/// <summary>How the pages a process changed are found.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum TrackingMethod
{
    /// <summary>The best the target supports: SoftDirty, else WriteProtect (own or emulated process), else Hash.</summary>
    Auto,
    /// <summary>clear_refs "4" and bit 55 of pagemap (PAGE_IS_SOFT_DIRTY with PAGEMAP_SCAN); needs CONFIG_MEM_SOFT_DIRTY.</summary>
    SoftDirty,
    /// <summary>userfaultfd async write-protect and PAGEMAP_SCAN WRITTEN: this process, an emulated one, or another real one registered from outside by syscall injection (Linux 6.7+).</summary>
    WriteProtect,
    /// <summary>Hash every present page through /proc/PID/mem and compare with the last snapshot; works on any kernel.</summary>
    Hash,
}
