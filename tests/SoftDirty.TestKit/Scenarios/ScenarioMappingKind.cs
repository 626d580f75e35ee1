namespace SoftDirty.TestKit.Scenarios;

/// <summary>How a scenario mapping is backed.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum ScenarioMappingKind
{
    /// <summary>MAP_PRIVATE|MAP_ANONYMOUS.</summary>
    Anon,
    /// <summary>MAP_SHARED|MAP_ANONYMOUS.</summary>
    Shared,
    /// <summary>MAP_SHARED of the scenario's file, at the file offset of the page.</summary>
    File,
    /// <summary>MAP_PRIVATE of the scenario's file.</summary>
    FilePriv,
    /// <summary>MAP_PRIVATE|MAP_ANONYMOUS, then madvise MADV_HUGEPAGE (VM_HUGEPAGE: THP in the "madvise" mode too).</summary>
    Huge,
}
