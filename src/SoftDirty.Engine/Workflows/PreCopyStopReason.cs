// Memory images exist for Linux processes (and emulated ones): Unix file modes are part of the format.
#pragma warning disable CA1416
namespace SoftDirty.Workflows;

[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum PreCopyStopReason { Converged, MaxIterations, NotConverging }
