# Guards of the kernel VM run (tests/vm, build.ps1 KernelTest). The Kernel-tagged tests skip their
# soft-dirty cases on a kernel without soft-dirty, so if soft-dirty ever stopped working in the VM they
# would all skip and the run would still pass. Inside the VM (SOFTDIRTY_KERNEL_VM=1) these tests make
# that a failure, and check that the VM really is Debian's 6.1 kernel. Elsewhere they skip.
Describe 'The kernel VM' -Tag 'Kernel' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $support = Get-SoftDirtySupport -Refresh
    }

    It 'reports soft-dirty supported (in the kernel VM)' -Skip:(-not $env:SOFTDIRTY_KERNEL_VM) {
        $support.SoftDirty | Should -BeTrue -Because $support.SoftDirtyReason
        $support.SoftDirtyReason | Should -BeNullOrEmpty
    }

    It 'runs the 6.1 kernel, which has no PAGEMAP_SCAN (in the kernel VM)' -Skip:(-not $env:SOFTDIRTY_KERNEL_VM) {
        $support.KernelRelease | Should -BeLike '6.1.*'
        $support.PagemapScan | Should -BeFalse
        $support.PagemapScanReason | Should -Not -BeNullOrEmpty
    }
}
