#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# The emulator against every kernel of tests/vm/kernels.list (Debian 6.1 to 7.3, amd64 and arm64): each
# kernel boots under qemu (tests/vm/matrix.sh) with sdscenario alone in an initramfs, runs every
# hand-written scenario of tests/scenarios and 500 seeded random ones generated here, and its prints,
# recorded from the serial console, must equal the emulator's on the kernel's profile, line for line.
# The boots run where SOFTDIRTY_KERNEL_MATRIX is set (build.ps1 KernelTest sets it: five boots take
# minutes); elsewhere those tests skip with that reason and only the list and the harness are tested.

BeforeDiscovery {
    $script:kernels = Get-Content (Join-Path $PSScriptRoot '../vm/kernels.list') |
        Where-Object { $_ -notmatch '^\s*(#|$)' } | ForEach-Object { @{ Id = ($_ -split '\s+')[0] } }
    # SOFTDIRTY_KERNEL_MATRIX_KERNELS (comma-separated ids) boots only those, e.g. while a profile is made.
    if ($env:SOFTDIRTY_KERNEL_MATRIX_KERNELS) {
        $only = $env:SOFTDIRTY_KERNEL_MATRIX_KERNELS -split ','
        $script:kernels = @($kernels | Where-Object { $_.Id -in $only })
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:listPath = Join-Path $PSScriptRoot '../vm/kernels.list'
    $script:scenarioDir = Join-Path $PSScriptRoot '../scenarios'
    # The scenario harness: the test kit beside the staged module (tests/Invoke-PesterSuite.ps1 names it).
    Add-Type -Path $env:SOFTDIRTY_TESTKIT
    $script:seed = if ($env:SOFTDIRTY_SCENARIO_SEED) { [int]$env:SOFTDIRTY_SCENARIO_SEED } else { 20261126 }
    $script:randomCount = 500
    # Workloads of the side-by-side of the tracking methods (TrackingComparison), on kernels with both.
    $script:workloadCount = 250
    $script:boot = [bool]$env:SOFTDIRTY_KERNEL_MATRIX
    # One line per kernel (id, release, profile, scenarios, checkpoints, differences, seconds), for the report.
    $script:summary = Join-Path $PSScriptRoot '../results/kernel-matrix/summary.txt'
    if ($boot) { Remove-Item $summary, (Join-Path (Split-Path $summary) 'methods.txt') -ErrorAction SilentlyContinue }
    $script:skipReason = 'SOFTDIRTY_KERNEL_MATRIX is not set: the matrix boots every kernel of tests/vm/kernels.list under qemu (build.ps1 KernelTest sets it)'
}

Describe 'The kernel matrix harness' -Tag 'KernelMatrix', 'Differential' {
    It 'pins every kernel of kernels.list to exact package versions and a known emulator profile' {
        $list = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Load($listPath)
        $list.Count | Should -BeGreaterOrEqual 5
        $list.Architecture | Sort-Object -Unique | Should -Be @('amd64', 'arm64')
        foreach ($k in $list) { $k.Packages | Should -Match '^[a-z0-9][a-z0-9.+-]*=[0-9][^=\s]*$' }
        ($list.Id | Sort-Object -Unique).Count | Should -Be $list.Count
    }

    It 'refuses a kernel line with an unpinned package or an unknown profile' {
        { [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Parse('x amd64 sid 6.19 linux-image-amd64') } | Should -Throw '*not pinned*'
        { [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Parse('x amd64 sid 9.9 linux-image-amd64=1') } | Should -Throw '*no kernel profile*'
    }

    It 'plays recorded prints back by scenario name and refuses a scenario that never ran' {
        $scenarios = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Random(7, 3, $false, $true)
        $emulator = [SoftDirty.TestKit.Scenarios.EmulatedScenarioRunner]::new([SoftDirty.Emulation.KernelProfile]::Get('6.19'))
        $prints = $emulator.Run($scenarios)
        $recorded = [SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::FromOutput('test', ($prints[2], $prints[0], $prints[1] -join ''))
        $recorded.Count | Should -Be 3
        $recorded.Run($scenarios) | Should -Be $prints
        $other = [SoftDirty.TestKit.Scenarios.ScenarioDifferential]::Random(8, 4, $false, $false)[3]
        $other = [SoftDirty.TestKit.Scenarios.Scenario]::new('never-ran', $other.Ops)
        { $recorded.Run([SoftDirty.TestKit.Scenarios.Scenario[]] @($other)) } | Should -Throw '*no recorded print of scenario*never-ran*'
    }

    It 'names the kernel, the profile, the seed, the scenario and both prints when a print differs' {
        $kernel = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Parse('7.2 amd64 sid 6.19 linux-binary-7.2.13+deb14-amd64=7.2.13-1')
        $scenarios = [SoftDirty.TestKit.Scenarios.Scenario]::Parse("scenario one`nreserve 2`nmap 0 2 rw anon`nwrite 1 1`ncheck`nend`n")
        $print = [SoftDirty.TestKit.Scenarios.EmulatedScenarioRunner]::new($kernel.GetProfile($true)).Run($scenarios)[0]
        $print | Should -Match '(?m)^1 [0-9a-f]{16}$'
        $altered = $print -replace '(?m)^1 ([0-9a-f]{16})$', '1 0000000000000000'
        $result = $kernel.Compare([SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::new('7.2', [string[]] @($altered)), $true, $scenarios)
        $result.Differing | Should -Be 1
        $message = $kernel.DescribeResult($result, '7.2.13+deb14-amd64', $true, 42)
        $message | Should -Match 'kernel 7\.2 \(7\.2\.13\+deb14-amd64, amd64, sid\)'
        $message | Should -Match 'profile 6\.19'
        $message | Should -Match 'seed 42'
        $message | Should -Match '(?m)^scenario one$'
        $message | Should -Match '(?m)^! 1 0000000000000000 +1 [0-9a-f]{16}$'
        # Matching prints pass and say so.
        $kernel.Compare([SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::new('7.2', [string[]] @($print)), $true, $scenarios).Matched | Should -BeTrue
    }
}

Describe 'The tracking-method side by side' -Tag 'KernelMatrix', 'Differential' {
    It 'counts false positives and negatives of each method against the pages really written' {
        # Pages 0-3: soft-dirty says 0,1,2; WRITTEN in registered VMAs says 1 (page 3 unregistered); written: 1, 3.
        $print = "scenario w0`ncheck 9 self`n0 8080000000000000`n1 8180000000000000`n2 0080000000000000`n3 8100000000000000`n" +
            "scan 10 self`n0 1 89`n1 2 8b`n2 3 81`n3 4 a`ntruth 11 self`n1 2`n3 4`nend`n"
        $c = [SoftDirty.TestKit.Scenarios.TrackingComparison]::Count([string[]] @($print))
        $c.Workloads | Should -Be 1
        $c.Written | Should -Be 2
        $c.SoftDirtyReported | Should -Be 3
        $c.SoftDirtyFalsePositives | Should -Be 2
        $c.SoftDirtyFalseNegatives | Should -Be 1
        $c.WriteProtectReported | Should -Be 1
        $c.WriteProtectFalsePositives | Should -Be 0
        $c.WriteProtectFalseNegatives | Should -Be 0
        $c.UnregisteredWritten | Should -Be 1
    }

    It 'prints the same truth record on the emulator as the runner keeps it: writes that did not fault, moved by mremap' {
        $s = [SoftDirty.TestKit.Scenarios.Scenario]::Parse("scenario t`nreserve 6`nmap 0 4 rw anon`nwrite 0 2`nclear 4`nwrite 1 2`nmremap 1 2 3`nwrite 5 1`ntruth`nend`n")
        $print = [SoftDirty.TestKit.Scenarios.EmulatedScenarioRunner]::new([SoftDirty.Emulation.KernelProfile]::Get('7.2')).Run($s)[0]
        $print | Should -Be "scenario t`nop 7 SEGV`ntruth 8 self`n3 5`nend`n"
    }
}

Describe 'The kernel matrix: <Id>' -ForEach $kernels -Tag 'KernelMatrix', 'Differential' {
    BeforeAll {
        $kernel = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Load($listPath) | Where-Object Id -EQ $Id
        if ($boot) {
            $dir = Join-Path $PSScriptRoot '../results/kernel-matrix'
            $null = New-Item -ItemType Directory $dir -Force
            $scenarios = $kernel.Scenarios($scenarioDir, $seed, $randomCount, $workloadCount)
            $inputPath = Join-Path $dir "$Id.scenario"
            $output = Join-Path $dir "$Id.prints"
            [IO.File]::WriteAllText($inputPath, (-join ($scenarios | ForEach-Object ToText)))
            bash (Join-Path $PSScriptRoot '../vm/matrix.sh') $Id $inputPath $output | Write-Host
            $bootExit = $LASTEXITCODE
            $facts = @{}
            [string[]] $factLines = @()
            if (Test-Path "$output.facts") {
                $factLines = Get-Content "$output.facts"
                $factLines | ForEach-Object { $key, $value = $_ -split ' ', 2; $facts[$key] = $value }
            }
        }
    }

    It 'boots with sdscenario and prints every scenario' {
        if (-not $boot) { Set-ItResult -Skipped -Because $skipReason; return }
        $bootExit | Should -Be 0 -Because "tests/vm/matrix.sh $Id must run sdscenario to its end in the guest"
        $facts.guest_rc | Should -Be '0'
        $recorded = [SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::FromOutput($Id, [IO.File]::ReadAllText($output))
        $recorded.Count | Should -Be $scenarios.Count
    }

    It 'prints what the emulator prints on its profile, for every hand-written and random scenario' {
        if (-not $boot) { Set-ItResult -Skipped -Because $skipReason; return }
        $recorded = [SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::FromOutput($Id, [IO.File]::ReadAllText($output))
        $softDirty = $facts.config_soft_dirty -eq '1'
        # The profile with the guest's THP mode and huge zero page as it reported them (512 MiB: THP off).
        $profileObject = $kernel.GetProfile($softDirty, $factLines)
        $result = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Compare($recorded, $profileObject, $scenarios)
        $line = '{0,-10} {1,-24} profile {2,-24} {3,4} scenarios {4,6} checkpoints {5,3} differ {6,4} s' -f $Id, $facts.kernel, "$($kernel.GetProfile($softDirty)) THP $($profileObject.TransparentHugePages)", $result.Scenarios, $result.Checkpoints, $result.Differing, $facts.seconds
        Write-Host "kernel-matrix: $line"
        Add-Content $summary $line
        $result.Matched | Should -BeTrue -Because $kernel.DescribeResult($result, $facts.kernel, $softDirty, $seed)
        $result.Scenarios | Should -BeGreaterOrEqual ($randomCount + 20)
        $result.Checkpoints | Should -BeGreaterThan $result.Scenarios
    }

    It 'shows soft-dirty and userfaultfd write-protect side by side, with no page written and missed' {
        if (-not $boot) { Set-ItResult -Skipped -Because $skipReason; return }
        $softDirty = $facts.config_soft_dirty -eq '1'
        $profileObject = $kernel.GetProfile($softDirty, $factLines)
        if (-not ($softDirty -and $kernel.HasWriteTracking -and $profileObject.HasGuardRegions)) {
            Set-ItResult -Skipped -Because "kernel $Id lacks soft-dirty, PAGEMAP_SCAN with WP_ASYNC, or PAGE_IS_GUARD (the workloads' scan asks for every category, 6.15+)"
            return
        }
        [SoftDirty.TestKit.Scenarios.Scenario[]] $workloads = @($scenarios | Where-Object { $_.Name -like "$([SoftDirty.TestKit.Scenarios.TrackingComparison]::NamePrefix)*" -and $_.Ops[-1].Kind -eq 'Truth' })
        $workloads.Count | Should -Be $workloadCount
        $recorded = [SoftDirty.TestKit.Scenarios.RecordedScenarioRunner]::FromOutput($Id, [IO.File]::ReadAllText($output))
        $real = [SoftDirty.TestKit.Scenarios.TrackingComparison]::Count($recorded.Run($workloads))
        $emulated = [SoftDirty.TestKit.Scenarios.TrackingComparison]::Count([SoftDirty.TestKit.Scenarios.EmulatedScenarioRunner]::new($profileObject).Run($workloads))
        Write-Host "kernel-matrix methods: $Id $real"
        Add-Content (Join-Path (Split-Path $summary) 'methods.txt') "$Id $($facts.kernel): $real"
        $real.Written | Should -BeGreaterThan 0
        $real.SoftDirtyFalseNegatives | Should -Be 0 -Because 'soft-dirty must report every page written since the clear'
        $real.WriteProtectFalseNegatives | Should -Be 0 -Because 'userfaultfd write-protect must report every page written in a registered VMA'
        $emulated | Should -Be $real -Because 'the emulator reproduces the counts'
    }
}
