using System.Globalization;
using System.Text;

namespace SoftDirty.Commands;

/// <summary>
/// Text of the process or of a file shown by the module's format views. A mapping path, a process name (comm) and an
/// emulated name are chosen by whoever owns the process or the file: control characters in them (ESC starting a
/// terminal sequence that sets the title, erases lines or writes the clipboard; BEL, CR, backspace) and bidirectional
/// overrides would reach the terminal of whoever looks at them. The views show each such character as an escape
/// (\x1b, \u202e); the objects keep the text as the kernel gave it.
/// </summary>
public static class DisplayText
{
    /// <summary>The text with control characters and bidirectional controls written as visible escapes; null stays null.</summary>
    public static string? Visible(string? text)
    {
        if (text is null) return null;
        int i = 0;
        while (i < text.Length && !Hidden(text[i])) i++;
        if (i == text.Length) return text;
        var sb = new StringBuilder(text.Length + 8).Append(text, 0, i);
        for (; i < text.Length; i++)
        {
            char c = text[i];
            if (!Hidden(c)) sb.Append(c);
            else if (c <= '\u00ff') sb.Append(CultureInfo.InvariantCulture, $"\\x{(int)c:x2}");
            else sb.Append(CultureInfo.InvariantCulture, $"\\u{(int)c:x4}");
        }
        return sb.ToString();
    }

    /// <summary>C0 and C1 controls and DEL (Unicode category Cc), and the marks and overrides that reorder text (U+200E, U+200F, U+202A-U+202E, U+2066-U+2069).</summary>
    internal static bool Hidden(char c) =>
        char.IsControl(c) || c is '\u200e' or '\u200f' || (c >= '\u202a' && c <= '\u202e') || (c >= '\u2066' && c <= '\u2069');
}
