using System.Management.Automation;
using SoftDirty;
using SoftDirty.Emulation;

namespace SoftDirty.Commands;

/// <summary>New-EmulatedProcess: an emulated process with no mappings, on a chosen kernel profile.</summary>
[Cmdlet(VerbsCommon.New, "EmulatedProcess")]
[OutputType(typeof(EmulatedProcess))]
public sealed class NewEmulatedProcessCommand : EngineCmdlet
{
    /// <summary>The process name (comm).</summary>
    [Parameter(Position = 0)]
    public string Name { get; set; } = "emulated";

    /// <summary>
    /// The kernel whose rules apply: 6.1 (no PAGEMAP_SCAN), 6.12 (PAGEMAP_SCAN, no guard regions), 6.18
    /// (PAGEMAP_SCAN, guard regions), 6.19 and 7.2 (sticky VM_SOFTDIRTY on merge), 7.3 (WRITTEN only in uffd-wp
    /// VMAs), or Host: the running kernel's release profile plus its measured rules (zero
    /// page, THP mode, soft-dirty...; Linux only).
    /// </summary>
    [Parameter]
    [ValidateSet(KernelProfile.Linux61, KernelProfile.Linux612, KernelProfile.Linux618, KernelProfile.Linux619, KernelProfile.Linux72, KernelProfile.Linux73, KernelProfile.HostName)]
    public string Kernel { get; set; } = KernelProfile.DefaultName;

    /// <summary>A kernel built without CONFIG_MEM_SOFT_DIRTY: clear_refs "4" succeeds, bit 55 is never set.</summary>
    [Parameter]
    public SwitchParameter NoSoftDirty { get; set; }

    /// <summary>Read pagemap as root (CAP_SYS_ADMIN): PFNs and swap offsets visible.</summary>
    [Parameter]
    public SwitchParameter Privileged { get; set; }

    /// <summary>
    /// The THP mode (/sys/kernel/mm/transparent_hugepage/enabled) to emulate instead of the profile's: a release
    /// profile assumes Madvise, Host the running kernel's.
    /// </summary>
    [Parameter]
    public TransparentHugePageMode? TransparentHugePages { get; set; }

    /// <summary>/sys/kernel/mm/transparent_hugepage/use_zero_page = 0: a THP read fault allocates a THP, not the huge zero page.</summary>
    [Parameter]
    public SwitchParameter NoHugeZeroPage { get; set; }

    /// <inheritdoc/>
    protected override void EndProcessing()
    {
        try
        {
            var profile = KernelProfile.Get(Kernel, NoSoftDirty)
                .WithThpSettings(TransparentHugePages, NoHugeZeroPage ? false : null);
            WriteObject(new EmulatedProcess(Name, profile, Privileged));
        }
        catch (EngineException ex) { ThrowTerminatingError(ToErrorRecord(ex)); }
    }
}
