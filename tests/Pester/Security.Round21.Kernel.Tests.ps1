#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-first attack round, on kernels and settings this machine does not have: the emulator against
# Debian's 6.1, 6.12, 7.2 and 7.3 booted with transparent_hugepage=always, =madvise, =never and use_zero_page=0
# (tests/vm/matrix.sh SOFTDIRTY_MATRIX_APPEND, _SETTINGS, _MEM=1G), and against the 6.18 host with MADV_HUGEPAGE.
# No scenario had reached a THP before (windows of 4 to 16 pages), and the matrix guests (512 MiB) boot with THP off
# while their profiles said madvise. tests/scenarios/regression-thp.scenario (two 2 MiB ranges, "huge" = MADV_HUGEPAGE)
# found five rules the emulator had wrong (each a KernelProfile rule or a fix now), and the emulator could not be told
# a THP mode other than the host's (New-EmulatedProcess -TransparentHugePages, -NoHugeZeroPage now).
# The kernels' prints are kept folded in tests/vm/recorded, so the comparison runs everywhere; with
# SOFTDIRTY_KERNEL_MATRIX set the kernels boot again and are compared fresh.

BeforeDiscovery {
    $script:recorded = Get-ChildItem (Join-Path $PSScriptRoot '../vm/recorded') -Filter 'regression-thp.*.prints' |
        ForEach-Object { @{ File = $_.Name; Path = $_.FullName } }
    $script:kernels = Get-Content (Join-Path $PSScriptRoot '../vm/kernels.list') | Where-Object { $_ -notmatch '^\s*(#|$)' } |
        ForEach-Object { , ($_ -split '\s+') } | ForEach-Object { $_[0] }
    $script:boots = foreach ($k in $kernels) {
        @{ Id = $k; Setting = 'always'; Append = 'transparent_hugepage=always'; Sysfs = '' }
        @{ Id = $k; Setting = 'always without the huge zero page'; Append = 'transparent_hugepage=always'; Sysfs = '/sys/kernel/mm/transparent_hugepage/use_zero_page=0' }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    Add-Type -Path $env:SOFTDIRTY_TESTKIT
    $script:thpScenarios = [SoftDirty.TestKit.Scenarios.Scenario]::Parse([IO.File]::ReadAllText((Join-Path $PSScriptRoot '../scenarios/regression-thp.scenario')))
    $script:listPath = Join-Path $PSScriptRoot '../vm/kernels.list'
    # The profile a recording names in its "# profile", "# soft_dirty" and "# setting thp/..." header lines.
    function Get-RecordedProfile([string[]] $lines) {
        $name = ($lines -match '^# profile ') -replace '^# profile ', ''
        $softDirty = ($lines -match '^# soft_dirty ') -replace '^# soft_dirty ', ''
        $kp = [SoftDirty.Emulation.KernelProfile]::Get($name, $softDirty -ne '1')
        $kernel = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Parse("x amd64 sid $name x=1")
        # The THP settings as the matrix reads them back from a guest (the same parser).
        $thp = $kernel.GetProfile($true, [string[]] @($lines -match '^# setting ' -replace '^# ', ''))
        $kp.WithThpSettings($thp.TransparentHugePages, $thp.HugeZeroPage)
    }
}

Describe 'The emulator can be told the THP settings of the kernel it stands for' -Tag 'Security', 'Round21Kernel' {
    It 'New-EmulatedProcess -TransparentHugePages <Mode> -NoHugeZeroPage:<NoZero> puts them in its rules' -ForEach @(
        @{ Mode = 'Always'; NoZero = $true }, @{ Mode = 'Never'; NoZero = $false }, @{ Mode = 'Madvise'; NoZero = $true }
    ) {
        $e = New-EmulatedProcess -Kernel 7.3 -TransparentHugePages $Mode -NoHugeZeroPage:$NoZero
        $rules = @{}
        foreach ($r in ($e | Get-SoftDirtySupport).Rules) { $rules[$r.Name] = $r.Value }
        $rules['TransparentHugePages'] | Should -Be $Mode
        $rules['HugeZeroPage'] | Should -Be "$(-not $NoZero)"
        $rules['PagemapHugeZeroIsFile'] | Should -Be 'False'
        # Without the parameters a release profile keeps madvise and the huge zero page.
        $plain = @{}
        foreach ($r in (New-EmulatedProcess -Kernel 7.3 | Get-SoftDirtySupport).Rules) { $plain[$r.Name] = $r.Value }
        $plain['TransparentHugePages'] | Should -Be 'Madvise'
        $plain['HugeZeroPage'] | Should -Be 'True'
    }

    It 'refuses a THP mode that does not exist at binding' {
        { New-EmulatedProcess -TransparentHugePages 'sometimes' } | Should -Throw -ErrorId 'CannotConvertArgumentNoMessage,SoftDirty.Commands.NewEmulatedProcessCommand'
    }

    It 'reads a guest''s THP mode and huge zero page back from the matrix facts, keeping the profile''s where none is reported' {
        $kernel = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Load($listPath) | Where-Object Id -EQ '7.3'
        $p = $kernel.GetProfile($true, [string[]] @('kernel 7.3.4+deb13-amd64 x86_64', 'setting thp/enabled always madvise [never]', 'setting thp/use_zero_page 0'))
        $p.TransparentHugePages | Should -Be 'Never'
        $p.HugeZeroPage | Should -BeFalse
        $p.Name | Should -Be '7.3'
        $q = $kernel.GetProfile($true, [string[]] @('setting thp/enabled [always] madvise never'))
        $q.TransparentHugePages | Should -Be 'Always'
        $q.HugeZeroPage | Should -BeTrue
        $kernel.GetProfile($true, [string[]] @()).TransparentHugePages | Should -Be 'Madvise'
    }

    It 'folds and unfolds recorded prints exactly' {
        $print = [SoftDirty.TestKit.Scenarios.EmulatedScenarioRunner]::new([SoftDirty.Emulation.KernelProfile]::Get('7.3').WithThpSettings('Always', $null)).Run($thpScenarios)
        $whole = -join $print
        $folded = [SoftDirty.TestKit.Scenarios.ScenarioPrintRuns]::Fold($whole)
        $folded.Length | Should -BeLessThan ($whole.Length / 20)
        [SoftDirty.TestKit.Scenarios.ScenarioPrintRuns]::Expand("# a comment`n$folded") | Should -BeExactly $whole
    }
}

Describe 'The emulator against recorded THP prints: <File>' -ForEach $recorded -Tag 'Security', 'Round21Kernel', 'Differential' {
    # Failed before round 21 on every recording with a THP in it: a write after a read mapped 4 KiB pages (6.18, 7.2, 7.3
    # map a THP), the huge zero page was FILE on 7.3, a uffd-wp THP lost write-protection on all 512 pages, 6.1's split
    # PTEs were soft-dirty after a clear, and a forked THP's exclusive bit went page by page (the head page decides).
    It 'prints what the kernel printed, page for page, on the profile and THP settings it names' {
        $lines = Get-Content $Path
        $kp = Get-RecordedProfile $lines
        $kernelPrints = [SoftDirty.TestKit.Scenarios.ScenarioPrintRuns]::Expand([IO.File]::ReadAllText($Path))
        $recordedRunner = [SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::FromOutput($File, $kernelPrints)
        $recordedRunner.Count | Should -Be $thpScenarios.Count
        $result = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Compare($recordedRunner, $kp, $thpScenarios)
        $because = if ($result.FirstMismatch) { "$File differs from profile $kp (THP $($kp.TransparentHugePages), huge zero page $($kp.HugeZeroPage)) in $($result.DifferingNames -join ', '):`n$($result.FirstMismatch.SideBySide)" } else { '' }
        $result.Matched | Should -BeTrue -Because $because
        $result.Checkpoints | Should -BeGreaterThan $thpScenarios.Count
    }
}

Describe 'The kernel <Id> booted with THP <Setting>' -ForEach $boots -Tag 'Security', 'Round21Kernel', 'KernelMatrix', 'Differential' {
    BeforeAll {
        $boot = [bool]$env:SOFTDIRTY_KERNEL_MATRIX
        if ($boot) {
            $dir = Join-Path $PSScriptRoot '../results/kernel-matrix'
            $null = New-Item -ItemType Directory $dir -Force
            $kernel = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Load($listPath) | Where-Object Id -EQ $Id
            # Every hand-written scenario (regression-thp included) and 100 random ones of the seed.
            $seed = if ($env:SOFTDIRTY_SCENARIO_SEED) { [int]$env:SOFTDIRTY_SCENARIO_SEED } else { 20261126 }
            $scenarios = $kernel.Scenarios((Join-Path $PSScriptRoot '../scenarios'), $seed, 100, 0)
            $tag = $Setting -replace '\W+', '-'
            $inputPath = Join-Path $dir "$Id.thp-$tag.scenario"
            $output = Join-Path $dir "$Id.thp-$tag.prints"
            [IO.File]::WriteAllText($inputPath, (-join ($scenarios | ForEach-Object ToText)))
            # 1 GiB: under 512 MiB the kernel boots with THP off whatever the command line says. khugepaged may collapse
            # a range while a scenario runs (max_ptes_none 511 collapses one written page), which no emulator can
            # foresee: max_ptes_none 0 keeps it off the scenarios' sparse ranges, and a scan sleep of 49 days (the
            # write wakes it for one pass before sdscenario starts) off the ranges every page of which is present.
            $env:SOFTDIRTY_MATRIX_MEM = '1G'
            $env:SOFTDIRTY_MATRIX_APPEND = $Append
            $env:SOFTDIRTY_MATRIX_SETTINGS = "$Sysfs /sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none=0 /sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs=4294967295".Trim()
            try { bash (Join-Path $PSScriptRoot '../vm/matrix.sh') $Id $inputPath $output | Write-Host; $bootExit = $LASTEXITCODE }
            finally { Remove-Item Env:SOFTDIRTY_MATRIX_MEM, Env:SOFTDIRTY_MATRIX_APPEND, Env:SOFTDIRTY_MATRIX_SETTINGS -ErrorAction SilentlyContinue }
            [string[]] $factLines = if (Test-Path "$output.facts") { Get-Content "$output.facts" } else { @() }
        }
    }

    It 'runs every scenario in the guest with the setting in force, and matches the emulator told the same setting' {
        if (-not $boot) { Set-ItResult -Skipped -Because 'SOFTDIRTY_KERNEL_MATRIX is not set: these boots run with the kernel matrix (build.ps1 KernelTest)'; return }
        $bootExit | Should -Be 0
        $factLines | Should -Contain 'setting thp/enabled [always] madvise never'
        if ($Sysfs) { $factLines | Should -Contain 'setting thp/use_zero_page 0' }
        $softDirty = $factLines -contains 'config_soft_dirty 1'
        $kp = $kernel.GetProfile($softDirty, $factLines)
        $kp.TransparentHugePages | Should -Be 'Always'
        $recordedRunner = [SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::FromOutput($Id, [IO.File]::ReadAllText($output))
        $result = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Compare($recordedRunner, $kp, $scenarios)
        Write-Host "round21 THP $Setting on $Id`: $($result.Scenarios) scenarios, $($result.Checkpoints) checkpoints, $($result.Differing) differ"
        $result.Matched | Should -BeTrue -Because $kernel.DescribeResult($result, "$Id THP $Setting", $softDirty, $seed)
    }
}
