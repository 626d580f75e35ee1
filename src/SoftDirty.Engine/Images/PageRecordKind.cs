namespace SoftDirty.Images;

[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
internal enum PageRecordKind : uint { Data = 1, Zero = 2 }
