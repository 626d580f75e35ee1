using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Refuses a process id with a fraction before PowerShell converts it to an int: its conversion rounds (to even), so
/// -Id 1000.5, or a piped object whose Id is 1000.5 or "1000.5", named process 1000 or 1001, another process than any
/// the caller meant. A whole number of any numeric type, and text that is one, pass on to PowerShell's conversion.
/// </summary>
internal sealed class ProcessIdAttribute : ArgumentTransformationAttribute
{
    /// <inheritdoc/>
    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        var value = inputData is PSObject ps ? ps.BaseObject : inputData;
        if (value is IEnumerable many and not string)
        {
            var each = new List<object?>();
            foreach (var item in many) each.Add(Transform(engineIntrinsics, item));
            return each.ToArray();
        }
        if (Fraction(value) is { } number)
            throw new ArgumentTransformationMetadataException(
                $"{number.ToString(CultureInfo.InvariantCulture)} is not a process id: a process id is a whole number (PowerShell would round this one to {Math.Round(number).ToString(CultureInfo.InvariantCulture)}, another process).");
        return inputData;
    }

    /// <summary>The value as a number where it has a fraction, else null.</summary>
    private static double? Fraction(object? value)
    {
        double number;
        switch (value)
        {
            case double d: number = d; break;
            case float f: number = f; break;
            case decimal m: number = (double)m; if (decimal.Truncate(m) != m) return number; break;
            case string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed): number = parsed; break;
            default: return null;
        }
        return double.IsFinite(number) && Math.Truncate(number) != number ? number : null;
    }
}
