#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 27 (Pages): kernels whose base page is not 4 KiB (arm64 with 16 KiB or 64 KiB pages, ppc64el). Debian's
# arm64-16k 7.2 (tests/vm/pagesize.list), booted under qemu with tests/vm/pagesize.scenario, counts pagemap entries,
# PAGEMAP_SCAN regions and userfaultfd WRITTEN in 16 KiB pages and maps one THP per 32 MiB (a page table's span), none in
# a MADV_HUGEPAGE 2 MiB range even with THP "always" (its prints: tests/vm/recorded/pagesize.7.2-arm64-16k.prints,
# compared everywhere; with SOFTDIRTY_KERNEL_MATRIX it boots again). Found: KernelRules probed THP, the huge zero page and
# the page-table rule of PAGEMAP_SCAN in 2 MiB ranges (ThpOnFault False on that kernel), and the emulator, which models
# 4 KiB pages, stood for such a kernel (New-EmulatedProcess -Kernel Host; the kernel matrix compared its prints). Images of
# 16 KiB and 64 KiB pages (engine-made) restore byte for byte here: xunit ImageRound27PagesTests, PageTableGeometryTests.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:list = Join-Path $PSScriptRoot '../vm/pagesize.list'
    $script:scenarioPath = Join-Path $PSScriptRoot '../vm/pagesize.scenario'
    $script:recordedId = '7.2-arm64-16k'
    $script:recorded = Join-Path $PSScriptRoot "../vm/recorded/pagesize.$recordedId.prints"
}

Describe 'Round 27: kernels whose base page is not 4 KiB' -Tag 'Security', 'Round27Pages' {
    It 'the kernel matrix refuses to compare a 16 KiB kernel with the 4 KiB emulator, naming the page size' {
        # Before the fix GetProfile gave the 7.2 profile for these facts, and the matrix compared 16 KiB prints with it.
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        $kernel = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Load($list) | Where-Object Id -EQ $recordedId
        $facts = [string[]](Get-Content "$($recorded -replace '\.prints$', '.facts')")
        $facts -contains 'page_size 16384' | Should -BeTrue
        $err = { $kernel.GetProfile($false, $facts) } | Should -Throw -PassThru
        $err.Exception.InnerException.Error | Should -Be 'PlatformNotSupported'
        $err.Exception.InnerException.Message | Should -BeLike "*$recordedId*16 KiB*4 KiB*"
    }

    It 'New-EmulatedProcess -Kernel Host stands for this kernel only where its base page is the emulator''s 4 KiB' {
        # Probed, not assumed: this machine's page size decides which answer is right.
        $id = Get-ErrorId { $null = New-EmulatedProcess -Name r27host -Kernel Host }
        if ([Environment]::SystemPageSize -eq 4096) { $id | Should -Be 'none' }
        else { $id | Should -BeLike 'PlatformNotSupported*' }
    }

    It 'booted again (SOFTDIRTY_KERNEL_MATRIX): the 16 KiB kernel prints what was recorded, page for page' -Tag 'KernelMatrix' {
        if (-not $env:SOFTDIRTY_KERNEL_MATRIX) { Set-ItResult -Skipped -Because 'SOFTDIRTY_KERNEL_MATRIX is not set: these boots run with the kernel matrix (build.ps1 KernelTest)'; return }
        # 1 GiB: a guest under 512 MiB boots with THP off.
        $output = Invoke-KernelMatrixBoot $recordedId $scenarioPath @{ KERNELS = $list; MEM = '1G' }
        @(Get-Content "$output.facts") -contains 'page_size 16384' | Should -BeTrue
        [IO.File]::ReadAllText($output) | Should -BeExactly ([IO.File]::ReadAllText($recorded))
    }
}
