using System.Management.Automation;
using System.Management.Automation.Runspaces;
using SoftDirty.Tracking;

namespace SoftDirty.Commands;

/// <summary>
/// How SoftDirty's objects cross a process boundary (Start-Job, remoting, Export-Clixml): an address range travels as
/// its string form, "0x7f0000000000-0x7f0000004000", at any depth, so a sample's Ranges read the same from a job, a
/// remote session or a Clixml file, and Export-DirtyPageChart parses them back. The other output types carry numbers,
/// strings and flags at the default depth; their format views also select the Deserialized.* twin
/// (module/SoftDirty.format.ps1xml). JSON and CSV need no type data: the engine's enums carry Newtonsoft's
/// StringEnumConverter and list properties are JoinedList&lt;T&gt;, whose string form (what Export-Csv writes) joins the items.
/// <para>
/// The type data is set on every import, in the importing runspace, and replaces what is there (Update-TypeData -Force),
/// rather than read from a types.ps1xml: PowerShell adds a types file's members without replacing them, so importing a
/// second copy of the module (another version or install path) with Import-Module -Force failed with
/// FormatXmlUpdateException ("The member SerializationMethod is already present"). The setting stays after Remove-Module,
/// as the module's assemblies do (.NET cannot unload them), and means the same.
/// </para>
/// </summary>
public sealed class ModuleTypeData : IModuleAssemblyInitializer
{
    /// <summary>The PSStandardMembers serialization method that writes an object as its string form.</summary>
    private const string StringSerialization = "String";

    /// <summary>Sets the module's type data in the runspace that imports it.</summary>
    public void OnImport()
    {
        var range = new TypeData(typeof(AddressRange)) { SerializationMethod = StringSerialization };
        using var shell = PowerShell.Create(RunspaceMode.CurrentRunspace);
        shell.AddCommand(@"Microsoft.PowerShell.Utility\Update-TypeData").AddParameter("TypeData", range).AddParameter("Force", true).Invoke();
    }
}
