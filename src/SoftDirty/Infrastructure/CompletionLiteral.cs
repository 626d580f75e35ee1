using System.Globalization;
using System.Management.Automation.Language;
using System.Text;

namespace SoftDirty.Commands;

/// <summary>
/// A name that an argument completer puts on the command line, as a PowerShell string literal that is exactly that
/// name. Names come from whoever owns the file or the process: PowerShell also ends a single-quoted string at the
/// typographic quotes (U+2018-U+201B), so doubling the ASCII quote alone would let a file named a’;code;’ run code
/// when Enter is pressed after Tab. Control characters and bidirectional overrides are written as escapes in a
/// double-quoted string instead (`e, `u{202e}), so the line shown in the terminal is the line that runs.
/// </summary>
internal static class CompletionLiteral
{
    /// <summary>The literal for <paramref name="text"/>: single-quoted, or double-quoted with escapes where it holds hidden characters.</summary>
    public static string Quote(string text)
    {
        bool hidden = false;
        foreach (char c in text) hidden |= DisplayText.Hidden(c);
        if (!hidden) return "'" + CodeGeneration.EscapeSingleQuotedStringContent(text) + "'";
        var sb = new StringBuilder(text.Length + 16).Append('"');
        foreach (char c in text)
        {
            // The backtick, $ and every double quote PowerShell knows (", U+201C-U+201E) are escaped with a backtick.
            if (c is '`' or '$' or '"' or '\u201c' or '\u201d' or '\u201e') sb.Append('`').Append(c);
            else if (DisplayText.Hidden(c)) sb.Append(CultureInfo.InvariantCulture, $"`u{{{(int)c:x}}}");
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }
}
