using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>
/// Read-EmulatedMemory: the emulated process reads every page of a byte range (read faults map the zero
/// page into untouched anonymous memory; reads never set soft-dirty). -AsByteArray returns the bytes.
/// </summary>
[Cmdlet(VerbsCommunications.Read, "EmulatedMemory")]
[OutputType(typeof(byte[]))]
public sealed class ReadEmulatedMemoryCommand : EmulatorCmdlet
{
    /// <summary>The most -AsByteArray returns at once.</summary>
    public const ulong MaxByteArray = 64UL << 20;

    /// <summary>The first byte to read.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    /// <summary>The number of bytes from -Address.</summary>
    [Parameter(Position = 1)]
    public ulong Length { get; set; } = 1;

    /// <summary>Return the bytes read (at most 64 MiB) as one byte array.</summary>
    [Parameter]
    public SwitchParameter AsByteArray { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord()
    {
        if (AsByteArray && Length > MaxByteArray)
        {
            WriteError(SoftDirty.EngineError.InvalidArgument, $"-AsByteArray returns at most {MaxByteArray} bytes; read less at a time.", Length);
            return;
        }
        byte[]? bytes = null;
        Call(Describe(Address, Length), "read", () =>
        {
            Emulator.Read(Address, Length);
            if (AsByteArray)
            {
                bytes = new byte[Length];
                Emulator.ReadMemory(Address, bytes);
            }
        });
        if (bytes is not null) WriteObject(bytes, enumerateCollection: false);
    }
}
