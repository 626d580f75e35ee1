using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>Invoke-EmulatedMadvise: madvise-like operations on a range of an emulated process.</summary>
[Cmdlet(VerbsLifecycle.Invoke, "EmulatedMadvise", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
public sealed class InvokeEmulatedMadviseCommand : EmulatorCmdlet
{
    /// <summary>The start of the range (page-aligned).</summary>
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    /// <summary>The length in bytes, rounded up to pages.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    public ulong Length { get; set; }

    /// <summary>What to do to the range.</summary>
    [Parameter(Mandatory = true, Position = 2)]
    public EmulatedAdvice Advice { get; set; }

    /// <inheritdoc/>
    protected override void ProcessRecord() => Call(Describe(Address, Length), Advice.ToString(), () =>
    {
        switch (Advice)
        {
            case EmulatedAdvice.DontNeed: Emulator.MadviseDontNeed(Address, Length); break;
            case EmulatedAdvice.PageOut: Emulator.SwapOut(Address, Length); break;
            case EmulatedAdvice.Free: Emulator.MadviseFree(Address, Length); break;
            case EmulatedAdvice.WillNeed: Emulator.SwapIn(Address, Length); break;
            case EmulatedAdvice.GuardInstall: Emulator.GuardInstall(Address, Length); break;
            case EmulatedAdvice.GuardRemove: Emulator.GuardRemove(Address, Length); break;
            case EmulatedAdvice.HugePage: Emulator.MadviseHugePage(Address, Length, huge: true); break;
            case EmulatedAdvice.NoHugePage: Emulator.MadviseHugePage(Address, Length, huge: false); break;
            case EmulatedAdvice.WipeOnFork: Emulator.MadviseWipeOnFork(Address, Length, wipe: true); break;
            case EmulatedAdvice.KeepOnFork: Emulator.MadviseWipeOnFork(Address, Length, wipe: false); break;
            case EmulatedAdvice.DontFork: Emulator.MadviseDontFork(Address, Length, dontFork: true); break;
            case EmulatedAdvice.DoFork: Emulator.MadviseDontFork(Address, Length, dontFork: false); break;
            case EmulatedAdvice.Seal: Emulator.Mseal(Address, Length); break;
            case EmulatedAdvice.Collapse:
            case EmulatedAdvice.Split:
                const ulong huge = SoftDirty.Emulation.EmulatedProcess.HugePageBytes;
                for (ulong a = Address & ~(huge - 1); a < Address + Length; a += huge)
                    if (Advice == EmulatedAdvice.Collapse) Emulator.CollapseHugePage(a); else Emulator.SplitHugePage(a);
                break;
        }
    });
}
