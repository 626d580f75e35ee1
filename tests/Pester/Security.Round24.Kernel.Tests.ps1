#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-fourth attack round, on the kernel's own page moves, which the process never asks for: KSM merging and
# unmerging, the folio split of a THP. Measured in the kernel VM (tests/vm/matrix.sh, Debian 6.1, 6.12, 7.2, 7.3 with KSM
# running: tests/scenarios/vm/ksm-thp.scenario, prints kept in tests/vm/recorded):
# - KSM maps a merged page with a new page-table entry that has no soft-dirty bit (mm/ksm.c replace_page): every page of
#   a group but the one merged in place reads clean, though written since the clear. While the KSM page is mapped more
#   than once pagemap shows it not exclusive, which an increment reads by content; once the other page is written (copy
#   on write) the page reads exclusive and clean, and on 6.12+ MADV_UNMERGEABLE leaves it so as well. An increment kept
#   the parent's bytes there (silent data loss); a soft-dirty watch or migration missed the write likewise. Now memory
#   KSM may merge is compared by content (KsmMergeable), recorded in the manifest for the next increment.
# - The folio split of a THP maps its zero-filled pages to the zero page (6.12+) keeping their soft-dirty bit (measured),
#   and the zero page is not exclusive anyway: no loss there.
# - The userfaultfd write-protect bit is dropped by a merge too, which reads as written: an over-count, never a miss.

BeforeDiscovery {
    $script:inVm = [bool]$env:SOFTDIRTY_KERNEL_VM
    # "<scenario file>.<kernel id>.prints" of tests/scenarios/vm (round 24).
    $script:recorded = Get-ChildItem (Join-Path $PSScriptRoot '../vm/recorded') -Filter '*.prints' | Where-Object Name -Match '^(ksm-thp|migrate)\.' |
        ForEach-Object { $name, $id = ($_.Name -replace '\.prints$', '') -split '\.', 2; @{ File = $_.Name; Path = $_.FullName; Scenario = $name; Id = $id } }
    $k = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-SoftDirtySupport } else { $null }
    $run = '/sys/kernel/mm/ksm/run'
    $script:KsmSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not $k.SoftDirty) { "no soft-dirty in this kernel ($($k.SoftDirtyReason)): the kernel VM runs this (tag Kernel)" }
    elseif (-not (Test-Path $run)) { 'no KSM here (/sys/kernel/mm/ksm/run is missing: CONFIG_KSM)' }
    elseif (-not (Test-Path /proc/self/ksm_merging_pages)) { 'this kernel does not count merged pages per process (/proc/PID/ksm_merging_pages)' }
    elseif ((Get-Content $run).Trim() -ne '1' -and -not ($inVm -and (id -u) -eq '0')) { "KSM is off here (/sys/kernel/mm/ksm/run $((Get-Content $run).Trim())); only the kernel VM's root starts it (its own kernel's setting)" }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state24k'
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r24k') -Force
    $script:ps = [Environment]::SystemPageSize
    $script:MadvMergeable = 12; $script:MadvUnmergeable = 13
    # A file of $Pages pages, every byte $Value: read(2) into a region, it makes its pages identical.
    function New-FillFile([int] $Pages, [byte] $Value) {
        $path = Join-Path $root "fill-$Value-$Pages.bin"
        $bytes = [byte[]]::new($Pages * $ps); [Array]::Fill($bytes, $Value)
        [IO.File]::WriteAllBytes($path, $bytes)
        $path
    }
    # The soft-dirty bit (55) of each page of the region, from pagemap.
    function Get-SoftDirtyBits([int] $Id, [uint64] $Address, [int] $Pages) {
        $f = [IO.File]::Open("/proc/$Id/pagemap", 'Open', 'Read', 'ReadWrite')
        try {
            $buf = [byte[]]::new(8 * $Pages); $f.Position = [int64]($Address / [uint64]$ps) * 8; $f.ReadExactly($buf, 0, $buf.Length)
            @(for ($i = 0; $i -lt $Pages; $i++) { ([BitConverter]::ToUInt64($buf, 8 * $i) -shr 55) -band 1 })
        } finally { $f.Dispose() }
    }
    function Wait-Merged([int] $Id, [int] $Pages) {
        $deadline = [DateTime]::UtcNow.AddSeconds(240) # a hang guard only
        while ([int](Get-Content "/proc/$Id/ksm_merging_pages") -lt $Pages) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "KSM merged $(Get-Content "/proc/$Id/ksm_merging_pages") of $Pages pages of process $Id" }
            Start-Sleep -Milliseconds 50
        }
    }
}

Describe 'Round 24: a page written after the clear and merged by KSM, then its partner written' -Tag 'Security', 'Round24Kernel', 'Kernel' -Skip:([bool]$KsmSkip) {
    BeforeAll {
        # The guest's own kernel setting (the VM's root), put back after this block; never the host's.
        $script:ksmFile = '/sys/kernel/mm/ksm/run'
        $script:ksmWas = (Get-Content $ksmFile).Trim()
        if ($ksmWas -ne '1') { Set-Content -Path $ksmFile -Value 1 }
        $script:old = New-FillFile 4 0x5A
        $script:new = New-FillFile 2 0x77
    }
    AfterAll { if ($ksmWas -and $ksmWas -ne '1') { Set-Content -Path $ksmFile -Value $ksmWas } }

    # Pages 0 and 1 get the same new bytes after the parent's clear; KSM merges them (page 1 in place, page 0 mapped to it
    # anew: not soft-dirty); page 1 is written (copy on write), leaving page 0 the KSM page's only mapping: exclusive and
    # clean in pagemap. Before round 24 the increment kept page 0's old bytes (0x5A where the process has 0x77).
    It 'a <Case>: the increment restores what a full image of the same moment restores, and the live bytes' -ForEach @(
        @{ Case = 'SoftDirty increment' }, @{ Case = 'SoftDirty increment of a region made unmergeable after the merge' }
    ) {
        $t = Start-TestTarget -Path $wtExe
        $dir = New-Item -ItemType Directory (Join-Path $root "c-$([guid]::NewGuid().ToString('n'))")
        try {
            $hex = Send-TestTarget $t 'map 4'
            $region = [pscustomobject]@{ Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Pages = 4 }
            $null = Send-TestTarget $t "readinto $hex 0 4 $old"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method SoftDirty
            $null = Send-TestTarget $t "readinto $hex 0 2 $new"
            $null = Send-TestTarget $t "madvise $hex 0 4 $MadvMergeable"
            Wait-Merged $t.Id 4
            $bits = Get-SoftDirtyBits $t.Id $region.Address 4
            if ($bits[0] -ne 0) { Set-ItResult -Skipped -Because "KSM merged page 0 in place here (soft-dirty bits $($bits -join ',')): the kernel kept its bit"; return }
            $null = Send-TestTarget $t "write $hex 1 1"
            if ($Case -like '*unmergeable*') { $null = Send-TestTarget $t "madvise $hex 0 4 $MadvUnmergeable" }
            $after = Get-SoftDirtyBits $t.Id $region.Address 4
            if ($after[0] -ne 0) { Set-ItResult -Skipped -Because "this kernel set page 0's bit again (soft-dirty bits $($after -join ',')): 6.1's unmerge is a write fault"; return }
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/1" -Parent "$dir/0" -Method SoftDirty
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method Hash
            Test-MemoryImage -Path "$dir/1" | Should -BeTrue
            Compare-RestoredImage "$dir/1" "$dir/full" $root | Should -BeNullOrEmpty -Because 'the increment must hold page 0, written after the clear and merged by KSM'
            Get-RestoredRegionWords "$dir/1" $region $ps $root | Should -Be (Get-LiveRegionWords $t.Id $region $ps)
        } finally { Stop-TestTarget $t }
    }

    # The same moves within sample 2's interval: before round 24 sample 2 lacked page 0 (its bit dropped by the merge).
    It 'sample 2 holds page 0, written in its interval and merged by KSM' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $hex = Send-TestTarget $t 'map 4'
            $address = [Convert]::ToUInt64($hex, 16)
            $null = Send-TestTarget $t "readinto $hex 0 4 $old"
            $state = @{ Done = $false; Bits = $null }
            $samples = @(Watch-DirtyPage -Id $t.Id -Method SoftDirty -Count 2 -Interval 1 | ForEach-Object {
                    if (-not $state.Done) {
                        $state.Done = $true
                        $null = Send-TestTarget $t "readinto $hex 0 2 $new"
                        $null = Send-TestTarget $t "madvise $hex 0 4 $MadvMergeable"
                        Wait-Merged $t.Id 4
                        $null = Send-TestTarget $t "write $hex 1 1"
                        $state.Bits = Get-SoftDirtyBits $t.Id $address 4
                    }
                    $_
                })
            if ($state.Bits[0] -ne 0) { Set-ItResult -Skipped -Because "KSM merged page 0 in place here (soft-dirty bits $($state.Bits -join ',')): the kernel kept its bit"; return }
            $page0 = @($samples[1].Ranges | Where-Object { [uint64]$_.Start -le $address -and [uint64]$_.End -gt $address })
            $page0.Count | Should -Be 1 -Because 'page 0 was written (read(2) into it) in sample 2''s interval; the merge dropped its soft-dirty bit'
        } finally { Stop-TestTarget $t }
    }
}

# The emulator's KSM, folio-split and migration rules (EmulatedProcess.KsmScan, MadviseMergeable, SplitHugePages,
# MigratePages; KernelProfile KsmUnmergeWrites, SplitMapsZeroSubpages, MigrationCarriesDirty) against the kernels' prints of
# tests/scenarios/vm (ksm-thp: KSM running; migrate: move_pages between two NUMA nodes), recorded in the VM (folded, in
# tests/vm/recorded): compared everywhere; with SOFTDIRTY_KERNEL_MATRIX the kernels boot again. The emulator had no KSM,
# unmerge, folio split or migration before round 24 (these scenarios could not run on it).
Describe 'Round 24: the emulator against the kernels'' prints of <File>' -ForEach $recorded -Tag 'Security', 'Round24Kernel', 'Differential' {
    BeforeAll {
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        $script:scenarioPath = Join-Path $PSScriptRoot "../scenarios/vm/$Scenario.scenario"
        $script:count = [SoftDirty.TestKit.Scenarios.Scenario]::Parse([IO.File]::ReadAllText($scenarioPath)).Count
        $script:kernel = [SoftDirty.TestKit.Scenarios.KernelMatrixKernel]::Load((Join-Path $PSScriptRoot '../vm/kernels.list')) | Where-Object Id -EQ $Id
        # The boot of each: 1 GiB (a THP; under 512 MiB the guest boots with THP off), khugepaged off the scenarios' ranges
        # (round 21); ksm-thp with ksmd scanning every millisecond without smart scan's skipping (6.7+; the write fails on
        # 6.1, which lacks it), migrate with two NUMA nodes.
        $script:settings = '/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none=0 /sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs=4294967295'
        if ($Scenario -eq 'ksm-thp') { $settings = "/sys/kernel/mm/ksm/run=1 /sys/kernel/mm/ksm/sleep_millisecs=1 /sys/kernel/mm/ksm/pages_to_scan=5000 /sys/kernel/mm/ksm/smart_scan=0 $settings" }
    }

    It 'prints what the kernel printed, page for page, on the profile and THP settings it names' {
        $result = Compare-RecordedKernelPrints $Id $scenarioPath $Path
        $result.Scenarios | Should -Be $count
        $result.Matched | Should -BeTrue -Because $(if ($result.FirstMismatch) { "$File differs in $($result.DifferingNames -join ', '):`n$($result.FirstMismatch.SideBySide)" })
    }

    It 'booted again (SOFTDIRTY_KERNEL_MATRIX), prints what the emulator prints' -Tag 'KernelMatrix' {
        if (-not $env:SOFTDIRTY_KERNEL_MATRIX) { Set-ItResult -Skipped -Because 'SOFTDIRTY_KERNEL_MATRIX is not set: these boots run with the kernel matrix (build.ps1 KernelTest)'; return }
        $boot = @{ MEM = '1G'; APPEND = 'transparent_hugepage=always'; SETTINGS = $settings }
        if ($Scenario -eq 'migrate') { $boot.NUMA = '2' }
        $output = Invoke-KernelMatrixBoot $Id $scenarioPath $boot
        $facts = @(Get-Content "$output.facts")
        $result = Compare-KernelScenarioPrints $Id $scenarioPath $Id ([IO.File]::ReadAllText($output)) $facts
        Write-Host "round24 $Scenario on $Id`: $($result.Scenarios) scenarios, $($result.Checkpoints) checkpoints, $($result.Differing) differ"
        $result.Matched | Should -BeTrue -Because $kernel.DescribeResult($result, "$Id $Scenario", ($facts -contains 'config_soft_dirty 1'), 0)
    }
}
