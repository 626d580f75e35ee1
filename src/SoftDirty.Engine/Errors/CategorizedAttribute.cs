using System;
using System.Collections.Generic;
using System.Reflection;

namespace SoftDirty;

/// <summary>The <see cref="FailureCategory"/> of one <see cref="EngineError"/> member: every member carries one.</summary>
[AttributeUsage(AttributeTargets.Field, AllowMultiple = false)]
internal sealed class CategorizedAttribute : Attribute
{
    private static readonly Dictionary<EngineError, FailureCategory> Categories = ReadCategories();

    /// <summary>Marks an error with its category.</summary>
    public CategorizedAttribute(FailureCategory category) => Category = category;

    /// <summary>The category of the error this attribute marks.</summary>
    public FailureCategory Category { get; }

    /// <summary>The category of <paramref name="error"/>; NotSpecified for a value that is no member.</summary>
    public static FailureCategory Of(EngineError error) =>
        Categories.TryGetValue(error, out var category) ? category : FailureCategory.NotSpecified;

    /// <summary>The members that lack the attribute (none: an xunit test walks the enum).</summary>
    internal static IEnumerable<EngineError> Uncategorized()
    {
        foreach (var error in Enum.GetValues<EngineError>())
            if (!Categories.ContainsKey(error)) yield return error;
    }

    private static Dictionary<EngineError, FailureCategory> ReadCategories()
    {
        var map = new Dictionary<EngineError, FailureCategory>();
        foreach (var field in typeof(EngineError).GetFields(BindingFlags.Public | BindingFlags.Static))
            if (field.GetCustomAttribute<CategorizedAttribute>() is { } attribute)
                map[(EngineError)field.GetValue(null)!] = attribute.Category;
        return map;
    }
}
