using System;
using System.Collections;
using System.Management.Automation;
using SoftDirty.Emulation;
using SoftDirty.Workflows;

namespace SoftDirty.Commands;

/// <summary>
/// Makes -Workload's hashtable (@{ Address; Length; Pattern; AccessesPerSecond; WriteRatio; Seed }) an
/// EmulatedWorkloadSpec here, in C#. PowerShell's own hashtable-to-object conversion is refused in ConstrainedLanguage
/// mode (a locked-down session, AppLocker or WDAC), where -Workload could then not be given at all. A key the spec
/// lacks, or a value that does not convert, is a parameter-binding error naming it.
/// </summary>
internal sealed class WorkloadSpecAttribute : ArgumentTransformationAttribute
{
    /// <inheritdoc/>
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        if ((inputData is PSObject ps ? ps.BaseObject : inputData) is not IDictionary table) return inputData;
        var d = new EmulatedWorkloadSpec();
        ulong address = d.Address, length = d.Length;
        var pattern = d.Pattern;
        double rate = d.AccessesPerSecond, writeRatio = d.WriteRatio;
        int seed = d.Seed;
        foreach (DictionaryEntry e in table)
        {
            var key = e.Key?.ToString() ?? "";
            try
            {
                switch (key.ToUpperInvariant())
                {
                    case "ADDRESS": address = LanguagePrimitives.ConvertTo<ulong>(e.Value); break;
                    case "LENGTH": length = LanguagePrimitives.ConvertTo<ulong>(e.Value); break;
                    case "PATTERN": pattern = LanguagePrimitives.ConvertTo<WorkloadPattern>(e.Value); break;
                    case "ACCESSESPERSECOND": rate = LanguagePrimitives.ConvertTo<double>(e.Value); break;
                    case "WRITERATIO": writeRatio = LanguagePrimitives.ConvertTo<double>(e.Value); break;
                    case "SEED": seed = LanguagePrimitives.ConvertTo<int>(e.Value); break;
                    default:
                        throw new ArgumentTransformationMetadataException(
                            $"-Workload has no key '{DisplayText.Visible(key)}': it takes Address, Length, Pattern, AccessesPerSecond, WriteRatio and Seed.");
                }
            }
            catch (PSInvalidCastException ex)
            {
                throw new ArgumentTransformationMetadataException($"-Workload's {DisplayText.Visible(key)}: {DisplayText.Visible(ex.Message)}", ex);
            }
        }
        return new EmulatedWorkloadSpec { Address = address, Length = length, Pattern = pattern, AccessesPerSecond = rate, WriteRatio = writeRatio, Seed = seed };
    }
}
