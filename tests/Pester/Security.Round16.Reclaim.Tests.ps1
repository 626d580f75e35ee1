#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, sixteenth attack round: memory whose contents or placement the kernel changes without the target writing
# (reclaim of lazily freed, shared and file pages, swap, a memory cgroup's limit, the huge zero page, transparent huge
# pages freed and reclaimed, MADV_POPULATE_*), and the emulator's fidelity there. New cases only (rounds 2-15:
# Security.Round*.Tests.ps1; MADV_FREE reclaimed and written, MADV_DONTNEED, KSM, MADV_COLLAPSE and splits, punched and
# truncated files, MAP_DROPPABLE and guard regions were done). The kernel and the emulator's Host profile (the rules
# measured on this kernel) do the same thing side by side and must show the same pagemap entries; chains and
# migrations of a real process and of emulated ones must restore what a full image of the same moment restores. Swap
# and memory cgroups are never set up here: those cases run where they are available. Targets: tests/native/imgtarget.c
# and wttarget.c.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    $ThpFile = '/sys/kernel/mm/transparent_hugepage/enabled'
    $ZeroFile = '/sys/kernel/mm/transparent_hugepage/use_zero_page'
    $HugeZeroSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Test-Path $ThpFile)) { 'no transparent huge pages here' }
    elseif ((Get-Content $ThpFile) -match '\[never\]') { 'transparent huge pages are off ([never])' }
    elseif (-not (Test-Path $ZeroFile) -or (Get-Content $ZeroFile) -ne '1') { "the kernel maps no huge zero page ($ZeroFile is not 1)" }
    # A memory cgroup the test may make (root): cgroup v1's memory hierarchy, or v2 with the memory controller enabled
    # for children of the root. Its limit then forces reclaim of the target.
    $MemcgSkip = if (-not $IsLinux) { 'Linux only' } elseif ((id -u) -ne '0') { 'only root may make a memory cgroup and move a process into it' }
    elseif (-not (Test-Path /sys/fs/cgroup/memory/cgroup.procs) -and -not ((Test-Path /sys/fs/cgroup/cgroup.subtree_control) -and (Get-Content /sys/fs/cgroup/cgroup.subtree_control) -match '\bmemory\b')) { 'no writable memory cgroup hierarchy here (v1 memory, or v2 with memory in the root''s subtree_control)' }
    # Swap is never set up by the tests (a machine setting): they run where it is active.
    $SwapSkip = if (-not $IsLinux) { 'Linux only' } elseif (-not @(Get-Content /proc/swaps | Select-Object -Skip 1).Count) { 'no swap is active here (/proc/swaps lists none)' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state16r'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r16r')
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:PageSize = [uint64][Environment]::SystemPageSize
    # madvise(2) advice values (include/uapi/asm-generic/mman-common.h).
    # How many more times a test asks for MADV_PAGEOUT where the kernel could isolate none of the pages (see its use).
    $script:PageoutRetries = 10
    $script:MadvWillNeed = 3; $script:MadvFree = 8; $script:MadvHugePage = 14; $script:MadvPageout = 21; $script:MadvPopulateRead = 22; $script:MadvPopulateWrite = 23
    # Soft-dirty is left out of the comparisons: it is a property of the VMA's history (merges), not of what is tested here.
    $script:Compared = [SoftDirty.PagemapFlags]::Present -bor [SoftDirty.PagemapFlags]::Swapped -bor [SoftDirty.PagemapFlags]::FileOrSharedAnon -bor
    [SoftDirty.PagemapFlags]::Exclusive -bor [SoftDirty.PagemapFlags]::UffdWriteProtected -bor [SoftDirty.PagemapFlags]::Guard
    function Get-Flags($Entries) { @($Entries | ForEach-Object { [SoftDirty.PagemapFlags]([uint64]$_.Flags -band [uint64]$Compared) }) }
    $script:Huge = if (Test-Path /sys/kernel/mm/transparent_hugepage/hpage_pmd_size) { [uint64](Get-Content /sys/kernel/mm/transparent_hugepage/hpage_pmd_size) } else { [uint64]0 }
    # A region of two huge pages' worth of small pages, MADV_HUGEPAGE on its 2 MiB-aligned part, which $Fault (a
    # target command, given the region) then faults in; $null unless PAGEMAP_SCAN shows $Expect on that whole part.
    function New-HugeRegion($Target, [scriptblock] $Fault, [string] $Expect) {
        $per = [int]($Huge / $PageSize)
        $hex = Send-TestTarget $Target "map $($per * 2)"
        $base = [Convert]::ToUInt64($hex, 16)
        $aligned = ($base + $Huge - 1) - ($base + $Huge - 1) % $Huge
        $r = [pscustomobject]@{ Hex = $hex; First = [int](($aligned - $base) / $PageSize); Per = $per; Aligned = $aligned }
        $null = Send-TestTarget $Target "madvise $hex $($r.First) $per $MadvHugePage"
        $null = Send-TestTarget $Target (& $Fault $r)
        $scan = @(Search-PageMap -Id $Target.Id -Address $aligned -Length $Huge)
        if ($scan.Count -eq 1 -and ($scan[0].Categories -band $Expect) -eq [SoftDirty.PageCategory]$Expect) { $r }
    }
    function Send-Idle($Target, [string] $Command) { $reply = Send-TestTarget $Target $Command; Wait-ImgTargetIdle $Target; $reply }
    function New-ImagePath([string] $Name) { Join-Path $root "$Name-$([guid]::NewGuid().ToString('n'))" }
    function Assert-IsTheMoment($Target, [string] $Image, [string] $Because) {
        $now = New-ImagePath 'now'
        $null = Save-MemoryImage -Id $Target.Id -Path $now -Method Hash
        Test-MemoryImage -Path $Image | Should -BeTrue
        Compare-RestoredImage $Image $now $root | Should -BeNullOrEmpty -Because $Because
    }
    # A file of $Pages pages of non-zero bytes, for a MAP_SHARED mapping of it. Written one page a write(2), so that its
    # page cache holds one small folio a page (a larger write gets large folios, whose reclaim rules the emulator, with
    # a page cache of small pages, does not model).
    function New-PageFile([int] $Pages) {
        $path = Join-Path $root "f-$([guid]::NewGuid().ToString('n')).bin"
        $bytes = [byte[]]::new($PageSize)
        $random = [Random]::new($Pages)
        $file = [IO.FileStream]::new($path, 'CreateNew', 'Write', 'None', 1)
        try { for ($i = 0; $i -lt $Pages; $i++) { $random.NextBytes($bytes); $file.Write($bytes, 0, $bytes.Length) } } finally { $file.Dispose() }
        $path
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 16: the huge zero page in pagemap, a real process and the emulator' -Tag 'Emulator', 'Security', 'Round16Reclaim' -Skip:([bool]$HugeZeroSkip) {
    # A read fault in a 2 MiB-aligned range of a MADV_HUGEPAGE mapping maps the huge zero page. pagemap's PMD path asks
    # the page's folio whether it is anonymous, and the huge zero page is not: its entries carry the FILE bit (and not
    # the exclusive one), unlike the PTE-mapped zero page. PAGEMAP_SCAN asks vm_normal_page_pmd, which has no page for
    # it: Huge | PfnZero, no File.
    It 'Get-PageMap and Search-PageMap show the emulator''s huge zero page as the kernel shows its own, before and after MADV_PAGEOUT' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-HugeRegion $t { param($r) "madvise $($r.Hex) $($r.First) $($r.Per) $MadvPopulateRead" } 'Huge, PfnZero'
            if (-not $r) { Set-ItResult -Skipped -Because 'the kernel mapped no huge zero page for the read'; return }
            $scan = @(Search-PageMap -Id $t.Id -Address $r.Aligned -Length $Huge)
            $real = Get-Flags (Get-PageMap -Id $t.Id -Address $r.Aligned -Length (4 * $PageSize))
            # Reclaim leaves the huge zero page where it is (madvise_cold_or_pageout_pte_range: is_huge_zero_pmd).
            $null = Send-TestTarget $t "madvise $($r.Hex) $($r.First) $($r.Per) $MadvPageout"
            $afterPageout = @(Search-PageMap -Id $t.Id -Address $r.Aligned -Length $Huge).Categories -join '; '
        } finally { Stop-TestTarget $t }
        $e = New-EmulatedProcess -Kernel Host
        $m = $e | Add-EmulatedMapping -Length (2 * $Huge) -HugePage
        $ea = ($m.Start + $Huge - 1) - ($m.Start + $Huge - 1) % $Huge
        $e | Read-EmulatedMemory -Address $ea -Length $Huge
        $emulated = Get-Flags ($e | Get-PageMap -Address $ea -Length (4 * $PageSize))
        ($emulated -join '; ') | Should -Be ($real -join '; ') -Because 'the emulator models the huge zero page''s pagemap entries as the kernel reports them'
        ($e | Search-PageMap -Address $ea -Length $Huge).Categories | Should -Be $scan[0].Categories
        $e | Invoke-EmulatedMadvise -Address $ea -Length $Huge -Advice PageOut
        @($e | Search-PageMap -Address $ea -Length $Huge).Categories -join '; ' | Should -Be $afterPageout
    }
}

Describe 'Round 16: MADV_PAGEOUT of shared and file pages, a real process and the emulator' -Tag 'Emulator', 'Security', 'Round16Reclaim' {
    # Reclaim unmaps a page of shmem or of a file (it stays in the page cache: no swap needed). In a VMA registered for
    # uffd-wp, try_to_unmap_one leaves a uffd-wp marker where the page was write-protected (pte_install_uffd_wp_if_needed,
    # as a zap does), which pagemap shows as Swapped | UffdWriteProtected. A page that another mapping maps too is left
    # alone (folio_mapcount != nr_pages). A page still in a CPU's LRU batch cannot be isolated and stays: only the pages
    # the kernel did drop are compared, and there are more of them than two CPUs' batches hold.
    BeforeAll {
        $script:Pages = 96
        function Compare-Dropped($Real, $Emulated, [string] $What) {
            $dropped = @(for ($i = 0; $i -lt $Real.Count; $i++) { if (-not ($Real[$i] -band [SoftDirty.PagemapFlags]::Present)) { $i } })
            $dropped.Count | Should -BeGreaterThan 0 -Because "the kernel reclaims pages that are on the LRU ($What)"
            foreach ($i in $dropped) { "page ${i}: $($Emulated[$i])" | Should -Be "page ${i}: $($Real[$i])" -Because "the emulator drops the page as the kernel did ($What)" }
        }
    }

    # (Round 23: the module's write tracking no longer registers shmem or file mappings, so the real target registers its
    # mapping itself, with a userfaultfd of its own in the mode the tracking used, imgtarget "uffdwp".)
    It 'pages of a <Kind> mapping registered for userfaultfd write-protect become uffd-wp markers' -Skip:([bool]$WtSkip) -ForEach @(
        @{ Kind = 'memfd (MAP_SHARED)' }, @{ Kind = 'file (MAP_SHARED)' }
    ) {
        $t = Start-ImgTarget
        try {
            $path = $null
            $addr = if ($Kind -like 'memfd*') { ((Send-ImgTarget $t "shm $Pages") -split ' ')[0] } else { $path = New-PageFile $Pages; Send-ImgTarget $t "mapfile $path $Pages 1" }
            $null = Send-ImgTarget $t "fill $addr $Pages 7"
            $null = Send-ImgTarget $t "uffdwp $addr $Pages"
            $null = Send-ImgTarget $t "pageout $addr 0 $Pages"
            $real = Get-Flags (Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($addr, 16)) -Length ($Pages * $PageSize))
        } finally { Stop-ImgTarget $t }
        $e = New-EmulatedProcess -Kernel Host
        $m = if ($path) { $e | Add-EmulatedMapping -Length ($Pages * $PageSize) -Shared -Path $path } else { $e | Add-EmulatedMapping -Length ($Pages * $PageSize) -Shared }
        $e | Write-EmulatedMemory -Address $m.Start -Length ($Pages * $PageSize)
        $e | Register-EmulatedWriteProtect -Address $m.Start -Length ($Pages * $PageSize)
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length ($Pages * $PageSize) -Advice PageOut
        Compare-Dropped $real (Get-Flags ($e | Get-PageMap -Address $m.Start -Length ($Pages * $PageSize))) $Kind
    }

    It 'pages of a file that two MAP_SHARED mappings map stay where they are' {
        $path = New-PageFile $Pages
        $t = Start-ImgTarget
        try {
            $a = Send-ImgTarget $t "mapfile $path $Pages 1"
            $b = Send-ImgTarget $t "mapfile $path $Pages 1"
            $null = Send-ImgTarget $t "touch $a 0 $Pages"
            $null = Send-ImgTarget $t "touch $b 0 $Pages"
            $null = Send-ImgTarget $t "pageout $a 0 $Pages"
            $real = Get-Flags (Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($a, 16)) -Length ($Pages * $PageSize))
        } finally { Stop-ImgTarget $t }
        $real | Where-Object { -not ($_ -band [SoftDirty.PagemapFlags]::Present) } | Should -BeNullOrEmpty -Because 'the kernel pages out no page that another mapping maps'
        $e = New-EmulatedProcess -Kernel Host
        $ma = $e | Add-EmulatedMapping -Length ($Pages * $PageSize) -Shared -Path $path
        $mb = $e | Add-EmulatedMapping -Length ($Pages * $PageSize) -Shared -Path $path
        $e | Read-EmulatedMemory -Address $ma.Start -Length ($Pages * $PageSize)
        $e | Read-EmulatedMemory -Address $mb.Start -Length ($Pages * $PageSize)
        $e | Invoke-EmulatedMadvise -Address $ma.Start -Length ($Pages * $PageSize) -Advice PageOut
        (Get-Flags ($e | Get-PageMap -Address $ma.Start -Length ($Pages * $PageSize))) -join '; ' | Should -Be ($real -join '; ')
    }
}

Describe 'Round 16: lazily freed pages reclaimed and the huge zero page in chains and migrations (a real process)' -Tag 'Workflows', 'Security', 'Round16Reclaim' {
    # Each image is compared with a full Hash image of the same moment: what the kernel dropped (a lazily freed page it
    # reclaimed, which reads as zeros with no write) must never keep the parent's bytes, and what only a read or a
    # populate mapped (the huge zero page, zeroed pages) must restore as zeros.
    It '<Case>, -Method <Method>: the increment restores what a full image of that moment restores' -ForEach @(
        foreach ($m in 'WriteProtect', 'Hash') {
            @{ Method = $m; WtSkip = $WtSkip; HugeZeroSkip = $HugeZeroSkip; Case = 'pages written, lazily freed, reclaimed, then populated for write (MADV_POPULATE_WRITE: zeros, no store)' }
            @{ Method = $m; WtSkip = $WtSkip; HugeZeroSkip = $HugeZeroSkip; Case = 'a huge zero page mapped by a read (MADV_POPULATE_READ), then two of its pages written' }
            @{ Method = $m; WtSkip = $WtSkip; HugeZeroSkip = $HugeZeroSkip; Case = 'a written transparent huge page lazily freed whole and reclaimed whole' }
            @{ Method = $m; WtSkip = $WtSkip; SwapSkip = $SwapSkip; Case = 'with swap: pages swapped out before and after the parent, some written back in, some freed while swapped (MADV_FREE drops the slot), some read back (MADV_WILLNEED)' }
        }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        if ($Case -like '*huge*' -and $HugeZeroSkip) { Set-ItResult -Skipped -Because $HugeZeroSkip; return }
        if ($Case -like 'with swap*' -and $SwapSkip) { Set-ItResult -Skipped -Because $SwapSkip; return }
        $t = Start-TestTarget -Path $wtExe
        $dir = New-ImagePath 'chain'
        try {
            if ($Case -notlike '*huge*') { $hex = Send-TestTarget $t 'map 32'; $null = Send-TestTarget $t "write $hex 0 32" }
            switch -Wildcard ($Case) {
                'pages written*' {
                    $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method $Method
                    foreach ($advice in $MadvFree, $MadvPageout) { $null = Send-TestTarget $t "madvise $hex 2 8 $advice" }
                    $null = Send-Idle $t "madvise $hex 4 4 $MadvPopulateWrite"
                }
                'with swap*' {
                    $null = Send-TestTarget $t "madvise $hex 0 32 $MadvPageout"
                    $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method $Method
                    foreach ($command in "madvise $hex 0 32 $MadvPageout", "write $hex 4 4", "madvise $hex 10 6 $MadvFree") { $null = Send-TestTarget $t $command }
                    $null = Send-Idle $t "madvise $hex 20 4 $MadvWillNeed"
                }
                'a huge zero page*' {
                    $r = New-HugeRegion $t { param($r) "madvise $($r.Hex) $($r.First) $($r.Per) $MadvPopulateRead" } 'Huge, PfnZero'
                    if (-not $r) { Set-ItResult -Skipped -Because 'the kernel mapped no huge zero page for the read'; return }
                    $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method $Method
                    $null = Send-Idle $t "write $($r.Hex) $($r.First + 3) 2"
                }
                'a written transparent*' {
                    $r = New-HugeRegion $t { param($r) "write $($r.Hex) $($r.First) $($r.Per)" } 'Huge, Present'
                    if (-not $r) { Set-ItResult -Skipped -Because 'the kernel made no huge page for the writes (no free 2 MiB block)'; return }
                    $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method $Method
                    $null = Send-TestTarget $t "madvise $($r.Hex) $($r.First) $($r.Per) $MadvFree"
                    $null = Send-Idle $t "madvise $($r.Hex) $($r.First) $($r.Per) $MadvPageout"
                }
            }
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/1" -Parent "$dir/0" -Method $Method
            Assert-IsTheMoment $t "$dir/1" $Case
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'a <Method> migration: pages lazily freed and reclaimed after its first round are zeros in the final image' -ForEach @(
        @{ Method = 'WriteProtect'; WtSkip = $WtSkip }, @{ Method = 'Hash'; WtSkip = $null }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $t = Start-TestTarget -Path $wtExe
        try {
            $hex = Send-TestTarget $t 'map 32'
            $null = Send-TestTarget $t "write $hex 0 32"
            $done = $false
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Destination (New-ImagePath 'm') -Bandwidth 4MB -MaxIterations 3 -StopThreshold 0 | ForEach-Object {
                    if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                        $done = $true
                        $null = Send-TestTarget $t "madvise $hex 4 16 $MadvFree"
                        $null = Send-Idle $t "madvise $hex 4 16 $MadvPageout"
                    }
                    $_
                })
            $done | Should -BeTrue -Because 'a live round ran'
            # The region alone: as the stop-and-copy round resumes the target, the kernel may write its rseq area.
            $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
            Test-MemoryImage -Path $final | Should -BeTrue
            $now = New-ImagePath 'now'
            $null = Save-MemoryImage -Id $t.Id -Path $now -Method Hash
            $file = '{0:x}-*' -f [Convert]::ToUInt64($hex, 16)
            $got = @(Get-RestoredHash $final $root | Where-Object { $_ -like $file })
            $got.Count | Should -Be 1 -Because 'the region is one mapping of the final image'
            $got | Should -Be @(Get-RestoredHash $now $root | Where-Object { $_ -like $file }) -Because 'the reclaimed pages read as zeros now'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'Round 16: private anonymous pages swapped out and in (where swap is active)' -Tag 'Workflows', 'Emulator', 'Security', 'Round16Reclaim' -Skip:([bool]$SwapSkip) {
    It 'pages shared copy-on-write with a fork stay, the parent''s own copies go to swap: a real process and the emulator alike' {
        # madvise_cold_or_pageout_pte_range leaves a folio that more than one page table maps (folio_mapcount != nr_pages).
        $t = Start-TestTarget -Path $wtExe
        $child = $null
        try {
            $hex = Send-TestTarget $t 'map 8'
            $null = Send-TestTarget $t "write $hex 0 8"
            $child = [int](Send-TestTarget $t 'fork')
            $null = Send-TestTarget $t "madvise $hex 0 8 $MadvPageout"
            $null = Send-TestTarget $t "write $hex 0 2"
            $null = Send-TestTarget $t "madvise $hex 0 8 $MadvPageout"
            $real = Get-Flags (Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16)) -Length (8 * $PageSize))
        } finally { if ($child) { Stop-Process -Id $child -Force -ErrorAction SilentlyContinue }; Stop-TestTarget $t }
        @($real | Where-Object { $_ -band [SoftDirty.PagemapFlags]::Swapped }).Count | Should -BeGreaterThan 0 -Because 'the parent''s own copies are on the LRU and swap is active'
        $e = New-EmulatedProcess -Kernel Host
        $m = $e | Add-EmulatedMapping -Length (8 * $PageSize)
        $e | Write-EmulatedMemory -Address $m.Start -Length (8 * $PageSize)
        $null = $e | Copy-EmulatedProcess
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length (8 * $PageSize) -Advice PageOut
        $e | Write-EmulatedMemory -Address $m.Start -Length (2 * $PageSize)
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length (8 * $PageSize) -Advice PageOut
        $emulated = Get-Flags ($e | Get-PageMap -Address $m.Start -Length (8 * $PageSize))
        # A copy the kernel could not isolate yet (still in a CPU's LRU batch) stays present: compare the pages it swapped.
        for ($i = 0; $i -lt 8; $i++) { if ($real[$i] -band [SoftDirty.PagemapFlags]::Swapped) { "page ${i}: $($emulated[$i])" | Should -Be "page ${i}: $($real[$i])" } }
        for ($i = 2; $i -lt 8; $i++) { "page ${i}: $($emulated[$i])" | Should -Be "page ${i}: $($real[$i])" -Because 'pages still shared with the fork stay' }
    }
}

Describe 'Round 16: MADV_FREE and reclaim, a real process and the emulator' -Tag 'Emulator', 'Security', 'Round16Reclaim' {
    # MADV_FREE makes a private anonymous page clean and lazily freed; reclaim (MADV_PAGEOUT here, memory pressure
    # elsewhere) then discards it, swap or not, and it reads as zeros with no write: its PTE becomes none (no uffd-wp
    # marker in an anonymous VMA). A write before the reclaim makes the PTE dirty, and reclaim keeps the page. A page
    # the kernel could not isolate (still in a CPU's LRU batch) stays too: the pages it dropped are compared, and the
    # written ones must be there on both sides.
    It 'pages lazily freed, two written again, then reclaimed (<Tracking>)' -ForEach @(
        @{ Tracking = 'untracked'; WtSkip = $null }, @{ Tracking = 'write-protected by write tracking'; WtSkip = $WtSkip }
    ) {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $t = Start-TestTarget -Path $wtExe
        try {
            $hex = Send-TestTarget $t 'map 16'
            $null = Send-TestTarget $t "write $hex 0 16"
            if ($Tracking -ne 'untracked') { $null = Enable-WriteTracking -Id $t.Id }
            foreach ($command in "madvise $hex 0 12 $MadvFree", "write $hex 2 2", "madvise $hex 0 12 $MadvPageout") { $null = Send-TestTarget $t $command }
            $real = Get-Flags (Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16)) -Length (16 * $PageSize))
            # Pages still in another CPU's LRU batch cannot be isolated yet (seen once in CI: none dropped): asked again a few
            # times; pages it kept stay lazily freed, and a later MADV_PAGEOUT discards them as the first would have.
            for ($try = 0; $try -lt $PageoutRetries -and -not ($real | Where-Object { -not ($_ -band [SoftDirty.PagemapFlags]::Present) }); $try++) {
                Start-Sleep -Milliseconds 20
                $null = Send-TestTarget $t "madvise $hex 0 12 $MadvPageout"
                $real = Get-Flags (Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16)) -Length (16 * $PageSize))
            }
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
        $e = New-EmulatedProcess -Kernel Host
        $m = $e | Add-EmulatedMapping -Length (16 * $PageSize)
        $e | Write-EmulatedMemory -Address $m.Start -Length (16 * $PageSize)
        if ($Tracking -ne 'untracked') { $e | Register-EmulatedWriteProtect -Address $m.Start -Length (16 * $PageSize) }
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length (12 * $PageSize) -Advice Free
        $e | Write-EmulatedMemory -Address ($m.Start + 2 * $PageSize) -Length (2 * $PageSize)
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length (12 * $PageSize) -Advice PageOut
        $emulated = Get-Flags ($e | Get-PageMap -Address $m.Start -Length (16 * $PageSize))
        $dropped = @(for ($i = 0; $i -lt 16; $i++) { if (-not ($real[$i] -band [SoftDirty.PagemapFlags]::Present)) { $i } })
        if (-not $dropped.Count) { Set-ItResult -Skipped -Because "the kernel isolated none of the lazily freed pages in $($PageoutRetries + 1) MADV_PAGEOUTs (all still in CPUs' LRU batches): nothing was discarded to compare"; return }
        foreach ($i in @($dropped) + 2, 3 + 12..15) { "page ${i}: $($emulated[$i])" | Should -Be "page ${i}: $($real[$i])" }
        $e | Read-EmulatedMemory -Address $m.Start -Length $PageSize
        ($e | Get-PageMap -Address $m.Start -Length $PageSize).Flags -band [SoftDirty.PagemapFlags]::Present | Should -Be ([SoftDirty.PagemapFlags]::Present) -Because 'a read maps the zero page'
    }

    It 'MADV_FREE of a <Kind> mapping is EINVAL on both sides, and the pages stay' -ForEach @(
        @{ Kind = 'memfd (MAP_SHARED)' }, @{ Kind = 'file (MAP_SHARED)' }
    ) {
        $t = Start-ImgTarget
        try {
            $path = $null
            $addr = if ($Kind -like 'memfd*') { ((Send-ImgTarget $t 'shm 4') -split ' ')[0] } else { $path = New-PageFile 4; Send-ImgTarget $t "mapfile $path 4 1" }
            $null = Send-ImgTarget $t "fill $addr 4 9"
            { Send-ImgTarget $t "free $addr 0 4" } | Should -Throw "*ERR madvise*"
        } finally { Stop-ImgTarget $t }
        $e = New-EmulatedProcess -Kernel Host
        $m = if ($path) { $e | Add-EmulatedMapping -Length (4 * $PageSize) -Shared -Path $path } else { $e | Add-EmulatedMapping -Length (4 * $PageSize) -Shared }
        $e | Write-EmulatedMemory -Address $m.Start -Length (4 * $PageSize)
        { $e | Invoke-EmulatedMadvise -Address $m.Start -Length (4 * $PageSize) -Advice Free -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.InvokeEmulatedMadviseCommand'
        @($e | Get-PageMap -Address $m.Start -Length (4 * $PageSize) -Present).Count | Should -Be 4
    }

    It 'a transparent huge page lazily freed whole, <Then>, then reclaimed: discarded whole, or kept and split, on both sides' -Skip:([bool]$HugeZeroSkip) -ForEach @(
        @{ Then = 'not written'; Write = $false }, @{ Then = 'one page written'; Write = $true }
    ) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-HugeRegion $t { param($r) "write $($r.Hex) $($r.First) $($r.Per)" } 'Huge, Present'
            if (-not $r) { Set-ItResult -Skipped -Because 'the kernel made no huge page for the writes (no free 2 MiB block)'; return }
            $null = Send-TestTarget $t "madvise $($r.Hex) $($r.First) $($r.Per) $MadvFree"
            if ($Write) { $null = Send-TestTarget $t "write $($r.Hex) $($r.First + 7) 1" }
            $null = Send-TestTarget $t "madvise $($r.Hex) $($r.First) $($r.Per) $MadvPageout"
            $real = @(Search-PageMap -Id $t.Id -Address $r.Aligned -Length $Huge | ForEach-Object { "$($_.Start - $r.Aligned)-$($_.End - $r.Aligned) $($_.Categories)" })
        } finally { Stop-TestTarget $t }
        $e = New-EmulatedProcess -Kernel Host
        $m = $e | Add-EmulatedMapping -Length (2 * $Huge) -HugePage
        $ea = ($m.Start + $Huge - 1) - ($m.Start + $Huge - 1) % $Huge
        $e | Write-EmulatedMemory -Address $ea -Length $Huge
        $e | Invoke-EmulatedMadvise -Address $ea -Length $Huge -Advice Free
        if ($Write) { $e | Write-EmulatedMemory -Address ($ea + 7 * $PageSize) -Length 1 }
        $e | Invoke-EmulatedMadvise -Address $ea -Length $Huge -Advice PageOut
        $emulated = @($e | Search-PageMap -Address $ea -Length $Huge | ForEach-Object { "$($_.Start - $ea)-$($_.End - $ea) $($_.Categories)" })
        # A huge page not isolated stays whole too: only a discarded one (no present page) makes the not-written case a test.
        if (-not $Write -and "$real" -match 'Present') { Set-ItResult -Skipped -Because "the kernel kept the lazily freed huge page this time (not on the LRU yet): $real"; return }
        ($emulated -join '; ') | Should -Be ($real -join '; ')
    }
}

Describe 'Round 16: lazily freed pages reclaimed between a parent and its increment (emulated)' -Tag 'Workflows', 'Emulator', 'Security', 'Round16Reclaim' {
    # A discarded page reads as zeros with neither soft-dirty nor the written bit set: the increment must not keep the
    # parent's bytes. A page written after MADV_FREE is kept with its new bytes.
    It 'profile <Kernel>, -Method <Method>, <Label>: the increment restores what a full image of that moment restores' -ForEach @(
        foreach ($k in '6.1', '6.18', '7.3') {
            foreach ($m in 'SoftDirty', 'WriteProtect', 'Hash') {
                if ($k -eq '6.1' -and $m -eq 'WriteProtect') { continue } # no PAGEMAP_SCAN there: WriteProtect is refused
                @{ Kernel = $k; Method = $m; Label = 'small pages freed, two written again, reclaimed, one read'; Huge = $false }
                @{ Kernel = $k; Method = $m; Label = 'a huge page freed whole and reclaimed, then read'; Huge = $true }
            }
        }
    ) {
        $e = New-EmulatedProcess -Kernel $Kernel
        $len = if ($Huge) { 2MB } else { 64KB }
        $m = if ($Huge) { $e | Add-EmulatedMapping -Length $len -Address 0x40000000 -HugePage } else { $e | Add-EmulatedMapping -Length $len }
        $e | Write-EmulatedMemory -Address $m.Start -Length $len
        $chain = New-ImagePath 'emu'
        $null = $e | Save-MemoryImage -Path "$chain/0" -Method $Method
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length $len -Advice Free
        if (-not $Huge) { $e | Write-EmulatedMemory -Address ($m.Start + 4 * $PageSize) -Length (2 * $PageSize) }
        $e | Invoke-EmulatedMadvise -Address $m.Start -Length $len -Advice PageOut
        $e | Read-EmulatedMemory -Address $m.Start -Length $PageSize
        $null = $e | Save-MemoryImage -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningAction SilentlyContinue
        $full = New-ImagePath 'full'
        $null = $e | Save-MemoryImage -Path $full -Method Hash
        Test-MemoryImage "$chain/1" | Should -BeTrue
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty
        $e | Get-PageMap -Address ($m.Start + $PageSize) -Length $PageSize | ForEach-Object { $_.Flags -band [SoftDirty.PagemapFlags]::Present } | Should -Be ([SoftDirty.PagemapFlags]::None) -Because 'the lazily freed page was discarded'
    }
}

Describe 'Round 16: a memory cgroup limit forcing reclaim of lazily freed pages (root)' -Tag 'Workflows', 'Security', 'Round16Reclaim' -Skip:([bool]$MemcgSkip) {
    # Memory pressure takes the path MADV_PAGEOUT takes: the lazily freed pages it discards read as zeros with no write.
    It '-Method <Method>: the increment after the limit restores what a full image restores' -ForEach @(
        @{ Method = 'WriteProtect'; WtSkip = $WtSkip }, @{ Method = 'Hash'; WtSkip = $null }
    ) {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $v1 = Test-Path /sys/fs/cgroup/memory/cgroup.procs
        $cg = if ($v1) { "/sys/fs/cgroup/memory/r16reclaim-$PID" } else { "/sys/fs/cgroup/r16reclaim-$PID" }
        $limit = if ($v1) { 'memory.limit_in_bytes' } else { 'memory.max' }
        $pages = 4096
        $t = Start-TestTarget -Path $wtExe
        $dir = New-ImagePath 'memcg'
        try {
            $null = New-Item -ItemType Directory $cg
            Set-Content "$cg/cgroup.procs" $t.Id
            $hex = Send-TestTarget $t "map $pages"
            $null = Send-TestTarget $t "write $hex 0 $pages"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method $Method
            $null = Send-TestTarget $t "madvise $hex 0 $pages $MadvFree"
            Set-Content "$cg/$limit" ([uint64]$pages * $PageSize / 2)
            @(Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16)) -Length ([uint64]$pages * $PageSize) -Present).Count | Should -BeLessThan $pages -Because 'the limit made the kernel discard lazily freed pages'
            # The limit lifted once it did, before the increment: under it, reclaim went on discarding lazily freed pages while
            # the increment ran and after it (round 27, kernel 6.18.44: the kernel killed the target, out of memory in its
            # cgroup, during the WriteProtect increment; at three quarters the full image of the later moment differed). A
            # discard is a change without a write, which the next increment finds as a page gone; here the memory must stand.
            Set-Content "$cg/$limit" $(if ($v1) { '-1' } else { 'max' })
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/1" -Parent "$dir/0" -Method $Method
            Assert-IsTheMoment $t "$dir/1" 'the discarded pages read as zeros'
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
            # An emptied cgroup is removed with rmdir(2); its processes leave it as they exit.
            for ($i = 0; $i -lt 100 -and (Test-Path $cg); $i++) { try { [System.IO.Directory]::Delete($cg) } catch [System.IO.IOException] { Start-Sleep -Milliseconds 20 } }
            Test-Path $cg | Should -BeFalse -Because 'the test removes the cgroup it made'
        }
    }
}
