using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;

namespace SoftDirty;

/// <summary>
/// A read-only list whose string form is its items joined by a separator ("rd wr mr"). Output objects use it for
/// their list properties (VmFlags, Ranges, Problems) so that Export-Csv/ConvertTo-Csv, which write each property's
/// ToString(), carry the items instead of "System.String[]"; indexing, -contains, enumeration and ConvertTo-Json
/// (a JSON array) see an ordinary list.
/// </summary>
public sealed class JoinedList<T> : ReadOnlyCollection<T>
{
    /// <summary>The separator of the string form of a list that names none: a space, as smaps prints VmFlags.</summary>
    public const string DefaultSeparator = " ";

    /// <summary>An empty list.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1000", Justification = "The empty list of each item type, shared by every output object that has none.")]
    public static new JoinedList<T> Empty { get; } = new(Array.Empty<T>());

    /// <summary>A list of <paramref name="items"/> whose string form joins them with <paramref name="separator"/>.</summary>
    public JoinedList(IList<T> items, string separator = DefaultSeparator) : base(items) => Separator = separator;

    /// <summary>What joins the items in the string form.</summary>
    public string Separator { get; }

    /// <summary>The items' string forms joined by <see cref="Separator"/>; empty for an empty list.</summary>
    public override string ToString() => string.Join(Separator, this);

    /// <summary>An array as a list joined by spaces.</summary>
    public static implicit operator JoinedList<T>(T[] items) => new(items);
}
