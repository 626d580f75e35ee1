#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-third attack round, on shared memory whose contents end with the process: memfds (sealed too), System V
# segments (removed while attached too), shared anonymous memory, files deleted while mapped (on tmpfs too). A real process,
# tests/native/imgtarget.c.
# Found (silent data loss): the pages of such an object that the process does not map now (never touched by it, written by
# another process or with write(2), unmapped by MADV_DONTNEED) were in no image: the rule "a page of a file mapping that is
# not present is the file's" held them for the file's, but these objects have no file that outlives the process. The image
# was valid, with no warning, and the restore gave zeros where the object held data: 8 of 8 pages differed in each of 9 cases,
# root and unprivileged. Now the save reads such pages from the object (/proc/PID/map_files, or a descriptor the process holds:
# pread, holes left out, nothing faulted into the process); where the object cannot be opened (unprivileged, no descriptor)
# they count as unreadable: the save warns, and Test-MemoryImage says the image is incomplete. Every case below failed before.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r23s')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state23s'
    $script:PageSize = [Environment]::SystemPageSize
    $script:MadvDontNeed = 4
    # memfd seals (include/uapi/linux/fcntl.h): F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_FUTURE_WRITE (F_SEAL_WRITE is refused while
    # a writable shared mapping exists).
    $script:SealAll = 0x2 -bor 0x4 -bor 0x10
    function New-Dest([string] $Name = 'd') { Join-Path $root "$Name-$([guid]::NewGuid().ToString('n'))" }
    function New-Region([string] $Hex, [int] $Pages) { [pscustomobject]@{ Address = [Convert]::ToUInt64($Hex, 16); Pages = $Pages; Hex = $Hex } }
    # Whether this user can open the object of the target's mapping at $Region through /proc/PID/map_files (measured: it needs
    # CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
    function Test-MapFiles($Target, $Region) {
        $m = Get-MemoryMapping -Id $Target.Id | Where-Object { $_.Start -le $Region.Address -and $Region.Address -lt $_.End } | Select-Object -First 1
        try { [IO.File]::OpenRead(('/proc/{0}/map_files/{1:x}-{2:x}' -f $Target.Id, $m.Start, $m.End)).Dispose(); $true } catch { $false }
    }
    # The pages of $Region present in the target now (pagemap), to show that the case is what it says: none of them.
    function Get-PresentCount($Target, $Region) { @(Get-PageMap -Id $Target.Id -Address $Region.Address -Length ($Region.Pages * $PageSize) -Present).Count }
    # Writes $Pages pages of new bytes at page $Index of the file with write(2): another process than the target (this one).
    function Write-Pages([string] $Path, [int] $Index, [int] $Pages, [int] $Seed) {
        $b = [byte[]]::new($Pages * $PageSize); [Random]::new($Seed).NextBytes($b)
        for ($i = 0; $i -lt $Pages; $i++) { $b[$i * $PageSize] = $b[$i * $PageSize] -bor 1 }
        $fs = [IO.File]::Open($Path, 'Open', 'ReadWrite', 'ReadWrite')
        try { $fs.Position = [int64]$Index * $PageSize; $fs.Write($b, 0, $b.Length) } finally { $fs.Dispose() }
    }
    # Saves $Target (full, or over -Parent), and asserts the image is exact for $Region (each page's first word as
    # /proc/PID/mem reads it after the save) where the object can be read ($Readable), else that it says what it lacks:
    # a warning naming the memory, UnreadablePages, and Test-MemoryImage not valid. Never valid and different.
    # $AfterSave runs after the save, before /proc/PID/mem is read (which faults every page of the region in).
    function Assert-Saved($Target, $Region, [string] $Image, [bool] $Readable, [string] $Because, [hashtable] $More = @{}, [scriptblock] $AfterSave = {}) {
        $w = $null
        $info = Save-MemoryImage -Id $Target.Id -Path $Image @More -WarningVariable w -WarningAction SilentlyContinue
        & $AfterSave
        $valid = Test-MemoryImage -Path $Image
        $restored = @(Get-RestoredRegionWords $Image $Region $PageSize $root)
        $live = @(Get-LiveRegionWords $Target.Id $Region $PageSize)
        if ($Readable) {
            $restored | Should -Be $live -Because "the object's pages are in the image ($Because)"
            $info.UnreadablePages | Should -Be 0 -Because $Because
            $valid | Should -BeTrue -Because $Because
        } else {
            $info.UnreadablePages | Should -BeGreaterOrEqual $Region.Pages -Because "pages it could not read are counted ($Because)"
            $valid | Should -BeFalse -Because "an image that lacks pages is not valid ($Because)"
            ($w | Where-Object { "$_" -like '*memory that ends with process*not mapped in the process now*' }) | Should -Not -BeNullOrEmpty -Because "the save says what it lacks ($Because)"
        }
        $info
    }
}

Describe 'Round 23: pages of memory that ends with the process, not mapped in it, in a full image' -Tag 'Security', 'Round23Shared' {
    BeforeEach { $script:t = Start-ImgTarget }
    AfterEach { Stop-ImgTarget $t }

    It '<Case>' -ForEach @(
        @{ Case = 'a memfd mapped MAP_SHARED, filled through another mapping, never touched (the target holds its descriptor)'; Route = 'descriptor' }
        @{ Case = 'a memfd mapped MAP_PRIVATE, filled through another mapping, never touched (the target holds its descriptor)'; Route = 'descriptor' }
        @{ Case = 'a memfd mapped MAP_SHARED, written only with write(2) on its descriptor'; Route = 'descriptor' }
        @{ Case = 'a memfd mapped MAP_SHARED, written through the mapping, then MADV_DONTNEED'; Route = 'descriptor' }
        @{ Case = 'a sealed memfd (shrink, grow, write), never touched'; Route = 'descriptor' }
        @{ Case = 'a sparse memfd: 2 of 64 pages written with write(2) by another process, never touched'; Route = 'descriptor' }
        @{ Case = 'a System V segment, written, then MADV_DONTNEED'; Route = 'map_files' }
        @{ Case = 'a System V segment removed (IPC_RMID) while attached, written, then MADV_DONTNEED'; Route = 'map_files' }
        @{ Case = 'shared anonymous memory written only by a forked child'; Route = 'map_files' }
        @{ Case = 'shared anonymous memory named with PR_SET_VMA_ANON_NAME ([anon_shmem:NAME]), written, then MADV_DONTNEED'; Route = 'map_files' }
        @{ Case = 'a file of /dev/shm mapped MAP_SHARED, written, unlinked, then MADV_DONTNEED'; Route = 'map_files' }
        @{ Case = 'a file mapped MAP_SHARED, written, unlinked, then MADV_DONTNEED'; Route = 'map_files' }
        @{ Case = 'a memfd of huge pages (MFD_HUGETLB) mapped MAP_SHARED, never touched'; Route = 'descriptor' }
    ) {
        $pages = 8
        switch -Wildcard ($Case) {
            'a memfd mapped MAP_SHARED, filled*' { $region = New-Region ((Send-ImgTarget $t "memfd $pages 1") -split ' ')[0] $pages }
            'a memfd mapped MAP_PRIVATE*' { $region = New-Region ((Send-ImgTarget $t "memfd $pages 0") -split ' ')[0] $pages }
            'a memfd mapped MAP_SHARED, written only*' { $r = (Send-ImgTarget $t "shm $pages") -split ' '; $null = Send-ImgTarget $t "pwrite $($r[1]) 0 $pages"; $region = New-Region $r[0] $pages }
            'a memfd mapped MAP_SHARED, written through*' { $r = (Send-ImgTarget $t "shm $pages") -split ' '; $null = Send-ImgTarget $t "fill $($r[0]) $pages 3"; $null = Send-ImgTarget $t "dontneed $($r[0]) 0 $pages"; $region = New-Region $r[0] $pages }
            'a sealed memfd*' { $r = (Send-ImgTarget $t "memfd $pages 1") -split ' '; $null = Send-ImgTarget $t "seal $($r[1]) $SealAll"; $region = New-Region $r[0] $pages }
            'a sparse memfd*' {
                $pages = 64
                $r = (Send-ImgTarget $t "shm $pages") -split ' '
                $fd = "/proc/$($t.Id)/fd/$([Convert]::ToInt32($r[1], 16))"
                Write-Pages $fd 5 1 51; Write-Pages $fd 40 1 52
                $region = New-Region $r[0] $pages
                $blocks = (stat -L -c %b $fd)
            }
            'a System V segment, written*' { $r = (Send-ImgTarget $t "sysvshm $pages 0") -split ' '; $null = Send-ImgTarget $t "dontneed $($r[0]) 0 $pages"; $region = New-Region $r[0] $pages; $shmid = $r[1] }
            'a System V segment removed*' { $r = (Send-ImgTarget $t "sysvshm $pages 1") -split ' '; $null = Send-ImgTarget $t "dontneed $($r[0]) 0 $pages"; $region = New-Region $r[0] $pages }
            'shared anonymous memory written only*' { $a = Send-ImgTarget $t "mapx $pages 1"; $null = Send-ImgTarget $t "childwrite $a 0 $pages"; $region = New-Region $a $pages }
            'shared anonymous memory named*' {
                $a = Send-ImgTarget $t "mapx $pages 1"
                $line = Send-ImgTargetProbe $t "name $a $pages r23"
                if ($line -ne 'OK') { Set-ItResult -Skipped -Because "PR_SET_VMA_ANON_NAME is refused here ($line)"; return }
                if (-not (Get-MemoryMapping -Id $t.Id | Where-Object { $_.Path -eq '[anon_shmem:r23]' })) { Set-ItResult -Skipped -Because 'this kernel does not name shared anonymous memory (Linux 6.2+)'; return }
                $null = Send-ImgTarget $t "fill $a $pages 3"; $null = Send-ImgTarget $t "dontneed $a 0 $pages"; $region = New-Region $a $pages
            }
            '*file*unlinked*' {
                $folder = if ($Case -like '*/dev/shm*') { '/dev/shm' } else { $root }
                if (-not (Test-Path $folder)) { Set-ItResult -Skipped -Because "no $folder here"; return }
                $f = Join-Path $folder "r23-$([guid]::NewGuid().ToString('n'))"
                [IO.File]::WriteAllBytes($f, [byte[]]::new($pages * $PageSize))
                $a = Send-ImgTarget $t "mapfile $f $pages 1"
                $null = Send-ImgTarget $t "fill $a $pages 3"
                Remove-Item -LiteralPath $f
                $null = Send-ImgTarget $t "dontneed $a 0 $pages"
                $region = New-Region $a $pages
            }
            '*huge pages*' {
                $line = Send-ImgTargetProbe $t 'hugememfd 1'
                if ($line -notlike 'OK *') { Set-ItResult -Skipped -Because "a memfd of huge pages cannot be had here ($line; HugePages_Total $((Get-Content /proc/meminfo | Select-String 'HugePages_Total') -replace '\D', ''))"; return }
                $a, $null, $huge = $line.Substring(3).Trim() -split ' '
                $region = New-Region $a ([Convert]::ToInt32($huge, 16) / $PageSize)
            }
        }
        try {
            Get-PresentCount $t $region | Should -Be 0 -Because 'the case is pages the target does not map'
            $readable = ($Route -eq 'descriptor') -or (Test-MapFiles $t $region)
            $check = if ($blocks) { { stat -L -c %b $fd | Should -Be $blocks -Because 'the save read the memfd without filling its holes' } } else { {} }
            $null = Assert-Saved $t $region (New-Dest 'full') $readable $Case -AfterSave $check
        } finally { if ($shmid) { ipcrm -m $shmid 2>$null } }
    }

    It 'a save of sparse shared anonymous memory faults nothing into the process and fills no hole of the object' {
        $a = Send-ImgTarget $t 'mapx 256 1'
        $null = Send-ImgTarget $t "childwrite $a 3 2"
        $region = New-Region $a 256
        $before = Get-ProcStatusKb $t.Id 'RssShmem'
        $mapFiles = Test-MapFiles $t $region
        $image = New-Dest 'sparse'
        $info = Save-MemoryImage -Id $t.Id -Path $image -WarningAction SilentlyContinue
        Get-PresentCount $t $region | Should -Be 0 -Because 'the object was read with pread, not through the process'
        Get-ProcStatusKb $t.Id 'RssShmem' | Should -Be $before
        if (-not $mapFiles) { $info.UnreadablePages | Should -BeGreaterOrEqual 256; return }
        $info.UnreadablePages | Should -Be 0
        stat -L -c %b ('/proc/{0}/map_files/{1:x}-{2:x}' -f $t.Id, $region.Address, ($region.Address + [uint64](256 * $PageSize))) | Should -Be (2 * $PageSize / 512) -Because 'the object still holds only the two pages the child wrote'
        $first = New-Region $a 8
        Get-RestoredRegionWords $image $first $PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $first $PageSize)
    }
}

Describe 'Round 23: a program replaced on disk while it runs' -Tag 'Security', 'Round23Shared' {
    It 'the pages of its deleted executable that it does not map are in the image, read through /proc/PID/exe where map_files is refused' {
        $copy = Join-Path $root "imgtarget-$([guid]::NewGuid().ToString('n'))"
        Copy-Item -LiteralPath (Join-Path $PSScriptRoot '../native/bin/imgtarget') $copy
        chmod 0700 $copy
        $psi = [System.Diagnostics.ProcessStartInfo]::new($copy)
        $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
        $p = [System.Diagnostics.Process]::Start($psi)
        try {
            $p.StandardOutput.ReadLine() | Should -Match '^READY '
            $target = [pscustomobject]@{ Process = $p; Id = $p.Id }
            Remove-Item -LiteralPath $copy
            $mappings = @(Get-MemoryMapping -Id $p.Id | Where-Object { $_.Deleted -and $_.Path -eq $copy })
            $mappings.Count | Should -BeGreaterThan 0
            # Its read-only pages unmapped (MADV_DONTNEED: they read the file again); its written data stays.
            foreach ($m in $mappings | Where-Object { $_.Permissions -notlike '?w*' }) { $null = Send-ImgTarget $target ('madvise {0:x} 0 {1} {2}' -f $m.Start, (($m.End - $m.Start) / $PageSize), $MadvDontNeed) }
            $absent = 0
            foreach ($m in $mappings) { $absent += [int](($m.End - $m.Start) / $PageSize) - @(Get-PageMap -Id $p.Id -Address $m.Start -Length ($m.End - $m.Start) -Present).Count }
            if ($absent -eq 0) { Set-ItResult -Skipped -Because 'every page of the program is mapped in it: nothing to take from the file'; return }
            $image = New-Dest 'exe'
            $info = Save-MemoryImage -Id $p.Id -Path $image -WarningAction SilentlyContinue
            $info.UnreadablePages | Should -Be 0
            Test-MemoryImage -Path $image | Should -BeTrue
            foreach ($m in $mappings) {
                $region = [pscustomobject]@{ Address = $m.Start; Pages = [int](($m.End - $m.Start) / $PageSize); Hex = '{0:x}' -f $m.Start }
                Get-RestoredRegionWords $image $region $PageSize $root | Should -Be @(Get-LiveRegionWords $p.Id $region $PageSize) -Because "$m ($absent page(s) of the program not mapped at the save)"
            }
        } finally { if (-not $p.HasExited) { $p.Kill(); $p.WaitForExit(5000) | Out-Null } }
    }
}

Describe 'Round 23: increments and migrations of a memfd that another process writes where the target does not map it' -Tag 'Security', 'Round23Shared' {
    BeforeEach {
        $script:t = Start-ImgTarget
        $r = (Send-ImgTarget $t 'memfd 16 1') -split ' '
        $script:region = New-Region $r[0] 16
        $script:memfd = "/proc/$($t.Id)/fd/$([Convert]::ToInt32($r[1], 16))"
    }
    AfterEach { Stop-ImgTarget $t }

    It 'a <Method> chain: pages written with write(2) by another process between the images restore as the memfd holds them' -ForEach @(
        @{ Method = 'Hash'; WtSkip = $null }, @{ Method = 'WriteProtect'; WtSkip = $WtSkip }
    ) {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $chain = New-Dest 'c'
        $null = Assert-Saved $t $region "$chain/0" $true "full image ($Method)" @{ Method = $Method }
        Write-Pages $memfd 2 3 61
        $null = Send-ImgTarget $t "touch $($region.Hex) 8 2"
        $null = Send-ImgTarget $t "dontneed $($region.Hex) 8 1"
        $null = Assert-Saved $t $region "$chain/1" $true "increment 1 ($Method)" @{ Method = $Method; Parent = "$chain/0" }
        $null = Send-ImgTarget $t "dontneed $($region.Hex) 0 16"
        Write-Pages $memfd 9 4 62
        $null = Assert-Saved $t $region "$chain/2" $true "increment 2 ($Method)" @{ Method = $Method; Parent = "$chain/1" }
        $full = New-Dest 'f'
        $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash -WarningAction SilentlyContinue
        Get-RestoredRegionWords "$chain/2" $region $PageSize $root | Should -Be @(Get-RestoredRegionWords $full $region $PageSize $root) -Because 'the chain restores what a full image of that moment does'
    }

    It 'a <Method> migration: pages another process writes into the memfd after its first live round are in its final image' -ForEach @(
        @{ Method = 'Hash'; WtSkip = $null }, @{ Method = 'WriteProtect'; WtSkip = $WtSkip }
    ) {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $done = $false
        $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Destination (New-Dest 'm') -Bandwidth 4MB -MaxIterations 3 -StopThreshold 0 -WarningAction SilentlyContinue | ForEach-Object {
                if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                    $done = $true
                    Write-Pages $memfd 4 6 71
                }
                $_
            })
        $done | Should -BeTrue -Because 'a live round ran'
        $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
        Test-MemoryImage -Path $final | Should -BeTrue
        Get-PresentCount $t $region | Should -Be 0 -Because 'the target never mapped the pages'
        Get-RestoredRegionWords $final $region $PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $region $PageSize)
    }
}
