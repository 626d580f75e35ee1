#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-fourth attack round, on the live counts of watches and migrations (Watch-DirtyPage samples, the rounds of
# Invoke-PreCopyMigration), checked against what the test itself wrote. A real process, tests/native/imgtarget.c.
# Found (wrong answer): the pages of memory that ends with the process (a memfd, shared anonymous or System V memory, a file
# deleted while mapped) that the process does not map were never looked at by a watch or a migration's live rounds: a write
# there by another process or with write(2) counted 0 of 4 pages, with every method, though round 23's saves read such pages
# from the object. A migration without -Destination left them out of what its first round sends (1,000 pages of a memfd the
# process does not map). Now the counts hash them from the object as a save reads them (nothing is faulted into the process);
# where the object cannot be opened (unprivileged: shared anonymous and System V memory, a deleted file without a descriptor)
# the watch and the migration say so once, and such pages are never counted. Every case below failed before.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r24c')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state24c'
    $script:PageSize = [Environment]::SystemPageSize
    function New-Dest([string] $Name = 'd') { Join-Path $root "$Name-$([guid]::NewGuid().ToString('n'))" }
    function New-Region([string] $Hex, [int] $Pages) { [pscustomobject]@{ Address = [Convert]::ToUInt64($Hex, 16); Pages = $Pages; Hex = $Hex } }
    # The pages of $Ranges (address ranges) inside $Region.
    function Get-CountIn($Ranges, $Region) {
        $n = 0
        $end = $Region.Address + [uint64]$Region.Pages * $PageSize
        foreach ($r in $Ranges) {
            $s = [Math]::Max($r.Start, $Region.Address); $e = [Math]::Min($r.End, $end)
            if ($s -lt $e) { $n += ($e - $s) / $PageSize }
        }
        $n
    }
    function Get-PresentCount($Target, $Region) { @(Get-PageMap -Id $Target.Id -Address $Region.Address -Length ($Region.Pages * $PageSize) -Present).Count }
    # Whether this user can open the object of the target's mapping at $Region through /proc/PID/map_files (measured: it needs
    # CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
    function Test-MapFiles($Target, $Region) {
        $m = Get-MemoryMapping -Id $Target.Id | Where-Object { $_.Start -le $Region.Address -and $Region.Address -lt $_.End } | Select-Object -First 1
        try { [IO.File]::OpenRead(('/proc/{0}/map_files/{1:x}-{2:x}' -f $Target.Id, $m.Start, $m.End)).Dispose(); $true } catch { $false }
    }
    # Writes $Pages pages of new bytes at page $Index of the file with write(2): another process than the target (this one).
    function Write-Pages([string] $Path, [int] $Index, [int] $Pages, [int] $Seed) {
        $b = [byte[]]::new($Pages * $PageSize); [Random]::new($Seed).NextBytes($b)
        for ($i = 0; $i -lt $Pages; $i++) { $b[$i * $PageSize] = $b[$i * $PageSize] -bor 1 }
        $fs = [IO.File]::Open($Path, 'Open', 'ReadWrite', 'ReadWrite')
        try { $fs.Position = [int64]$Index * $PageSize; $fs.Write($b, 0, $b.Length) } finally { $fs.Dispose() }
    }
    # A case: a 16-page mapping of memory that ends with the target, none of it mapped in the target; Invoke-Act writes pages
    # 4-7 of it without the target's page table (another process, write(2), a forked child); Route: how the module opens its object.
    function New-Case($Target, [string] $Case) {
        $pages = 16
        switch ($Case) {
            'memfd' {
                $r = (Send-ImgTarget $Target "memfd $pages 1") -split ' '
                @{ Case = $Case; Region = New-Region $r[0] $pages; Route = 'descriptor'; Fd = "/proc/$($Target.Id)/fd/$([Convert]::ToInt32($r[1], 16))" }
            }
            'memfd written with write(2) by the target' {
                $r = (Send-ImgTarget $Target "shm $pages") -split ' '
                @{ Case = $Case; Region = New-Region $r[0] $pages; Route = 'descriptor'; Fd = $r[1] }
            }
            'shared anonymous memory' { @{ Case = $Case; Region = New-Region (Send-ImgTarget $Target "mapx $pages 1") $pages; Route = 'map_files' } }
            'System V segment removed while attached' {
                $r = (Send-ImgTarget $Target "sysvshm $pages 1") -split ' '
                $null = Send-ImgTarget $Target "dontneed $($r[0]) 0 $pages"
                @{ Case = $Case; Region = New-Region $r[0] $pages; Route = 'map_files' }
            }
            'deleted file' {
                $f = Join-Path $root "del-$([guid]::NewGuid().ToString('n'))"
                [IO.File]::WriteAllBytes($f, [byte[]]::new($pages * $PageSize))
                $a = Send-ImgTarget $Target "mapfile $f $pages 1"
                $keep = [IO.File]::Open($f, 'Open', 'ReadWrite', 'ReadWrite')
                Remove-Item -LiteralPath $f
                @{ Case = $Case; Region = New-Region $a $pages; Route = 'map_files'; Keep = $keep }
            }
        }
    }
    function Invoke-Act($Target, $C) {
        switch ($C.Case) {
            'memfd' { Write-Pages $C.Fd 4 4 77 }
            'memfd written with write(2) by the target' { $null = Send-ImgTarget $Target "pwrite $($C.Fd) 4 4" }
            'deleted file' {
                $b = [byte[]]::new(4 * $PageSize); [Random]::new(5).NextBytes($b)
                for ($i = 0; $i -lt 4; $i++) { $b[$i * $PageSize] = $b[$i * $PageSize] -bor 1 }
                $C.Keep.Position = 4 * $PageSize; $C.Keep.Write($b, 0, $b.Length); $C.Keep.Flush()
            }
            default { $null = Send-ImgTarget $Target "childwrite $($C.Region.Hex) 4 4" }
        }
    }
}

Describe 'Round 24: live counts of writes into memory that ends with the process, where it does not map it' -Tag 'Security', 'Round24Counts' {
    BeforeEach { $script:t = Start-ImgTarget }
    AfterEach { Stop-ImgTarget $t }

    It 'a <Method> watch counts the 4 pages written into a <Case> between two samples, or says it cannot' -ForEach @(
        foreach ($m in 'Hash', 'WriteProtect') {
            foreach ($c in 'memfd', 'memfd written with write(2) by the target', 'shared anonymous memory', 'System V segment removed while attached', 'deleted file') {
                @{ Method = $m; Case = $c; Skip = $(if ($m -eq 'WriteProtect') { $WtSkip }) }
            }
        }
    ) {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $c = New-Case $t $Case
        try {
            $region = $c.Region
            Get-PresentCount $t $region | Should -Be 0 -Because 'the case is pages the target does not map'
            $readable = ($c.Route -eq 'descriptor') -or (Test-MapFiles $t $region)
            $w = $null
            $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Interval 0.2 -Count 3 -WarningVariable w -WarningAction SilentlyContinue | ForEach-Object {
                    if ($_.Index -eq 1) { Invoke-Act $t $c }
                    $_
                })
            $counts = @($samples | ForEach-Object { Get-CountIn $_.Ranges $region })
            $unopened = @($w | Where-Object { "$_" -like '*memory that ends with process*could not be read from the object at sample 1*not counted*' })
            if ($readable) {
                $counts | Should -Be @(0, 4, 0) -Because "4 pages were written between samples 1 and 2, none before or after ($Case, $Method)"
                $unopened | Should -BeNullOrEmpty
            } else {
                $counts | Should -Be @(0, 0, 0) -Because 'a page whose object cannot be read is never counted'
                $unopened | Should -HaveCount 1 -Because "the watch says once that writes there cannot be seen ($Case, $Method)"
            }
            Get-PresentCount $t $region | Should -Be 0 -Because 'the watch read the object, never through the process'
        } finally { if ($c.Keep) { $c.Keep.Dispose() } }
    }

    It 'a <Method> migration<Where> counts the 6 pages another process writes into a memfd the target does not map, and its first round sends the memfd' -ForEach @(
        foreach ($m in 'Hash', 'WriteProtect') {
            foreach ($d in $true, $false) { @{ Method = $m; ToFolder = $d; Where = $(if ($d) { ' into a folder' } else { ' without -Destination' }); Skip = $(if ($m -eq 'WriteProtect') { $WtSkip }) } }
        }
    ) {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $c = New-Case $t 'memfd'
        $region = $c.Region
        $more = @{}
        if ($ToFolder) { $more.Destination = New-Dest 'm' }
        $done = $false
        $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Mapping '*imgtarget-memfd*' -Bandwidth 64MB -MaxIterations 3 -StopThreshold 0 @more -WarningAction SilentlyContinue | ForEach-Object {
                if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                    $done = $true
                    Write-Pages $c.Fd 2 6 71
                }
                $_
            })
        $done | Should -BeTrue -Because 'a live round ran'
        $rounds = @($out | Where-Object { $_.PSObject.Properties['Phase'] })
        $rounds[0].PagesSent | Should -Be 16 -Because 'the first round sends the 16 pages the memfd holds, none mapped in the target'
        $written = 0
        foreach ($r in $rounds | Select-Object -Skip 1) { $written += Get-CountIn $r.Ranges $region }
        $written | Should -Be 6 -Because 'the 6 pages written after the first round count in a later round'
        Get-PresentCount $t $region | Should -Be 0 -Because 'the migration read the object, never through the process'
        if ($ToFolder) {
            $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
            Test-MemoryImage -Path $final | Should -BeTrue
            Get-RestoredRegionWords $final $region $PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $region $PageSize)
        }
    }
}

Describe 'Round 24: the samples of a watch of -Duration' -Tag 'Security', 'Round24Counts' {
    BeforeAll { $script:t = Start-ImgTarget }
    AfterAll { Stop-ImgTarget $t }

    # Found (wrong answer): the samples were Duration / Interval rounded down, not up as the help says: a watch shorter than
    # one interval returned nothing (0 samples for -Duration 0.1 -Interval 0.2), -Duration 0.3 -Interval 0.2 one.
    It '-Duration <Duration> -Interval <Interval> takes <Samples> sample(s): Duration / Interval, rounded up' -ForEach @(
        @{ Duration = 0.1; Interval = 0.2; Samples = 1 }
        @{ Duration = 0.3; Interval = 0.2; Samples = 2 }
        @{ Duration = 0.6; Interval = 0.2; Samples = 3 }
        @{ Duration = 0.7; Interval = 0.1; Samples = 7 }
    ) {
        $s = @(Watch-DirtyPage -Id $t.Id -Method Hash -Interval $Interval -Duration $Duration -Mapping '[heap]')
        $s.Count | Should -Be $Samples
        ($s | ForEach-Object Index) -join ',' | Should -Be ((1..$Samples) -join ',')
    }
}

Describe 'Round 24: live counts across forks, mappings replaced or moved, and memfds changed between looks (they held)' -Tag 'Security', 'Round24Counts' {
    BeforeEach { $script:t = Start-ImgTarget }
    AfterEach { Stop-ImgTarget $t }

    # Exact: the counts of samples 1-3 in the region (and where it moved to), the target's changes made after sample 1.
    It 'a <Method> watch: <Case>' -ForEach @(
        foreach ($m in 'Hash', 'WriteProtect') {
            foreach ($c in @(
                    @{ Case = 'writes into pages shared copy-on-write with a waiting child forked before the watch'; Counts = '0,4,0' }
                    @{ Case = 'a fork, then writes into pages shared copy-on-write with the child, then more after the next sample'; Counts = '0,4,2' }
                    @{ Case = 'a fork, writes, and the child killed, all between two samples'; Counts = '0,4,0' }
                    @{ Case = 'the whole mapping replaced by zeros with MAP_FIXED'; Counts = '0,16,0' }
                    @{ Case = 'half the mapping replaced by zeros with MAP_FIXED'; Counts = '0,8,0' }
                    @{ Case = 'the mapping moved with mremap'; Counts = '0,0,0'; Moved = '0,16,0' }
                    @{ Case = 'a memfd not mapped truncated by 4 pages'; Counts = '0,4,0' }
                    @{ Case = 'a memfd not mapped with 4 pages punched out by another process'; Counts = '0,4,0' }
                    @{ Case = 'a memfd not mapped rewritten with the bytes it holds'; Counts = '0,0,0' }
                )) { $c + @{ Method = $m; Skip = $(if ($m -eq 'WriteProtect') { $WtSkip }) } }
        }
    ) {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        if ($Case -like 'a memfd*') {
            $r = (Send-ImgTarget $t 'memfd 16 1') -split ' '
            $h = $r[0]; $fdHex = $r[1]; $fd = "/proc/$($t.Id)/fd/$([Convert]::ToInt32($fdHex, 16))"
        } else {
            $h = Send-ImgTarget $t 'map 16'
            $null = Send-ImgTarget $t "fill $h 16 3"
        }
        $region = New-Region $h 16
        if ($Case -like '*forked before the watch*') { $null = Send-ImgTarget $t 'forkhold' }
        $script:moved = $null
        $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Interval 0.2 -Count 3 -WarningAction SilentlyContinue | ForEach-Object {
                if ($_.Index -eq 1) {
                    switch -Wildcard ($Case) {
                        '*forked before the watch*' { $null = Send-ImgTarget $t "write $h 4 4" }
                        'a fork, then*' { $null = Send-ImgTarget $t 'forkhold'; $null = Send-ImgTarget $t "write $h 4 4" }
                        'a fork, writes*' { $null = Send-ImgTarget $t 'forkhold'; $null = Send-ImgTarget $t "write $h 4 4"; $null = Send-ImgTarget $t 'forkend' }
                        'the whole mapping*' { $null = Send-ImgTarget $t "fixed $h 16" }
                        'half the mapping*' { $null = Send-ImgTarget $t ('fixed {0:x} 8' -f ($region.Address + [uint64](4 * $PageSize))) }
                        '*moved with mremap' { $script:moved = New-Region (Send-ImgTarget $t "move $h 16") 16 }
                        '*truncated*' { $null = Send-ImgTarget $t "trunc $fdHex 12" }
                        '*punched*' { fallocate -p -o (4 * $PageSize) -l (4 * $PageSize) $fd; $LASTEXITCODE | Should -Be 0 }
                        '*rewritten*' {
                            $b = [byte[]]::new(4 * $PageSize)
                            $fs = [IO.File]::Open($fd, 'Open', 'ReadWrite', 'ReadWrite')
                            try { $fs.Position = 4 * $PageSize; $fs.ReadExactly($b, 0, $b.Length); $fs.Position = 4 * $PageSize; $fs.Write($b, 0, $b.Length) } finally { $fs.Dispose() }
                        }
                    }
                }
                if ($_.Index -eq 2 -and $Case -like 'a fork, then*') { $null = Send-ImgTarget $t "write $h 8 2" }
                $_
            })
        ($samples | ForEach-Object { Get-CountIn $_.Ranges $region }) -join ',' | Should -Be $Counts
        if ($Moved) { ($samples | ForEach-Object { Get-CountIn $_.Ranges $script:moved }) -join ',' | Should -Be $Moved -Because 'the pages now at the new place hold what the destination does not have there' }
        if ($Case -like 'a memfd*') { Get-PresentCount $t $region | Should -Be 0 -Because 'the watch read the memfd, never through the process' }
    }
}

Describe 'Round 24: an emulated fork whose other half writes shared memory this one never touched' -Tag 'Emulator', 'Security', 'Round24Counts' {
    # Found (wrong answer, and silent data loss in the emulator's images): the emulator models a fork's MAP_SHARED pages as
    # the kernel does (the fork copies no page table entry of a shared mapping), so pages the other half wrote are in the shared
    # object only. A watch of the one that never touched them counted 0 of 2 pages with every method, and its image held none
    # of them: valid, no warning, the restore zeros where Read-EmulatedMemory reads the other's bytes. Round 23 fixed this for
    # real processes (UnnamedObjectPages); an emulated process's objects are now read from the emulator, without a fault.
    BeforeEach {
        $script:parent = New-EmulatedProcess -Kernel 6.18 -Name r24-parent
        $script:m = $parent | Add-EmulatedMapping -Length 64KB -Shared
        $script:child = $parent | Copy-EmulatedProcess -Name r24-child
        $script:region = [pscustomobject]@{ Address = $m.Start; Pages = 16; Hex = '{0:x}' -f $m.Start }
    }

    It 'a <Method> watch of the <Watched> counts the 2 pages the other wrote' -ForEach @(
        foreach ($method in 'SoftDirty', 'WriteProtect', 'Hash') { @{ Method = $method; Watched = 'parent' }; @{ Method = $method; Watched = 'child' } }
    ) {
        $target, $writer = if ($Watched -eq 'parent') { $parent, $child } else { $child, $parent }
        @(Get-PageMap -Emulator $target -Address $m.Start -Length 64KB -Present).Count | Should -Be 0 -Because 'the case is pages the watched one does not map'
        $samples = @(Watch-DirtyPage -Emulator $target -Method $Method -Count 3 -Interval 1 -WarningAction SilentlyContinue | ForEach-Object {
                if ($_.Index -eq 1) { $writer | Write-EmulatedMemory -Address ($m.Start + 8KB) -Length 8KB }
                $_
            })
        ($samples | ForEach-Object { Get-CountIn $_.Ranges $region }) -join ',' | Should -Be '0,2,0'
    }

    It 'an image of the parent holds the pages the child wrote' {
        $child | Write-EmulatedMemory -Address ($m.Start + 8KB) -Length 8KB
        $image = New-Dest 'emu'
        $info = $parent | Save-MemoryImage -Path $image
        $info.UnreadablePages | Should -Be 0
        Test-MemoryImage -Path $image | Should -BeTrue
        @(Get-PageMap -Emulator $parent -Address $m.Start -Length 64KB -Present).Count | Should -Be 0 -Because 'the save faulted nothing in'
        $live = $parent | Read-EmulatedMemory -Address $m.Start -Length 64KB -AsByteArray
        $words = for ($p = 0; $p -lt 16; $p++) { [BitConverter]::ToUInt64($live, $p * 4096) }
        Get-RestoredRegionWords $image $region 4096 $root | Should -Be @($words)
        @($words | Where-Object { $_ -ne 0 }).Count | Should -Be 2 -Because 'the child wrote 2 pages'
    }
}
