# Issue 13, twenty-fifth attack round, on real swap under real soft-dirty: MADV_PAGEOUT to a swap device, swap-in by read
# and by write, the clear of an increment while pages are out, shared memory reclaimed (its soft-dirty bit goes with the PTE),
# a watch and a migration across swap-outs. The host has no soft-dirty and no swap: the kernel VM runs the module cases
# (tag Kernel: its root makes a zram swap, tests/vm/setup.sh loads the module), and the kernels' prints of
# tests/scenarios/vm/swap.scenario (tests/vm/matrix.sh with SOFTDIRTY_MATRIX_SWAP, a zram swap in each guest) are
# recorded in tests/vm/recorded and compared with the emulator everywhere.

BeforeDiscovery {
    $script:recorded = Get-ChildItem (Join-Path $PSScriptRoot '../vm/recorded') -Filter 'swap.*.prints' |
        ForEach-Object { $name, $id = ($_.Name -replace '\.prints$', '') -split '\.', 2; @{ File = $_.Name; Path = $_.FullName; Scenario = $name; Id = $id } }
    $k = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-SoftDirtySupport } else { $null }
    $areas = if ($IsLinux) { @(Get-Content /proc/swaps | Select-Object -Skip 1 | Where-Object { $_.Trim() }) } else { @() }
    $script:SwapSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not $k.SoftDirty) { "no soft-dirty in this kernel ($($k.SoftDirtyReason)): the kernel VM runs this (tag Kernel)" }
    elseif ($areas.Count -eq 0 -and -not ($env:SOFTDIRTY_KERNEL_VM -and (id -u) -eq '0' -and (Test-Path /sys/block/zram0/disksize))) {
        '/proc/swaps lists no swap area here (MADV_PAGEOUT leaves anonymous pages present); the kernel VM''s root makes a zram swap'
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r25s') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state25s'
    $script:PageSize = [Environment]::SystemPageSize
    function New-Dest([string] $Name = 'd') { Join-Path $root "$Name-$([guid]::NewGuid().ToString('n'))" }
    function New-Region([string] $Hex, [int] $Pages) { [pscustomobject]@{ Address = [Convert]::ToUInt64($Hex, 16); Pages = $Pages; Hex = $Hex } }
    # Per page of $Region: 'S' swapped, 'P' present, '-' neither; lower case where soft-dirty is clear (pagemap bits 62, 63, 55).
    function Get-PageState([int] $Id, $Region) {
        $f = [IO.File]::Open("/proc/$Id/pagemap", 'Open', 'Read', 'ReadWrite')
        try {
            $buf = [byte[]]::new(8 * $Region.Pages); $f.Position = [int64]($Region.Address / [uint64]$PageSize) * 8; $f.ReadExactly($buf, 0, $buf.Length)
            -join @(for ($i = 0; $i -lt $Region.Pages; $i++) {
                    $e = [BitConverter]::ToUInt64($buf, 8 * $i)
                    $c = if (($e -shr 63) -band 1) { 'P' } elseif (($e -shr 62) -band 1) { 'S' } else { '-' }
                    if ((($e -shr 55) -band 1) -eq 0) { $c.ToLowerInvariant() } else { $c }
                })
        } finally { $f.Dispose() }
    }
    # MADV_PAGEOUT of $Count pages at $Index; throws unless they all went to swap (the cases mean nothing otherwise).
    function Invoke-PageOut($Target, $Region, [int] $Index, [int] $Count) {
        $null = Send-ImgTarget $Target "pageout $($Region.Hex) $Index $Count"
        $state = Get-PageState $Target.Id $Region
        if ($state.Substring($Index, $Count) -cmatch '[^Ss]') { throw "MADV_PAGEOUT left pages $Index..$($Index + $Count - 1) of 0x$($Region.Hex) out of swap: $state" }
        $state
    }
    # The pages of $Ranges (address ranges) inside $Region, by index.
    function Get-IndexIn($Ranges, $Region) {
        $end = $Region.Address + [uint64]$Region.Pages * $PageSize
        @(foreach ($r in $Ranges) {
                for ($a = [Math]::Max([uint64]$r.Start, $Region.Address); $a -lt [Math]::Min([uint64]$r.End, $end); $a += [uint64]$PageSize) { [int](($a - $Region.Address) / [uint64]$PageSize) }
            })
    }
    # Increment $N of the chain in $Dir (parent N-1, SoftDirty) restores what a full image (Hash) of the same moment restores,
    # and the region's live bytes.
    function Assert-IncrementExact($Target, $Region, [string] $Dir, [int] $N, [string] $Why) {
        $null = Save-MemoryImage -Id $Target.Id -Path "$Dir/$N" -Parent "$Dir/$($N - 1)" -Method SoftDirty
        $null = Save-MemoryImage -Id $Target.Id -Path "$Dir/full" -Method Hash
        Test-MemoryImage -Path "$Dir/$N" | Should -BeTrue
        Compare-RestoredImage "$Dir/$N" "$Dir/full" $root | Should -BeNullOrEmpty -Because $Why
        Get-RestoredRegionWords "$Dir/$N" $Region $PageSize $root | Should -Be @(Get-LiveRegionWords $Target.Id $Region $PageSize)
    }
    $script:madeSwap = $false
    if (-not $SwapSkip -and @(Get-Content /proc/swaps | Select-Object -Skip 1 | Where-Object { $_.Trim() }).Count -eq 0) {
        # The kernel VM's own zram device (its kernel, its memory): 128 MiB of swap, undone in AfterAll.
        Set-Content /sys/block/zram0/disksize 128M
        mkswap /dev/zram0 | Out-Null
        swapon /dev/zram0
        if ($LASTEXITCODE -ne 0) { throw 'swapon /dev/zram0 failed' }
        $script:madeSwap = $true
    }
}

AfterAll {
    if ($madeSwap) { swapoff /dev/zram0 }
}

Describe 'Round 25: SoftDirty increments, watches and migrations across real swap' -Tag 'Security', 'Round25Swap', 'Kernel' -Skip:([bool]$SwapSkip) {
    BeforeEach { $script:t = Start-ImgTarget }
    AfterEach { Stop-ImgTarget $t }

    It 'pages written before MADV_PAGEOUT, one swapped in by a write and one by a read: the increment restores what a full image restores' {
        $region = New-Region (Send-ImgTarget $t 'map 8') 8
        $null = Send-ImgTarget $t "fill $($region.Hex) 8 3"
        $dir = New-Dest 'c'
        $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method SoftDirty
        $null = Send-ImgTarget $t "write $($region.Hex) 0 2"
        Invoke-PageOut $t $region 0 8 | Should -BeExactly 'SSssssss' -Because 'the swap entries keep the soft-dirty bits of pages 0 and 1'
        $null = Send-ImgTarget $t "write $($region.Hex) 3 1"
        $null = Send-ImgTarget $t "touch $($region.Hex) 5 1"
        Get-PageState $t.Id $region | Should -BeExactly 'SSsPspss' -Because 'the swap-in by write sets the bit, the one by read keeps the entry''s'
        Assert-IncrementExact $t $region $dir 1 'pages 0, 1 and 3 were written; 0 and 1 are swapped out'
    }

    It 'the clear of an increment taken while the pages are out, then writes that swap them in: the next increment holds them' {
        $region = New-Region (Send-ImgTarget $t 'map 8') 8
        $null = Send-ImgTarget $t "fill $($region.Hex) 8 4"
        $dir = New-Dest 'c'
        $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method SoftDirty
        $null = Send-ImgTarget $t "write $($region.Hex) 6 1"
        $null = Invoke-PageOut $t $region 0 8
        $null = Save-MemoryImage -Id $t.Id -Path "$dir/1" -Parent "$dir/0" -Method SoftDirty
        $state = Get-PageState $t.Id $region
        $state | Should -MatchExactly '^[sp]{8}$' -Because 'the increment''s clear reached the swap entries (it read page 6, swapping it in)'
        ($state -creplace '[^s]', '').Length | Should -BeGreaterOrEqual 7
        $null = Send-ImgTarget $t "write $($region.Hex) 1 2"
        $null = Send-ImgTarget $t "touch $($region.Hex) 4 1"
        Assert-IncrementExact $t $region $dir 2 'pages 1 and 2 were written while swapped out, after a clear that found them there'
    }

    It 'pages of a memfd written and then reclaimed to swap (their soft-dirty bits gone with the PTEs): the increment holds them' {
        $r = (Send-ImgTarget $t 'shm 8') -split ' '
        $region = New-Region $r[0] 8
        $null = Send-ImgTarget $t "fill $($region.Hex) 8 5"
        $dir = New-Dest 'c'
        $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method SoftDirty
        $null = Send-ImgTarget $t "write $($region.Hex) 2 3"
        $null = Send-ImgTarget $t "pageout $($region.Hex) 0 8"
        $state = Get-PageState $t.Id $region
        if ($state -cmatch '[PS]') { throw "MADV_PAGEOUT kept pages of the memfd mapped or soft-dirty: $state" }
        Assert-IncrementExact $t $region $dir 1 'pages 2-4 were written, then reclaimed: only their content says so'
    }

    It 'Watch-DirtyPage -Method SoftDirty: sample 2 counts exactly the pages written in its interval, paged out after or swapped in by the write' {
        $region = New-Region (Send-ImgTarget $t 'map 8') 8
        $null = Send-ImgTarget $t "fill $($region.Hex) 8 6"
        $null = Invoke-PageOut $t $region 4 4
        $samples = @(Watch-DirtyPage -Id $t.Id -Method SoftDirty -Interval 0.2 -Count 3 -WarningAction SilentlyContinue | ForEach-Object {
                if ($_.Index -eq 1) {
                    $null = Send-ImgTarget $t "write $($region.Hex) 0 2"
                    $null = Invoke-PageOut $t $region 0 4
                    $null = Send-ImgTarget $t "write $($region.Hex) 5 1"
                    $null = Send-ImgTarget $t "touch $($region.Hex) 6 1"
                }
                $_
            })
        $samples | Should -HaveCount 3
        Get-IndexIn $samples[0].Ranges $region | Should -BeNullOrEmpty
        Get-IndexIn $samples[1].Ranges $region | Should -Be @(0, 1, 5) -Because 'pages 0 and 1 were written and then swapped out, page 5 swapped in by its write'
        Get-IndexIn $samples[2].Ranges $region | Should -BeNullOrEmpty
    }

    It 'Invoke-PreCopyMigration -Method SoftDirty: pages written and swapped out during the live rounds are in the final image' {
        $region = New-Region (Send-ImgTarget $t 'map 8') 8
        $null = Send-ImgTarget $t "fill $($region.Hex) 8 7"
        $null = Invoke-PageOut $t $region 0 8
        $done = $false
        $out = @(Invoke-PreCopyMigration -Id $t.Id -Method SoftDirty -Destination (New-Dest 'm') -Bandwidth 1GB -MaxIterations 3 -StopThreshold 0 -Confirm:$false -WarningAction SilentlyContinue | ForEach-Object {
                if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                    $done = $true
                    $null = Send-ImgTarget $t "write $($region.Hex) 2 2"
                    $null = Invoke-PageOut $t $region 0 8
                    $null = Send-ImgTarget $t "write $($region.Hex) 6 1"
                }
                $_
            })
        $done | Should -BeTrue -Because 'a live round ran'
        $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
        Test-MemoryImage -Path $final | Should -BeTrue
        Get-RestoredRegionWords $final $region $PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $region $PageSize)
    }
}

# The emulator's swap rules (PhysicalMemory.SwapInFrame: a slot both halves of a fork refer to is swapped in once, into the
# swap cache; SwapOutCachePage: shared memory reclaimed goes to swap, out of the page cache) against the kernels' prints of
# tests/scenarios/vm/swap.scenario with a zram swap, recorded in the VM (folded, in tests/vm/recorded): compared everywhere;
# with SOFTDIRTY_KERNEL_MATRIX the kernels boot again. Before round 25 the emulator printed otherwise in 4 (6.12, 7.2, 7.3)
# and 5 (6.1) of the 17 scenarios: swap-fork, swap-fork-swapoff, swap-fork-free (each half a copy of its own, both exclusive;
# MADV_FREE dropped the page), swap-shared and, on 6.1, swap-shared-uffdwp (the reclaimed pages mapped again around a read fault).
Describe 'Round 25: the emulator against the kernels'' prints of <File>' -ForEach $recorded -Tag 'Security', 'Round25Swap', 'Differential' {
    BeforeAll {
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        $script:scenarioPath = Join-Path $PSScriptRoot "../scenarios/vm/$Scenario.scenario"
        $script:count = [SoftDirty.TestKit.Scenarios.Scenario]::Parse([IO.File]::ReadAllText($scenarioPath)).Count
    }

    It 'prints what the kernel printed with a swap, page for page, on the profile it names' {
        (Get-Content $Path) -match '^# setting swap /dev/zram0 ' | Should -Not -BeNullOrEmpty -Because 'the prints were recorded with a swap'
        $result = Compare-RecordedKernelPrints $Id $scenarioPath $Path
        $result.Scenarios | Should -Be $count
        $result.Matched | Should -BeTrue -Because $(if ($result.FirstMismatch) { "$File differs in $($result.DifferingNames -join ', '):`
$($result.FirstMismatch.SideBySide)" })
    }

    It 'booted again with a zram swap (SOFTDIRTY_KERNEL_MATRIX), prints what the emulator prints' -Tag 'KernelMatrix' {
        if (-not $env:SOFTDIRTY_KERNEL_MATRIX) { Set-ItResult -Skipped -Because 'SOFTDIRTY_KERNEL_MATRIX is not set: these boots run with the kernel matrix (build.ps1 KernelTest)'; return }
        $output = Invoke-KernelMatrixBoot $Id $scenarioPath @{
            MEM = '1G'; SWAP = '256M'; APPEND = 'transparent_hugepage=always'
            SETTINGS = '/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none=0 /sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs=4294967295'
        }
        $facts = @(Get-Content "$output.facts")
        $facts -match '^setting swap /dev/zram0 ' | Should -Not -BeNullOrEmpty -Because 'the guest swapped to zram'
        $result = Compare-KernelScenarioPrints $Id $scenarioPath $Id ([IO.File]::ReadAllText($output)) $facts
        Write-Host "round25 $Scenario on $Id`: $($result.Scenarios) scenarios, $($result.Checkpoints) checkpoints, $($result.Differing) differ"
        $result.Matched | Should -BeTrue -Because $(if ($result.FirstMismatch) { "$Id differs in $($result.DifferingNames -join ', '):`
$($result.FirstMismatch.SideBySide)" })
    }
}
