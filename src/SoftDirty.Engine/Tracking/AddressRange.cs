using System;

namespace SoftDirty.Tracking;

/// <summary>An address range [Start, End).</summary>
public readonly record struct AddressRange(ulong Start, ulong End)
{
    /// <summary>Bytes in the range (named Size, as on PageRange and MemoryMapping: an array's own Length would hide a Length property from $ranges.Size member enumeration).</summary>
    public ulong Size => End - Start;
    /// <summary>Size, for engine code written before the rename; internal so PowerShell never sees it.</summary>
    internal ulong Length => Size;
    /// <inheritdoc/>
    public override string ToString() => $"0x{Start:x}-0x{End:x}";

    /// <summary>Reads the string form ToString writes ("0x1000-0x3000"), as a range comes back from a job or a remote session.</summary>
    public static bool TryParse(string? text, out AddressRange range)
    {
        range = default;
        var parts = text?.Trim().Split('-');
        if (parts is not { Length: 2 }) return false;
        static bool Hex(string s, out ulong v)
        {
            v = 0;
            return s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
                && ulong.TryParse(s.AsSpan(2), System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture, out v);
        }
        if (!Hex(parts[0], out var start) || !Hex(parts[1], out var end) || end < start) return false;
        range = new AddressRange(start, end);
        return true;
    }
}
