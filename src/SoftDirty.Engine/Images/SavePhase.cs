using System;

namespace SoftDirty.Images;

/// <summary>A part of a save and the time it took (Save-MemoryImage -Verbose lists them).</summary>
internal readonly record struct SavePhase(string Name, TimeSpan Time)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name} {Time.TotalMilliseconds:N1} ms";
}
