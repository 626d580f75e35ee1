using System;
using System.Linq;
using SoftDirty;
using SoftDirty.Tracking;
using Xunit;

namespace SoftDirty.Tests;

/// <summary>The forms output objects take outside PowerShell's own serializer (issue 12.8): enums by name, lists joined.</summary>
public class OutputFormTests
{
    [Fact]
    public void EveryPublicEnumCarriesTheStringEnumConverter()
    {
        // Read as attribute data: the engine compiles against Newtonsoft.Json but ships without it (PowerShell has it).
        var missing = typeof(PagemapFlags).Assembly.GetExportedTypes()
            .Where(t => t.IsEnum)
            .Where(t => !t.CustomAttributes.Any(a => a.AttributeType.FullName == "Newtonsoft.Json.JsonConverterAttribute"
                && a.ConstructorArguments.Any(c => (c.Value as Type)?.FullName == "Newtonsoft.Json.Converters.StringEnumConverter")))
            .Select(t => t.FullName).ToArray();
        Assert.Empty(missing);
    }

    [Fact]
    public void AJoinedListPrintsItsItemsJoinedAndStaysAList()
    {
        JoinedList<string> flags = new[] { "rd", "wr", "mr" };
        Assert.Equal("rd wr mr", flags.ToString());
        Assert.Equal(3, flags.Count);
        Assert.Contains("wr", flags);
        Assert.Equal("", JoinedList<string>.Empty.ToString());
        var ranges = new JoinedList<AddressRange>(new[] { new AddressRange(0x1000, 0x3000), new AddressRange(0x8000, 0x9000) }, "; ");
        Assert.Equal($"{ranges[0]}; {ranges[1]}", ranges.ToString());
    }

    [Fact]
    public void MappingsAndRulesPrintJoined()
    {
        var m = new MemoryMapping { VmFlags = new[] { "rd", "wr" } };
        Assert.Equal("rd wr", m.VmFlags.ToString());
        var f = new KernelFeatures { Rules = new[] { new KernelRule("A", "1", "e1"), new KernelRule("B", "2", "e2") } };
        Assert.Equal($"{f.Rules[0]}{KernelFeatures.RuleSeparator}{f.Rules[1]}", f.Rules.ToString());
    }
}
