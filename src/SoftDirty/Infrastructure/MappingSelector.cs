using System;
using System.Linq;
using System.Management.Automation;
using SoftDirty;

namespace SoftDirty.Commands;

/// <summary>
/// Matches mappings by -Mapping names: a wildcard on the path or pseudo-name, or on the file name alone.
/// A name that equals a mapping's name matches literally, so '[heap]' works although [] is a wildcard class.
/// A name written as the kernel writes its pseudo-names (one bracketed word, no wildcard inside: '[heap]', '[stack]',
/// '[anon:x]') is only that pseudo-name: as a pattern '[heap]' is one of h, e, a, p, and as a file name alone it is a
/// file named '[heap]', so it matched the mapping of any file so named, and a target's owner could add a file of its
/// choice to a selection of the heap or the stack.
/// </summary>
internal sealed class MappingSelector
{
    private readonly string[] _names;
    private readonly WildcardPattern?[] _patterns;

    public MappingSelector(string[] names)
    {
        _names = names;
        _patterns = names.Select(n => IsPseudoName(n) ? null : Compile(n)).ToArray();
    }

    // A name that is no valid wildcard pattern ('[vvar*': an unclosed bracket) is taken literally.
    private static WildcardPattern Compile(string name)
    {
        const WildcardOptions options = WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant;
        var pattern = WildcardPattern.Get(name, options);
        try { pattern.IsMatch(string.Empty); }
        catch (WildcardPatternException) { pattern = WildcardPattern.Get(WildcardPattern.Escape(name), options); }
        return pattern;
    }

    /// <summary>'[heap]', '[stack:42]', '[anon:x y]': brackets around text with no bracket, '*' or '?' in it.</summary>
    internal static bool IsPseudoName(string name) =>
        name.Length > 2 && name[0] == '[' && name[^1] == ']' && name.AsSpan(1, name.Length - 2).IndexOfAny("[]*?") < 0;

    public bool IsMatch(MemoryMapping m)
    {
        var display = m.DisplayName;
        var file = m.Path.Length != 0 && m.Path[0] == '/' ? System.IO.Path.GetFileName(m.Path) : null;
        foreach (var n in _names)
            if (string.Equals(n, display, StringComparison.OrdinalIgnoreCase) || (file is not null && !IsPseudoName(n) && string.Equals(n, file, StringComparison.OrdinalIgnoreCase)))
                return true;
        foreach (var p in _patterns)
            if (p is not null && (p.IsMatch(display) || (file is not null && p.IsMatch(file))))
                return true;
        return false;
    }
}
