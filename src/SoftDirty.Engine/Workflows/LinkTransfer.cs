namespace SoftDirty.Workflows;

/// <summary>One image sent over a real link: the bytes that crossed it and the seconds from the first byte until the destination had verified the image.</summary>
internal readonly record struct LinkTransfer(ulong Bytes, double Seconds);
