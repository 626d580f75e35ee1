namespace SoftDirty.Images;

public sealed class ImageMapping
{
    public ulong Start { get; set; }
    public ulong End { get; set; }
    public string Permissions { get; set; } = "";
    public string Path { get; set; } = "";
    public ulong Offset { get; set; }
    public override string ToString() => $"0x{Start:x}-0x{End:x} {Permissions} {Path}";
}
