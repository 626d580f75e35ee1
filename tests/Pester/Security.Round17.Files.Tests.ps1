#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, seventeenth attack round, on the memory-image side: memory that is not plain private anonymous (MAP_PRIVATE
# and MAP_SHARED mappings of files, memfds with and without seals, tmpfs, shmem transparent huge pages) changed between
# the saves of a chain by what is not a write of the target (MADV_DONTNEED, MADV_PAGEOUT, MADV_COLD, mremap, mprotect,
# write(2) by another process, holes punched, reads). New cases only (rounds 5-16 did truncation, extension, rename over,
# a punched hole and write(2) once each, lazily freed and reclaimed anonymous pages). Each chain of three images is
# restored and compared with a full image of the same moment, page by page with the live memory of the pages present,
# and restored into an emulated process. The rule (docs/Save-MemoryImage.md): a page of a file mapping that is not
# present is the file's and is in no image. Target: tests/native/imgtarget.c.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    # Shmem transparent huge pages: a tmpfs mounted with huge=always (root only, to mount), whatever shmem_enabled says
    # (it rules the kernel's internal mount, memfds, not a tmpfs mounted with huge=), unless it says deny.
    $ShmemEnabled = '/sys/kernel/mm/transparent_hugepage/shmem_enabled'
    $ThpShmemSkip = if (-not $IsLinux) { 'Linux only' } elseif ((id -u) -ne '0') { 'only root may mount a tmpfs with huge=always' }
    elseif (-not (Test-Path $ShmemEnabled)) { 'no transparent huge pages here' } elseif ((Get-Content $ShmemEnabled) -match '\[deny\]') { "shmem huge pages are denied ($ShmemEnabled)" }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r17f')
    chmod 0755 $TestDrive $root
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state17f'
    $script:PageSize = [Environment]::SystemPageSize
    # madvise(2) advice values (include/uapi/asm-generic/mman-common.h) and memfd seals (include/uapi/linux/fcntl.h).
    $script:MadvDontNeed = 4; $script:MadvCold = 20; $script:MadvPageout = 21; $script:MadvPopulateRead = 22
    $script:SealShrink = 0x2; $script:SealGrow = 0x4; $script:SealFutureWrite = 0x10
    function New-Dest([string] $Name = 'd') { Join-Path $root "$Name-$([guid]::NewGuid().ToString('n'))" }
    function Get-Bytes([int] $Seed, [int] $Length) { $r = [Random]::new($Seed); $b = [byte[]]::new($Length); $r.NextBytes($b); , $b }
    # Writes $Bytes at $Offset of the file with write(2) (another process than the target: this one).
    function Write-FileAt([string] $Path, [int64] $Offset, [byte[]] $Bytes) {
        $fs = [IO.File]::Open($Path, 'Open', 'ReadWrite', 'ReadWrite')
        try { $fs.Position = $Offset; $fs.Write($Bytes, 0, $Bytes.Length) } finally { $fs.Dispose() }
    }
    # A file of $Pages pages of random bytes written a page a write(2) (small folios in the page cache).
    function New-PageFile([string] $Folder, [int] $Pages, [int] $Seed) {
        $path = Join-Path $Folder "f-$([guid]::NewGuid().ToString('n')).bin"
        $fs = [IO.FileStream]::new($path, 'CreateNew', 'Write', 'None', 1)
        try { for ($i = 0; $i -lt $Pages; $i++) { $b = Get-Bytes ($Seed * 1000 + $i) $PageSize; $fs.Write($b, 0, $b.Length) } } finally { $fs.Dispose() }
        $path
    }
    # The restored pages of an image (chain) as address => SHA-256, from Restore-MemoryImage into files.
    function Get-PageHashes([string] $Image) {
        $h = @{}
        $sha = [Security.Cryptography.SHA256]::Create()
        foreach ($m in Restore-MemoryImage -Path $Image -Destination (New-Dest 'r')) {
            $b = [IO.File]::ReadAllBytes($m.File)
            for ($i = 0; $i -lt $b.Length; $i += $PageSize) { $h[[uint64]$m.Start + [uint64]$i] = [Convert]::ToHexString($sha.ComputeHash($b, $i, $PageSize)) }
        }
        $h
    }
    # The pages whose restored bytes differ between two hash tables, as "address: what" lines.
    function Compare-PageHashes($A, $B, [string] $NameA, [string] $NameB) {
        foreach ($k in @($A.Keys) + @($B.Keys) | Sort-Object -Unique) {
            if (-not $A.ContainsKey($k)) { '{0:x}: only {1}' -f $k, $NameB }
            elseif (-not $B.ContainsKey($k)) { '{0:x}: only {1}' -f $k, $NameA }
            elseif ($A[$k] -ne $B[$k]) { '{0:x}: {1} and {2} differ' -f $k, $NameA, $NameB }
        }
    }
    # The pages present in the target now, in its mappings of files and memfds that a restore holds ($Hashes), whose
    # restored bytes differ from the live memory read through /proc/PID/mem. (Anonymous memory is left to the full image:
    # the kernel writes the thread's rseq area, in an anonymous mapping, when a frozen target runs again.)
    function Compare-Live($Target, $Hashes) {
        $sha = [Security.Cryptography.SHA256]::Create()
        $buf = [byte[]]::new($PageSize)
        $mem = [IO.File]::Open("/proc/$($Target.Id)/mem", 'Open', 'Read', 'ReadWrite')
        try {
            foreach ($m in Get-MemoryMapping -Id $Target.Id) {
                if (-not $m.Path.StartsWith('/') -or -not $Hashes.ContainsKey([uint64]$m.Start)) { continue }
                foreach ($e in Get-PageMap -Id $Target.Id -Address $m.Start -Length ($m.End - $m.Start)) {
                    if (-not $e.Present) { continue }
                    $mem.Position = [int64]$e.Start
                    if ($mem.Read($buf, 0, $PageSize) -ne $PageSize) { '{0:x}: unreadable live' -f $e.Start; continue }
                    if ($Hashes[[uint64]$e.Start] -ne [Convert]::ToHexString($sha.ComputeHash($buf))) { '{0:x}: restored differs from the live page ({1})' -f $e.Start, $m.Path }
                }
            }
        } finally { $mem.Dispose() }
    }
    # Where page $Address of $Target is now: " (in <mapping>, <pagemap entry>)", for a failure's message.
    function Get-PageWhere($Target, [uint64] $Address) {
        $m = Get-MemoryMapping -Id $Target.Id | Where-Object { $Address -ge $_.Start -and $Address -lt $_.End } | Select-Object -First 1
        $e = Get-PageMap -Id $Target.Id -Address $Address -Length $PageSize -WarningAction SilentlyContinue | Select-Object -First 1
        " (in $(if ($m) { "$($m.Path) $($m.Permissions)" } else { 'no mapping' }), $(if ($e) { "present $($e.Present), flags $($e.Flags)" } else { 'no entry' }))"
    }
    # An image restored into an emulated process and saved from there: address => SHA-256 of its pages.
    function Get-EmulatorHashes([string] $Image) {
        $e = New-EmulatedProcess -Name restored
        $null = Restore-MemoryImage -Path $Image -Emulator $e
        $again = New-Dest 'e'
        $null = $e | Save-MemoryImage -Path $again -Method Hash
        Get-PageHashes $again
    }
    # Saves the moment as the next image of the chain ($Chain[-1] its parent) and as a full frozen image, and checks that
    # the chain restores what the full image restores, what the live process holds where a page is present, and what
    # a restore into an emulated process holds. Returns the differences, one a line.
    function Test-Moment($Target, [System.Collections.Generic.List[string]] $Chain, [string] $Method, [string] $Step) {
        $next = New-Dest 'c'
        if ($Chain.Count) { $null = Save-MemoryImage -Id $Target.Id -Path $next -Parent $Chain[-1] -Method $Method -WarningAction SilentlyContinue }
        else { $null = Save-MemoryImage -Id $Target.Id -Path $next -Method $Method -WarningAction SilentlyContinue }
        $Chain.Add($next)
        $full = New-Dest 'full'
        $null = Save-MemoryImage -Id $Target.Id -Path $full -Method Hash -Freeze -WarningAction SilentlyContinue
        if (-not (Test-MemoryImage $next)) { "${Step}: Test-MemoryImage says the chain is not valid" }
        $c = Get-PageHashes $next; $f = Get-PageHashes $full
        # Each difference names the mapping that holds the page now and its pagemap entry (a rare unprivileged CI failure
        # named only the address: round 19's session could not tell a file page from an anonymous one).
        Compare-PageHashes $c $f 'chain' 'full' | ForEach-Object { "${Step}: $_$(Get-PageWhere $Target ([Convert]::ToUInt64(($_ -split ':')[0], 16)))" }
        Compare-Live $Target $c | ForEach-Object { "${Step}: $_" }
        $em = Get-EmulatorHashes $next
        # Page by page (the emulator merges adjacent anonymous mappings, so its files are cut otherwise).
        foreach ($k in $c.Keys) { if ($em[$k] -ne $c[$k]) { '{0}: {1:x}: restored into the emulator differs' -f $Step, $k } }
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 17: files and shared memory changed between the images of a chain (a real process)' -Tag 'Workflows', 'Security', 'Round17Files' {
    BeforeEach {
        $script:t = Start-ImgTarget
        $script:wtEnabled = $false
    }
    AfterEach {
        if ($wtEnabled) { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
        Stop-ImgTarget $t
    }

    It '<Case>, -Method <Method>: each increment restores what a full image of its moment restores and what the process holds' -ForEach @(
        foreach ($m in 'WriteProtect', 'Hash') {
            foreach ($c in @(
                    'a MAP_SHARED file read in: MADV_DONTNEED of some pages, then read again after a write(2)'
                    'a MAP_PRIVATE file, some pages copied: MADV_DONTNEED of copied and clean pages, then read again'
                    'a MAP_SHARED file read in: MADV_PAGEOUT and MADV_COLD, then some read again'
                    'a MAP_PRIVATE file never read at the parent: pages read in since, then some copied'
                    'a MAP_SHARED file moved by mremap, and a MAP_PRIVATE one with copied pages moved'
                    'a MAP_SHARED file made read-only and then PROT_NONE, rewritten with write(2)'
                    'a memfd mapped MAP_PRIVATE, some pages copied, rewritten with write(2), then sealed'
                    'a tmpfs file mapped MAP_SHARED and MAP_PRIVATE: holes punched, MADV_DONTNEED, written again'
                    'a MAP_SHARED file unlinked and a new file of the same name mapped at another offset'
                    'a file written in one write(2) (large folios) mapped MAP_SHARED and MAP_PRIVATE: part paged out, part dropped, part rewritten'
                    'shmem huge pages mapped MAP_SHARED and MAP_PRIVATE: a hole punched in one, write(2) into another, MADV_DONTNEED and MADV_PAGEOUT'
                )) { @{ Method = $m; Case = $c; WtSkip = $WtSkip; ThpShmemSkip = $ThpShmemSkip } }
        }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        if ($Case -like 'shmem huge*' -and $ThpShmemSkip) { Set-ItResult -Skipped -Because $ThpShmemSkip; return }
        $anon = Send-ImgTarget $t 'map 8'
        $null = Send-ImgTarget $t "fill $anon 8 3"
        $steps = @()
        $folder = if ($Case -like 'a tmpfs*') { New-Item -ItemType Directory (Join-Path /dev/shm "r17f-$([guid]::NewGuid().ToString('n'))") }
        elseif ($Case -like 'shmem huge*') {
            $mnt = New-Item -ItemType Directory (New-Dest 'huge')
            mount -t tmpfs -o 'huge=always,size=32m' r17huge $mnt.FullName; $LASTEXITCODE | Should -Be 0
            $mnt
        } else { $root }
        try {
            switch -Wildcard ($Case) {
                'a MAP_SHARED file read in*' {
                    $file = New-PageFile $folder 16 1
                    $map = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "touch $map 0 16"; $null = Send-ImgTarget $t "write $map 0 2"
                   
                    if ($Case -like '*DONTNEED*') {
                        $steps = @(
                            { $null = Send-ImgTarget $t "madvise $map 2 6 $MadvDontNeed" }
                            { Write-FileAt $file (3 * $PageSize) (Get-Bytes 9 (2 * $PageSize)); $null = Send-ImgTarget $t "touch $map 2 4" }
                        )
                    } else {
                        $steps = @(
                            { $null = Send-ImgTarget $t "madvise $map 0 8 $MadvPageout"; $null = Send-ImgTarget $t "madvise $map 8 8 $MadvCold" }
                            { $null = Send-ImgTarget $t "touch $map 4 2"; $null = Send-ImgTarget $t "madvise $map 10 4 $MadvPageout" }
                        )
                    }
                }
                'a MAP_PRIVATE file, some pages copied*' {
                    $file = New-PageFile $folder 16 2
                    $map = Send-ImgTarget $t "mapfile $file 16 0"; $null = Send-ImgTarget $t "touch $map 0 16"; $null = Send-ImgTarget $t "write $map 0 8"
                   
                    $steps = @(
                        { $null = Send-ImgTarget $t "madvise $map 4 8 $MadvDontNeed" }
                        { Write-FileAt $file (5 * $PageSize) (Get-Bytes 8 $PageSize); $null = Send-ImgTarget $t "touch $map 4 8" }
                    )
                }
                'a MAP_PRIVATE file never read*' {
                    $file = New-PageFile $folder 16 3
                    $map = Send-ImgTarget $t "mapfile $file 16 0"
                   
                    $steps = @(
                        { $null = Send-ImgTarget $t "touch $map 0 6"; $null = Send-ImgTarget $t "madvise $map 8 4 $MadvPopulateRead" }
                        { $null = Send-ImgTarget $t "write $map 2 4"; Write-FileAt $file (9 * $PageSize) (Get-Bytes 7 $PageSize) }
                    )
                }
                'a MAP_SHARED file moved*' {
                    $file = New-PageFile $folder 16 4
                    $file2 = New-PageFile $folder 16 5
                    $ms = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "touch $ms 0 16"
                    $mp = Send-ImgTarget $t "mapfile $file2 16 0"; $null = Send-ImgTarget $t "touch $mp 0 16"; $null = Send-ImgTarget $t "write $mp 0 6"
                    $steps = @(
                        { $ms = Send-ImgTarget $t "move $ms 16"; $mp = Send-ImgTarget $t "move $mp 16" }
                        { $null = Send-ImgTarget $t "write $mp 8 2"; $null = Send-ImgTarget $t "write $ms 1 2"; $mp = Send-ImgTarget $t "move $mp 16" }
                    )
                }
                'a MAP_SHARED file made read-only*' {
                    $file = New-PageFile $folder 16 6
                    $map = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "touch $map 0 16"; $null = Send-ImgTarget $t "write $map 0 4"
                   
                    $steps = @(
                        { $null = Send-ImgTarget $t "protect $map 16 1"; Write-FileAt $file (2 * $PageSize) (Get-Bytes 6 (4 * $PageSize)) }
                        { $null = Send-ImgTarget $t "protect $map 16 0"; Write-FileAt $file (8 * $PageSize) (Get-Bytes 5 (4 * $PageSize)) }
                    )
                }
                'a memfd*' {
                    $r = (Send-ImgTarget $t 'memfd 16 0') -split ' '
                    $map = $r[0]; $memfd = "/proc/$($t.Id)/fd/$([Convert]::ToInt32($r[1], 16))"
                    $null = Send-ImgTarget $t "touch $map 0 16"; $null = Send-ImgTarget $t "write $map 0 4"
                   
                    $steps = @(
                        { Write-FileAt $memfd (2 * $PageSize) (Get-Bytes 4 (6 * $PageSize)); $null = Send-ImgTarget $t "seal $($r[1]) $($SealShrink -bor $SealGrow -bor $SealFutureWrite)" }
                        { $null = Send-ImgTarget $t "write $map 6 2"; $null = Send-ImgTarget $t "madvise $map 8 4 $MadvDontNeed" }
                    )
                }
                'a tmpfs file*' {
                    $file = New-PageFile $folder 16 7
                    $ms = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "write $ms 0 16"
                    $mp = Send-ImgTarget $t "mapfile $file 16 0"; $null = Send-ImgTarget $t "touch $mp 0 16"; $null = Send-ImgTarget $t "write $mp 0 3"
                   
                    $steps = @(
                        {
                            fallocate --punch-hole --keep-size --offset (2 * $PageSize) --length (4 * $PageSize) $file; $LASTEXITCODE | Should -Be 0
                            $null = Send-ImgTarget $t "madvise $ms 10 2 $MadvDontNeed"
                        }
                        { $null = Send-ImgTarget $t "write $ms 3 1"; $null = Send-ImgTarget $t "touch $mp 0 16"; $null = Send-ImgTarget $t "madvise $mp 0 2 $MadvDontNeed" }
                    )
                }
                'a file written in one write(2)*' {
                    $file = Join-Path $folder "big-$([guid]::NewGuid().ToString('n'))"
                    [IO.File]::WriteAllBytes($file, (Get-Bytes 14 (1024 * $PageSize)))
                    $ms = Send-ImgTarget $t "mapfile $file 1024 1"; $null = Send-ImgTarget $t "touch $ms 0 1024"
                    $mp = Send-ImgTarget $t "mapat $file 512 0 256"; $null = Send-ImgTarget $t "touch $mp 0 512"; $null = Send-ImgTarget $t "write $mp 3 5"
                    $steps = @(
                        {
                            $null = Send-ImgTarget $t "madvise $ms 100 300 $MadvPageout"; $null = Send-ImgTarget $t "madvise $mp 0 64 $MadvPageout"
                            $null = Send-ImgTarget $t "madvise $ms 600 50 $MadvDontNeed"; $null = Send-ImgTarget $t "madvise $mp 200 100 $MadvCold"
                        }
                        {
                            Write-FileAt $file (300 * $PageSize) (Get-Bytes 15 (20 * $PageSize))
                            $null = Send-ImgTarget $t "touch $ms 200 200"; $null = Send-ImgTarget $t "write $mp 40 30"; $null = Send-ImgTarget $t "madvise $mp 100 50 $MadvDontNeed"
                        }
                    )
                }
                'shmem huge*' {
                    $per = [int]([uint64](Get-Content /sys/kernel/mm/transparent_hugepage/hpage_pmd_size) / $PageSize)
                    $file = Join-Path $folder 'huge'
                    $fs = [IO.File]::Create($file); $fs.SetLength(2 * $per * $PageSize); $fs.Dispose()
                    $ms = Send-ImgTarget $t "mapfile $file $(2 * $per) 1"; $null = Send-ImgTarget $t "fill $ms $(2 * $per) 9"
                    $mp = Send-ImgTarget $t "mapfile $file $(2 * $per) 0"; $null = Send-ImgTarget $t "touch $mp 0 $(2 * $per)"; $null = Send-ImgTarget $t "write $mp 1 3"
                    $huge = @(Search-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($ms, 16)) -Length (2 * $per * $PageSize) | Where-Object { $_.Categories -band [SoftDirty.PageCategory]::Huge })
                    if (-not $huge) { Set-ItResult -Skipped -Because 'the kernel mapped no huge page of the tmpfs file (no free 2 MiB block, or an unaligned mapping)'; return }
                    $steps = @(
                        {
                            fallocate --punch-hole --keep-size --offset (5 * $PageSize) --length (2 * $PageSize) $file; $LASTEXITCODE | Should -Be 0
                            Write-FileAt $file (($per + 7) * $PageSize) (Get-Bytes 13 (3 * $PageSize))
                            $null = Send-ImgTarget $t "madvise $mp 0 $per $MadvDontNeed"
                        }
                        { $null = Send-ImgTarget $t "write $ms $($per + 1) 2"; $null = Send-ImgTarget $t "madvise $ms $per $per $MadvPageout"; $null = Send-ImgTarget $t "touch $mp 0 8" }
                    )
                }
                'a MAP_SHARED file unlinked*' {
                    $file = New-PageFile $folder 16 8
                    $map = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "touch $map 0 16"
                   
                    $steps = @(
                        {
                            Remove-Item -LiteralPath $file
                            [IO.File]::WriteAllBytes($file, (Get-Bytes 11 (16 * $PageSize)))
                            $m2 = Send-ImgTarget $t "mapat $file 8 1 4"; $null = Send-ImgTarget $t "touch $m2 0 8"
                        }
                        { Write-FileAt $file (5 * $PageSize) (Get-Bytes 12 $PageSize); $null = Send-ImgTarget $t "write $map 3 1" }
                    )
                }
            }
            if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id; $script:wtEnabled = $true }
            $chain = [System.Collections.Generic.List[string]]::new()
            $problems = @(Test-Moment $t $chain $Method 'full')
            $i = 0
            foreach ($step in $steps) {
                $i++
                . $step
                $problems += @(Test-Moment $t $chain $Method "increment $i")
            }
            $problems | Should -BeNullOrEmpty -Because "$Case ($Method)"
        } finally {
            if ($Case -like 'a tmpfs*') { Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction SilentlyContinue }
            if ($Case -like 'shmem huge*') { Stop-ImgTarget $t; umount $folder.FullName }
        }
    }

    It 'a <Method> migration: files and a memfd changed after its first live round are in its final image as in a full image of that moment' -ForEach @(
        @{ Method = 'WriteProtect'; WtSkip = $WtSkip }, @{ Method = 'Hash'; WtSkip = $null }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $shared = New-PageFile $root 16 21
        $private = New-PageFile $root 16 22
        $ms = Send-ImgTarget $t "mapfile $shared 16 1"; $null = Send-ImgTarget $t "touch $ms 0 16"
        $mp = Send-ImgTarget $t "mapfile $private 16 0"; $null = Send-ImgTarget $t "touch $mp 0 8"; $null = Send-ImgTarget $t "write $mp 0 4"
        $r = (Send-ImgTarget $t 'memfd 16 0') -split ' '
        $mf = $r[0]; $memfd = "/proc/$($t.Id)/fd/$([Convert]::ToInt32($r[1], 16))"
        $null = Send-ImgTarget $t "touch $mf 0 16"; $null = Send-ImgTarget $t "write $mf 0 2"
        $done = $false
        $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Destination (New-Dest 'm') -Bandwidth 4MB -MaxIterations 3 -StopThreshold 0 -WarningAction SilentlyContinue | ForEach-Object {
                if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                    $done = $true
                    $null = Send-ImgTarget $t "madvise $ms 2 6 $MadvDontNeed"
                    Write-FileAt $shared (4 * $PageSize) (Get-Bytes 23 (4 * $PageSize))
                    $null = Send-ImgTarget $t "touch $ms 4 2"
                    $null = Send-ImgTarget $t "madvise $mp 0 8 $MadvDontNeed"
                    Write-FileAt $private (8 * $PageSize) (Get-Bytes 24 (4 * $PageSize))
                    $null = Send-ImgTarget $t "touch $mp 8 8"
                    $null = Send-ImgTarget $t "move $mp 16"
                    Write-FileAt $memfd (6 * $PageSize) (Get-Bytes 25 (4 * $PageSize))
                    $null = Send-ImgTarget $t "madvise $mf 0 4 $MadvDontNeed"
                }
                $_
            })
        $done | Should -BeTrue -Because 'a live round ran'
        $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
        Test-MemoryImage -Path $final | Should -BeTrue
        $now = New-Dest 'now'
        $null = Save-MemoryImage -Id $t.Id -Path $now -Method Hash
        # The mappings of files and the memfd alone: as the stop-and-copy round resumes the target, the kernel may write its rseq area.
        $c = Get-PageHashes $final; $f = Get-PageHashes $now
        $files = @(Get-MemoryMapping -Id $t.Id | Where-Object { $_.Path.StartsWith('/') })
        $problems = @(Compare-PageHashes $c $f 'final' 'full' | Where-Object {
                $a = [Convert]::ToUInt64(($_ -split ':')[0], 16); @($files | Where-Object { $_.Start -le $a -and $a -lt $_.End }).Count })
        $problems += @(Compare-Live $t $c)
        $problems | Should -BeNullOrEmpty
    }

    It 'a <Method> migration of a file mapping named by -Mapping, the file renamed after the first live round: the final image holds the mapping and the writes since' -ForEach @(
        @{ Method = 'WriteProtect'; WtSkip = $WtSkip }, @{ Method = 'Hash'; WtSkip = $null }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $folder = New-Item -ItemType Directory (New-Dest 'sel')
        $file = New-PageFile $folder 16 31
        $renamed = Join-Path $folder 'renamed.bin'
        $m = Send-ImgTarget $t "mapfile $file 16 0"; $null = Send-ImgTarget $t "touch $m 0 16"; $null = Send-ImgTarget $t "write $m 0 4"
        $done = $false
        $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Destination (New-Dest 'm') -Bandwidth 4MB -MaxIterations 3 -StopThreshold 0 -Mapping (Split-Path -Leaf $file) | ForEach-Object {
                if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                    $done = $true
                    Move-Item -LiteralPath $file -Destination $renamed
                    $null = Send-ImgTarget $t "write $m 6 4"
                }
                $_
            })
        $done | Should -BeTrue -Because 'a live round ran'
        $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
        Test-MemoryImage -Path $final | Should -BeTrue
        $now = New-Dest 'now'
        $null = Save-MemoryImage -Id $t.Id -Path $now -Method Hash -Mapping 'renamed.bin'
        # Before the fix the rounds after the rename selected nothing: the final image had no mapping, Converged with 0 dirty pages.
        @(Get-MemoryImage $final)[-1].MappingCount | Should -Be 1 -Because 'the final image, not its parent'
        $c = Get-PageHashes $final
        Compare-PageHashes $c (Get-PageHashes $now) 'final' 'full' | Should -BeNullOrEmpty
        Compare-Live $t $c | Should -BeNullOrEmpty
    }

    It 'Watch-DirtyPage -Method <Method> of a file mapping named by -Mapping, the file renamed after the first sample: the next sample counts the pages written since' -ForEach @(
        @{ Method = 'WriteProtect'; WtSkip = $WtSkip }, @{ Method = 'Hash'; WtSkip = $null }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $folder = New-Item -ItemType Directory (New-Dest 'watch')
        $file = New-PageFile $folder 16 32
        $m = Send-ImgTarget $t "mapfile $file 16 0"; $null = Send-ImgTarget $t "touch $m 0 16"; $null = Send-ImgTarget $t "write $m 0 4"
        $first = $true
        $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Mapping (Split-Path -Leaf $file) -Count 2 -Interval 0.2 | ForEach-Object {
                if ($first) {
                    $first = $false
                    Move-Item -LiteralPath $file -Destination (Join-Path $folder 'renamed.bin')
                    $null = Send-ImgTarget $t "write $m 6 4"
                }
                $_
            })
        # Before the fix the sample after the rename selected nothing and counted 0 pages.
        $samples[-1].DirtyPages | Should -BeGreaterOrEqual 4
    }

    It 'a memfd the target mapped and closed, truncated through another process''s descriptor under write tracking: the increment and a full image are valid without a warning and restore alike' -Skip:([bool]$WtSkip) {
        $r = (Send-ImgTarget $t 'memfd 16 1') -split ' '
        $held = [IO.File]::Open("/proc/$($t.Id)/fd/$([Convert]::ToInt32($r[1], 16))", 'Open', 'ReadWrite', 'ReadWrite')
        try {
            $null = Send-ImgTarget $t "close $($r[1])"
            $null = Send-ImgTarget $t "touch $($r[0]) 0 16"
            $null = Enable-WriteTracking -Id $t.Id; $script:wtEnabled = $true
            $chain = New-Dest 'c'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method WriteProtect
            $held.SetLength(8 * $PageSize)
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect -WarningVariable incWarnings
            $full = New-Dest 'full'
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash -WarningVariable fullWarnings
            # Whether this user may open the memfd through /proc/PID/map_files (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE).
            $range = '{0}-{1:x}' -f $r[0], ([Convert]::ToUInt64($r[0], 16) + 16 * $PageSize)
            $mapFiles = try { [IO.File]::OpenRead("/proc/$($t.Id)/map_files/$range").Dispose(); $true } catch { $false }
        } finally { $held.Dispose() }
        # Before the fix, unprivileged (no /proc/PID/map_files, and the target holds no descriptor of the memfd), the uffd-wp
        # markers of the 8 pages truncated away were read, failed, and counted: both saves warned "8 present page(s) ... could
        # not be read" and neither image was valid, nor any later one.
        if ($mapFiles) {
            @($incWarnings) + @($fullWarnings) | Should -BeNullOrEmpty
            Test-MemoryImage "$chain/1" | Should -BeTrue
            Test-MemoryImage $full | Should -BeTrue
        } else {
            # Since round 23 the pages of a memfd that the process does not map are read from the memfd: a user who cannot
            # open it cannot tell the 8 pages truncated away from 8 that hold data, so both saves say they may lack them.
            @($incWarnings) + @($fullWarnings) | Should -HaveCount 2
            @($incWarnings) + @($fullWarnings) | ForEach-Object { "$_" | Should -BeLike '*8 page(s) of memory that ends with process*' }
            Test-MemoryImage "$chain/1" | Should -BeFalse
            Test-MemoryImage $full | Should -BeFalse
        }
        Compare-PageHashes (Get-PageHashes "$chain/1") (Get-PageHashes $full) 'chain' 'full' | Should -BeNullOrEmpty
    }
}
