using System.Management.Automation;

namespace SoftDirty.Commands;

/// <summary>What Invoke-EmulatedMadvise does to a range.</summary>
public enum EmulatedAdvice
{
    /// <summary>MADV_DONTNEED: drop the pages; they read as soft-dirty only through VM_SOFTDIRTY.</summary>
    DontNeed,
    /// <summary>MADV_PAGEOUT: swap the pages out; private anonymous pages keep soft-dirty in the swap entry.</summary>
    PageOut,
    /// <summary>MADV_WILLNEED: swap the pages back in.</summary>
    WillNeed,
    /// <summary>MADV_COLLAPSE: collapse each 2 MiB into a transparent huge page (the new PMD is soft-dirty).</summary>
    Collapse,
    /// <summary>Split each transparent huge page into 512 PTEs, each inheriting the PMD's soft-dirty (as the kernel does under memory pressure).</summary>
    Split,
    /// <summary>MADV_GUARD_INSTALL: install guard markers (6.15+ profiles).</summary>
    GuardInstall,
    /// <summary>MADV_GUARD_REMOVE: remove guard markers.</summary>
    GuardRemove,
}

/// <summary>Invoke-EmulatedMadvise: madvise-like operations on a range of an emulated process.</summary>
[Cmdlet(VerbsLifecycle.Invoke, "EmulatedMadvise", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
public sealed class InvokeEmulatedMadviseCommand : EmulatorCmdlet
{
    [Parameter(Mandatory = true, Position = 0)]
    public ulong Address { get; set; }

    [Parameter(Mandatory = true, Position = 1)]
    public ulong Length { get; set; }

    [Parameter(Mandatory = true, Position = 2)]
    public EmulatedAdvice Advice { get; set; }

    protected override void ProcessRecord() => Call(Describe(Address, Length), Advice.ToString(), () =>
    {
        switch (Advice)
        {
            case EmulatedAdvice.DontNeed: Emulator.MadviseDontNeed(Address, Length); break;
            case EmulatedAdvice.PageOut: Emulator.SwapOut(Address, Length); break;
            case EmulatedAdvice.WillNeed: Emulator.SwapIn(Address, Length); break;
            case EmulatedAdvice.GuardInstall: Emulator.GuardInstall(Address, Length); break;
            case EmulatedAdvice.GuardRemove: Emulator.GuardRemove(Address, Length); break;
            case EmulatedAdvice.Collapse:
            case EmulatedAdvice.Split:
                const ulong huge = SoftDirty.Emulation.EmulatedProcess.HugePageBytes;
                for (ulong a = Address & ~(huge - 1); a < Address + Length; a += huge)
                    if (Advice == EmulatedAdvice.Collapse) Emulator.CollapseHugePage(a); else Emulator.SplitHugePage(a);
                break;
        }
    });
}
