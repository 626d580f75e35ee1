using System;
using System.Globalization;
using System.Text;

namespace SoftDirty.Commands;

/// <summary>
/// Text of the process or of a file shown by the module's format views. A mapping path, a process name (comm) and an
/// emulated name are chosen by whoever owns the process or the file: control characters in them (ESC starting a
/// terminal sequence that sets the title, erases lines or writes the clipboard; BEL, CR, backspace), bidirectional
/// controls and invisible characters would reach the terminal of whoever looks at them. The views show each such
/// character as an escape (\x1b, \u202e, \U000e0041); the objects keep the text as the kernel gave it.
/// </summary>
public static class DisplayText
{
    /// <summary>Whether <paramref name="text"/> holds a hidden character (<see cref="Hidden(string, int, out int)"/>).</summary>
    internal static bool AnyHidden(string text)
    {
        for (int i = 0, length; i < text.Length; i += length)
            if (Hidden(text, i, out length)) return true;
        return false;
    }

    /// <summary>
    /// The most characters of a text shown (64 Ki, far more than a process name, 15 bytes, or a path, 4095 bytes, can
    /// hold): the rest is counted, not shown. An image's manifest (up to 64 MiB) may hold a name of millions of
    /// characters, and PowerShell lays out a list's long value in time that grows with the square of its length:
    /// Format-List of such an image ran for many minutes.
    /// </summary>
    public const int MaxShown = 64 * 1024;

    /// <summary>
    /// The text with hidden characters (<see cref="Hidden(string, int, out int)"/>) written as visible escapes, and
    /// what is past <see cref="MaxShown"/> characters counted instead of shown; null stays null.
    /// </summary>
    public static string? Visible(string? text)
    {
        if (text is null) return null;
        int end = Math.Min(text.Length, MaxShown);
        int i = 0, length = 0;
        while (i < end && !Hidden(text, i, out length)) i += length;
        if (i >= text.Length) return text;
        var sb = new StringBuilder(end + 64).Append(text, 0, i);
        while (i < end)
        {
            bool hidden = Hidden(text, i, out length);
            if (!hidden) sb.Append(text, i, length);
            else if (length == 2) sb.Append(CultureInfo.InvariantCulture, $"\\U{char.ConvertToUtf32(text[i], text[i + 1]):x8}");
            else if (text[i] <= '\u00ff') sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)text[i]:x2}");
            else sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)text[i]:x4}");
            i += length;
        }
        // (A pair across the limit is shown whole: i is where showing stopped.)
        if (i < text.Length) sb.Append(CultureInfo.InvariantCulture, $"\u2026 ({text.Length - i} more characters)");
        return sb.ToString();
    }

    /// <summary>
    /// Whether the character at <paramref name="index"/> (<paramref name="length"/>: 2 for a surrogate pair, else 1) is
    /// one a terminal does not draw as itself: C0 and C1 controls and DEL (Unicode category Cc); format characters
    /// (Cf), which hold every bidirectional control (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069: round 11
    /// left out U+061C, the Arabic letter mark) and the invisible ones (zero-width space and joiners, U+2060-U+2064,
    /// U+FEFF, the tag characters U+E0000-U+E007F that spell hidden text); line and paragraph separators (U+2028,
    /// U+2029); and a surrogate that is not half of a pair.
    /// </summary>
    internal static bool Hidden(string text, int index, out int length)
    {
        char c = text[index];
        length = char.IsHighSurrogate(c) && index + 1 < text.Length && char.IsLowSurrogate(text[index + 1]) ? 2 : 1;
        return CharUnicodeInfo.GetUnicodeCategory(text, index) is UnicodeCategory.Control or UnicodeCategory.Format
            or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator or UnicodeCategory.Surrogate;
    }
}
