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
        Compare-PageHashes $c $f 'chain' 'full' | ForEach-Object { "${Step}: $_" }
        Compare-Live $Target $c | ForEach-Object { "${Step}: $_" }
        $em = Get-EmulatorHashes $next
        # The emulator merges adjacent anonymous mappings: compared page by page where the chain has the page.
        foreach ($k in $c.Keys) { if ($em.ContainsKey($k) -and $em[$k] -ne $c[$k]) { '{0}: {1:x}: restored into the emulator differs' -f $Step, $k } }
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
                )) { @{ Method = $m; Case = $c; WtSkip = $WtSkip } }
        }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $anon = Send-ImgTarget $t 'map 8'
        $null = Send-ImgTarget $t "fill $anon 8 3"
        $steps = @()
        $folder = if ($Case -like 'a tmpfs*') { New-Item -ItemType Directory (Join-Path /dev/shm "r17f-$([guid]::NewGuid().ToString('n'))") } else { $root }
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
        }
    }
}
