using System;
using System.Globalization;
using System.Text;

namespace SoftDirty;

/// <summary>
/// One line of /proc/PID/mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
/// (proc(5)). The device is written as maps writes it (hex major:minor); the root (the folder of the file system the mount
/// shows) and the mount point have the kernel's octal escapes of space, tab, newline and backslash undone.
/// </summary>
internal sealed record MountInfoLine(ulong Id, uint Major, uint Minor, string Root, string MountPoint, string Type, string SuperOptions)
{
    /// <summary>The device as /proc/PID/maps writes it: hex major:minor, two digits at least each.</summary>
    public string Device => string.Create(CultureInfo.InvariantCulture, $"{Major:x2}:{Minor:x2}");

    /// <summary>The line parsed; null where it is not a mountinfo line.</summary>
    public static MountInfoLine? Parse(string line)
    {
        var fields = line.Split(' ');
        int dash = Array.IndexOf(fields, "-");
        if (dash < 6 || dash + 3 > fields.Length) return null;
        var numbers = fields[2].Split(':');
        if (!ulong.TryParse(fields[0], NumberStyles.None, CultureInfo.InvariantCulture, out ulong id)
            || numbers.Length != 2
            || !uint.TryParse(numbers[0], NumberStyles.None, CultureInfo.InvariantCulture, out uint major)
            || !uint.TryParse(numbers[1], NumberStyles.None, CultureInfo.InvariantCulture, out uint minor))
            return null;
        return new MountInfoLine(id, major, minor,
            Unescape(fields[3]), Unescape(fields[4]), fields[dash + 1], dash + 3 < fields.Length ? fields[dash + 3] : "");
    }

    /// <summary>Whether the super options (comma-separated) name <paramref name="option"/>, as cgroup v1 names its controllers.</summary>
    public bool HasSuperOption(string option) => Array.IndexOf(SuperOptions.Split(','), option) >= 0;

    /// <summary>The text with each backslash and three octal digits (the kernel escapes space, tab, newline and backslash so) undone.</summary>
    private static string Unescape(string text)
    {
        if (!text.Contains('\\', StringComparison.Ordinal)) return text;
        var undone = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == '\\' && i + 3 < text.Length && IsOctal(text[i + 1]) && IsOctal(text[i + 2]) && IsOctal(text[i + 3]))
            {
                undone.Append((char)(((text[i + 1] - '0') << 6) | ((text[i + 2] - '0') << 3) | (text[i + 3] - '0')));
                i += 3;
            }
            else undone.Append(text[i]);
        }
        return undone.ToString();
    }

    private static bool IsOctal(char c) => c is >= '0' and <= '7';
}
