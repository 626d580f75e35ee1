#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The emulator diffed against the running kernel: every hand-written scenario of tests/scenarios and 500
# seeded random ones run on real memory (tests/native/bin/sdscenario) and on the emulator profile that
# matches this kernel; every checkpoint's pagemap entries (all flag bits, not the PFN) must be equal.
# Tagged Kernel: in the kernel VM (build.ps1 KernelTest, Debian 6.1 with soft-dirty) it compares against
# a real soft-dirty kernel; on the host against the host kernel (no soft-dirty, with PAGEMAP_SCAN and
# uffd-wp, which the random scenarios then exercise too).

BeforeDiscovery {
    $script:onLinux = $IsLinux
}

Describe 'The emulator against this kernel' -Tag 'Kernel', 'Differential' -Skip:(-not $onLinux) {
    BeforeAll {
        Import-Module $env:SOFTDIRTY_MODULE -Force
        $support = Get-SoftDirtySupport
        $program = Join-Path $PSScriptRoot '../native/bin/sdscenario'
        # The emulated kernel whose rules match this one.
        $release = [version](($support.KernelRelease -split '[^0-9.]')[0] -replace '^(\d+\.\d+).*', '$1')
        $profile = if ($release -lt [version]'6.7') { '6.1' } elseif ($release -lt [version]'6.19') { '6.18' } else { '6.19' }
        $seed = if ($env:SOFTDIRTY_SCENARIO_SEED) { [int]$env:SOFTDIRTY_SCENARIO_SEED } else { 20261126 }
        $tracking = $support.PagemapScan -and $support.UffdWriteProtectAsync
        function Assert-Matched($result, [string] $what) {
            $because = if ($result.FirstMismatch) { "$what differ (seed $seed, SOFTDIRTY_SCENARIO_SEED=$seed; $($result.Differing) of $($result.Scenarios) scenarios):`n$($result.FirstMismatch)" } else { '' }
            $result.Matched | Should -BeTrue -Because $because
        }
    }

    It 'has the native scenario runner (build.ps1 Native)' {
        Test-Path $program | Should -BeTrue
    }

    It 'matches on every hand-written scenario (kernel selftests, PAGEMAP_SCAN, regressions)' {
        $scenarios = [SoftDirty.Scenarios.ScenarioDifferential]::Load((Join-Path $PSScriptRoot '../scenarios'))
        $scenarios.Count | Should -BeGreaterThan 20
        $result = [SoftDirty.Scenarios.ScenarioDifferential]::Compare($program, $profile, $support.SoftDirty, $scenarios)
        Write-Host "hand-written: $($result.Scenarios) scenarios, $($result.Checkpoints) checkpoints against kernel $($support.KernelRelease) (profile $profile, soft-dirty $($support.SoftDirty))"
        Assert-Matched $result 'hand-written scenarios'
        $result.Checkpoints | Should -BeGreaterThan $result.Scenarios
    }

    It 'matches on 500 random scenarios of the seed' {
        $scenarios = [SoftDirty.Scenarios.ScenarioDifferential]::Random($seed, 500, $false, $tracking)
        $result = [SoftDirty.Scenarios.ScenarioDifferential]::Compare($program, $profile, $support.SoftDirty, $scenarios)
        Write-Host "random: seed $seed, $($result.Scenarios) scenarios, $($result.Checkpoints) checkpoints, write tracking $tracking, kernel prints not reproducible: $($result.UnstableNames.Count)"
        $result.UnstableNames.Count | Should -BeLessOrEqual 125
        Assert-Matched $result 'random scenarios'
        $result.Scenarios | Should -Be 500
    }

    It 'sees soft-dirty bits set by writes in the kernel VM (so the comparison covers bit 55 there)' -Skip:(-not $env:SOFTDIRTY_KERNEL_VM) {
        $s = [SoftDirty.Scenarios.Scenario]::Parse("scenario sd`nreserve 2`nmap 0 2 rw anon`nclear 4`nwrite 1 1`ncheck`nend`n")
        $print = ([SoftDirty.Scenarios.NativeScenarioRunner]::new($program)).Run($s)[0]
        $print | Should -Match '(?m)^1 8[0-9a-f]*$'
        ($print -split "`n" | Where-Object { $_ -match '^1 ' }) | Should -Match '^1 (81|83|85|87|8d|8f|8b|89)' -Because 'page 1 was written after the clear: bit 55 set'
    }
}
