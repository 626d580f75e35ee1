using System.Globalization;
using System.Management.Automation.Language;
using System.Text;

namespace SoftDirty.Commands;

/// <summary>
/// A name that an argument completer puts on the command line, as a PowerShell string literal that is exactly that
/// name. Names come from whoever owns the file or the process: PowerShell also ends a single-quoted string at the
/// typographic quotes (U+2018-U+201B), so doubling the ASCII quote alone would let a file named a’;code;’ run code
/// when Enter is pressed after Tab. Control, format (bidirectional, zero-width) and separator characters are written as escapes in a
/// double-quoted string instead (`e, `u{202e}), so the line shown in the terminal is the line that runs.
/// </summary>
internal static class CompletionLiteral
{
    /// <summary>The literal for <paramref name="text"/>: single-quoted, or double-quoted with escapes where it holds hidden characters.</summary>
    public static string Quote(string text)
    {
        if (!DisplayText.AnyHidden(text)) return "'" + CodeGeneration.EscapeSingleQuotedStringContent(text) + "'";
        var sb = new StringBuilder(text.Length + 16).Append('"');
        for (int i = 0; i < text.Length;)
        {
            char c = text[i];
            // The backtick, $ and every double quote PowerShell knows (", U+201C-U+201E) are escaped with a backtick;
            // a hidden character as `u{...} of its code point (a tag character, a pair, as one).
            if (DisplayText.Hidden(text, i, out int length))
                sb.Append(CultureInfo.InvariantCulture, $"`u{{{(length == 2 ? char.ConvertToUtf32(c, text[i + 1]) : c):x}}}");
            else if (c is '`' or '$' or '"' or '\u201c' or '\u201d' or '\u201e') sb.Append('`').Append(c);
            else sb.Append(text, i, length);
            i += length;
        }
        return sb.Append('"').ToString();
    }
}
