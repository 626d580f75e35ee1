#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The emulator diffed against the running kernel: every hand-written scenario of tests/scenarios and
# 2,500 seeded random ones (5 seeds, each batch a fresh start of tests/native/bin/sdscenario; in the
# kernel VM one seed, 500) run on real memory and on the emulator's Host profile: the release profile at
# or below this kernel's version plus every rule measured here (zero page, huge zero page, THP mode, WRITTEN without a page table,
# soft-dirty, PAGEMAP_SCAN, uffd-wp; Get-SoftDirtySupport's Rules). Every checkpoint's pagemap entries
# (all flag bits, not the PFN) and scan regions must be equal: no difference is allowed. Tagged Kernel: in
# the kernel VM (build.ps1 KernelTest, Debian 6.1 with soft-dirty and a zero page) the same test measures
# that kernel. A failure prints the shrunk scenario, both prints and the emulator's rules.

BeforeDiscovery {
    $script:onLinux = $IsLinux
    # 5 seeds of 500 on the host (~50 s); in the kernel VM, whose CPU is emulated (TCG), one seed as before.
    $script:seeds = if ($env:SOFTDIRTY_KERNEL_VM) { @(0) } else { 0..4 }
}

Describe 'The emulator against this kernel' -Tag 'Kernel', 'Differential' -Skip:(-not $onLinux) {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $support = Get-SoftDirtySupport
        $program = Join-Path $PSScriptRoot '../native/bin/sdscenario'
        # The scenario harness: the test kit beside the staged module (tests/Invoke-PesterSuite.ps1 names it).
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        $hostProfile = [SoftDirty.Emulation.KernelProfile]::Get('Host')
        $seed = if ($env:SOFTDIRTY_SCENARIO_SEED) { [int]$env:SOFTDIRTY_SCENARIO_SEED } else { 20261126 }
        $tracking = $support.PagemapScan -and $support.UffdWriteProtectAsync
        function Assert-Matched($result, [string] $what) {
            $because = if ($result.FirstMismatch) { "$what differ ($($result.Differing) of $($result.Scenarios) scenarios):`n$($result.FirstMismatch)" } else { '' }
            $result.Matched | Should -BeTrue -Because $because
        }
    }

    It 'has the native scenario runner (build.ps1 Native)' {
        Test-Path $program | Should -BeTrue
    }

    It 'builds the Host profile from the measured rules' {
        $rules = @{}
        foreach ($r in $support.Rules) { $rules[$r.Name] = $r.Value }
        $hostProfile.HostRelease | Should -Be $support.KernelRelease
        $hostProfile.SoftDirtyEnabled | Should -Be $support.SoftDirty
        "$($hostProfile.SharedZeroPage)" | Should -Be $rules['SharedZeroPage']
        "$($hostProfile.ScanWrittenWithoutPageTable)" | Should -Be $rules['ScanWrittenWithoutPageTable']
        Write-Host ($hostProfile.DescribeRules())
    }

    It 'matches on every hand-written scenario (kernel selftests, PAGEMAP_SCAN, page tables, regressions)' {
        $scenarios = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Load((Join-Path $PSScriptRoot '../scenarios'))
        $scenarios.Count | Should -BeGreaterThan 20
        $result = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::CompareHost($program, $scenarios)
        Write-Host "hand-written: $($result.Scenarios) scenarios, $($result.Checkpoints) checkpoints against kernel $($support.KernelRelease) ($($hostProfile.Release))"
        Assert-Matched $result 'hand-written scenarios'
        $result.Checkpoints | Should -BeGreaterThan $result.Scenarios
    }

    It 'matches on <perSeed> random scenarios of seed <Offset> after the base seed' -ForEach @($seeds | ForEach-Object { @{ Offset = $_; perSeed = 500 } }) {
        $s = $seed + $Offset
        $scenarios = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Random($s, $perSeed, $false, $tracking)
        $result = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::CompareHost($program, $scenarios)
        Write-Host "random: seed $s (SOFTDIRTY_SCENARIO_SEED=$seed), $($result.Scenarios) scenarios, $($result.Checkpoints) checkpoints, write tracking $tracking"
        Assert-Matched $result "random scenarios of seed $s"
        $result.Scenarios | Should -Be $perSeed
    }

    It 'sees soft-dirty bits set by writes in the kernel VM (so the comparison covers bit 55 there)' -Skip:(-not $env:SOFTDIRTY_KERNEL_VM) {
        $s = [SoftDirty.TestKit.Scenarios.Scenario]::Parse("scenario sd`nreserve 2`nmap 0 2 rw anon`nclear 4`nwrite 1 1`ncheck`nend`n")
        $print = ([SoftDirty.TestKit.Scenarios.NativeScenarioRunner]::new($program)).Run($s)[0]
        $print | Should -Match '(?m)^1 8[0-9a-f]*$'
        ($print -split "`n" | Where-Object { $_ -match '^1 ' }) | Should -Match '^1 (81|83|85|87|8d|8f|8b|89)' -Because 'page 1 was written after the clear: bit 55 set'
    }
}
