#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, fourteenth attack round, on writes that reach a tracked process's memory by a path other than its own
# store instructions (new cases only; rounds 2-13 are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and
# WriteTracking.Tests.ps1: io_uring registered buffers, read(2), /proc/PID/mem, process_vm_writev and POKEDATA in
# watches, MAP_SHARED memfds and files rewritten, truncated or punched, mprotect, mremap, fork, exec, KSM were done).
# Here: a MAP_PRIVATE mapping of a memfd, whose pages another process changes until this one writes them. Every case
# compares what a watch, an increment or a migration saw with what really changed (a Hash watch, a full image of the
# same moment).

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    # io_uring with its rings in the process's own memory (IORING_SETUP_NO_MMAP, 6.5+; NO_SQARRAY, 6.6+), measured in a real
    # target (kernel.io_uring_disabled, RLIMIT_MEMLOCK, a container's seccomp).
    $NoMmapSkip = $WtSkip
    if (-not $NoMmapSkip) {
        $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/wttarget')
        try {
            $a = $probe.Send('map 8')
            $reply = $probe.TrySend("uringnommap $a 0 4")
            if ($reply -notmatch '^OK') { $NoMmapSkip = "io_uring with rings in the process's own memory (IORING_SETUP_NO_MMAP) is not available here ($reply)" }
        } finally { Stop-TestTarget $probe }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r14w')
    chmod 0755 $TestDrive $root
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state14w'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    function Get-Bytes([int] $Seed, [int] $Length) { $r = [Random]::new($Seed); $b = [byte[]]::new($Length); $r.NextBytes($b); , $b }
    # Writes $Bytes at $Offset of the file with write(2), from this process (not the target).
    function Write-FileAt([string] $Path, [int64] $Offset, [byte[]] $Bytes) {
        $fs = [IO.File]::Open($Path, 'Open', 'ReadWrite', 'ReadWrite')
        try { $fs.Position = $Offset; $fs.Write($Bytes, 0, $Bytes.Length) } finally { $fs.Dispose() }
    }
    # The page indexes of [$Base, $Base + $Pages pages) that the ranges of a sample cover.
    function Get-PageIndexes($Ranges, [uint64] $Base, [int] $Pages, [uint64] $PageSize) {
        $end = $Base + [uint64]$Pages * $PageSize
        @(foreach ($r in $Ranges) {
                $s = [Math]::Max([uint64]$r.Start, $Base); $e = [Math]::Min([uint64]$r.End, $end)
                for ($a = $s; $a -lt $e; $a += $PageSize) { [int](($a - $Base) / $PageSize) }
            })
    }
    # An increment (-Method $Method) over an image taken before $Change ran, and a full image of the moment after:
    # the increment is valid and restores what the full image restores.
    function Assert-ExactIncrement([int] $Id, [string] $Method, [scriptblock] $Change, [string] $Because) {
        $chain = New-Dest
        $null = Save-MemoryImage -Id $Id -Path "$chain/0" -Method $Method
        & $Change
        $null = Save-MemoryImage -Id $Id -Path "$chain/1" -Parent "$chain/0" -Method $Method
        $full = New-Dest
        $null = Save-MemoryImage -Id $Id -Path $full -Method Hash
        Test-MemoryImage "$chain/1" | Should -BeTrue -Because $Because
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty -Because $Because
    }
    # The pages of [$Address, +$Pages pages) where the restores of two images differ, as "0xADDRESS+PAGE" (empty: the same
    # bytes). For a migration: the target runs on after its stop-and-copy round, and the kernel updates its rseq area
    # (the CPU it runs on) when it resumes, so only the region under test is compared with a later full image.
    function Compare-Region([string] $Image, [string] $Full, [uint64] $Address, [int] $Pages) {
        $a = New-Dest; $b = New-Dest
        $null = Restore-MemoryImage -Path $Image -Destination $a
        $null = Restore-MemoryImage -Path $Full -Destination $b
        $file = Get-ChildItem $b -Filter *.bin | Where-Object {
            $s, $e = $_.BaseName -split '-'; [Convert]::ToUInt64($s, 16) -le $Address -and [Convert]::ToUInt64($e, 16) -gt $Address }
        if (-not $file) { throw "no restored mapping holds 0x$('{0:x}' -f $Address)" }
        $other = Join-Path $a $file.Name
        if (-not (Test-Path $other)) { return "0x$('{0:x}' -f $Address): mapping missing" }
        $r = [IO.File]::ReadAllBytes($file.FullName); $l = [IO.File]::ReadAllBytes($other)
        $offset = [int]($Address - [Convert]::ToUInt64(($file.BaseName -split '-')[0], 16))
        for ($p = 0; $p -lt $Pages; $p++) {
            $at = $offset + $p * 4096
            if (-not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($l, $at, 4096), [ArraySegment[byte]]::new($r, $at, 4096))) { "0x$('{0:x}' -f $Address)+$p" }
        }
    }
    # process_vm_writev(2) from this PowerShell into the target (the kernel writes through GUP with FOLL_WRITE).
    function Invoke-VmWrite([int] $Id, [uint64] $Address, [byte[]] $Data) { [SoftDirtyTests.ProcessVmWrite]::Write($Id, $Address, $Data) }
    # $Pages pages of process $Id's memory at $Address (/proc/PID/mem).
    function Read-Pages([int] $Id, [uint64] $Address, [int] $Pages) {
        $mem = [IO.FileStream]::new("/proc/$Id/mem", 'Open', 'Read', 'ReadWrite', 1, $false)
        try { $mem.Position = [int64]$Address; $bytes = [byte[]]::new($Pages * 4096); $mem.ReadExactly($bytes, 0, $bytes.Length); , $bytes } finally { $mem.Dispose() }
    }
    # The page indexes where two reads of the same pages differ.
    function Get-ChangedPages([byte[]] $Before, [byte[]] $After) {
        @(for ($p = 0; $p -lt $Before.Length / 4096; $p++) {
                if (-not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($Before, $p * 4096, 4096), [ArraySegment[byte]]::new($After, $p * 4096, 4096))) { $p }
            })
    }
    # A wttarget with a written 16-page region whose pages 4-7 hold an io_uring set up with IORING_SETUP_NO_MMAP: the SQEs
    # in page 4, the rings (heads and tails, then 512 CQEs) in pages 5-7; 300 NOPs already completed.
    function New-NoMmapRingTarget {
        $t = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/wttarget')
        $hex = Send-TestTarget $t 'map 16'
        $null = Send-TestTarget $t "write $hex 0 16"
        $null = Send-TestTarget $t "uringnommap $hex 4 4"
        $null = Send-TestTarget $t 'uringnop 300'
        Wait-ImgTargetIdle $t # back in read(2): its stdio after the answer done (a save now is the memory of a moment)
        [pscustomobject]@{ Target = $t; Hex = $hex; Address = [Convert]::ToUInt64($hex, 16) }
    }
    # An imgtarget whose only mapping of a memfd (16 filled pages) is MAP_PRIVATE, every page read (present, the memfd's
    # own pages, not copies): the MAP_SHARED mapping that filled it is replaced by anonymous memory, and the memfd stays
    # open in the target. Returns the target, the private mapping's address and the memfd's path for other processes.
    function New-PrivateMemfdTarget {
        $t = Start-ImgTarget
        $shm = (Send-ImgTarget $t 'shm 16') -split ' '
        $null = Send-ImgTarget $t "fill $($shm[0]) 16 6"
        $fd = "/proc/$($t.Id)/fd/$([Convert]::ToInt32($shm[1], 16))"
        $null = Send-ImgTarget $t "fixed $($shm[0]) 16"
        $hex = Send-ImgTarget $t "mapfile $fd 16 0"
        $null = Send-ImgTarget $t "touch $hex 0 16"
        [pscustomobject]@{ Target = $t; Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Memfd = $fd }
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 14: a MAP_PRIVATE memfd mapping whose memfd another process changes' -Tag 'WriteTracking', 'Security', 'Round14Writes' -Skip:([bool]$WtSkip) {
    # Before: ContentCheckedTracker compared by content only shared mappings and file mappings (MappingKind.File); a
    # private mapping of a memfd is MappingKind.SharedAnonymous and not Shared, so it was left to the page tables, which
    # no write(2) to the memfd (or another process's MAP_SHARED mapping of it) touches: a SoftDirty or WriteProtect watch
    # and the live rounds of a migration missed those pages without a word.
    It 'the target''s private mapping is what the case needs: a memfd, not shared, its pages present' {
        $m = New-PrivateMemfdTarget
        try {
            $mapping = Get-MemoryMapping -Id $m.Target.Id | Where-Object Start -eq $m.Address
            $mapping.Path | Should -BeLike '/memfd:*'
            $mapping.Shared | Should -BeFalse
            (Get-PageMap -Id $m.Target.Id -Address $m.Address -Length 64KB -Present).Count | Should -Be 16
        } finally { Stop-ImgTarget $m.Target }
    }

    It 'sample 2 of a <Method> watch has the pages another process <How>' -ForEach @(
        foreach ($method in 'WriteProtect', 'Hash') {
            @{ Method = $method; How = 'wrote into the memfd with write(2)'; Pages = 5, 6; Punch = $false }
            @{ Method = $method; How = 'punched out of the memfd (fallocate PUNCH_HOLE: they read as zeros)'; Pages = 9, 10; Punch = $true }
        }
    ) {
        $m = New-PrivateMemfdTarget
        $t = $m.Target
        try {
            $ps = [uint64]4096
            $done = $false
            $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Count 3 -Interval 1 | ForEach-Object {
                    if (-not $done) {
                        $done = $true
                        if ($Punch) {
                            fallocate --punch-hole --keep-size --offset ($Pages[0] * 4096) --length ($Pages.Count * 4096) $m.Memfd
                            $LASTEXITCODE | Should -Be 0
                        } else { Write-FileAt $m.Memfd ($Pages[0] * 4096) (Get-Bytes 9 ($Pages.Count * 4096)) }
                    }
                    $_
                })
            $second = Get-PageIndexes $samples[1].Ranges $m.Address 16 $ps
            foreach ($p in $Pages) { $second | Should -Contain $p -Because "another process changed page $p of the memfd in sample 2's interval" }
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }

    It 'a <Method> increment after write(2) and a punched hole in the memfd restores what a full image of that moment restores' -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) {
        $m = New-PrivateMemfdTarget
        $t = $m.Target
        try {
            Assert-ExactIncrement $t.Id $Method {
                Write-FileAt $m.Memfd (3 * 4096) (Get-Bytes 10 (2 * 4096))
                fallocate --punch-hole --keep-size --offset (12 * 4096) --length 4096 $m.Memfd
            }
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }

    It 'a WriteProtect migration counts the pages another process wrote into the memfd in the round they changed, and its final image holds the memfd mapping of the end' {
        $m = New-PrivateMemfdTarget
        $t = $m.Target
        try {
            $done = $false
            $dir = New-Dest
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Method WriteProtect -Destination $dir -Bandwidth 64MB -MaxIterations 3 -StopThreshold 0 | ForEach-Object {
                    if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                        $done = $true
                        $script:firstRound = $_.Round
                        Write-FileAt $m.Memfd (7 * 4096) (Get-Bytes 11 (3 * 4096))
                    }
                    $_
                })
            $next = $out | Where-Object { $_.PSObject.Properties['Round'] -and $_.Round -eq $firstRound + 1 }
            $next | Should -Not -BeNullOrEmpty
            $seen = Get-PageIndexes $next.Ranges $m.Address 16 4096
            foreach ($p in 7..9) { $seen | Should -Contain $p -Because "another process wrote page $p of the memfd after round $firstRound" }
            $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
            Compare-Region $final $full $m.Address 16 | Should -BeNullOrEmpty
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-ImgTarget $t
        }
    }
}

Describe 'Round 14: process_vm_writev into the target between a parent and its increment' -Tag 'WriteTracking', 'Security', 'Round14Writes' -Skip:([bool]$WtSkip) {
    # Round 9 watched these writes; here the increment. They held before this round (the kernel's remote write faults
    # through the target's page table); they stay as regressions.
    It '-Method <Method>: writes into private anonymous memory and into a read (not copied) page of a MAP_PRIVATE memfd restore as a full image does' -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) {
        $m = New-PrivateMemfdTarget
        $t = $m.Target
        try {
            $anon = Send-ImgTarget $t 'map 8'
            $null = Send-ImgTarget $t "fill $anon 8 5"
            Assert-ExactIncrement $t.Id $Method {
                $bytes = Get-Bytes 13 6000
                Invoke-VmWrite $t.Id ([Convert]::ToUInt64($anon, 16) + 3000) $bytes | Should -Be 6000
                Invoke-VmWrite $t.Id ($m.Address + 2 * 4096 + 100) $bytes | Should -Be 6000
                (Read-Pages $t.Id ($m.Address + 2 * 4096) 2)[100..6099] | Should -Be $bytes -Because 'the write reached the target'
            }
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }
}

Describe 'Round 14: pages of a MAP_PRIVATE file or memfd mapping dropped under write tracking' -Tag 'WriteTracking', 'Security', 'Round14Writes' -Skip:([bool]$WtSkip) {
    # Before: under write tracking the kernel leaves a uffd-wp marker where it drops a page of a file-backed mapping (a
    # hole punched in the file, MADV_DONTNEED), which pagemap shows as swapped: neither written nor of a file. A
    # WriteProtect increment counted such a page present and unwritten and kept the parent's bytes for it, while the
    # memory reads the file again (zeros for a hole, the file's bytes where the target had its own copy): the restore
    # differed from a full image of the same moment without a warning. Now such a page (swapped and not present in a
    # mapping of a file or memfd) is compared by content in every increment.
    It '<Case>, -Method <Method>: the increment restores what a full image of that moment restores' -ForEach @(
        foreach ($m in 'WriteProtect', 'Hash') {
            @{ Method = $m; Case = 'a MAP_PRIVATE file read by the target, a hole punched by another process' }
            @{ Method = $m; Case = 'a MAP_PRIVATE file partly written (copied) by the target, then MADV_DONTNEED of the copies' }
            @{ Method = $m; Case = 'a MAP_PRIVATE memfd read by the target, a hole punched by another process' }
        }
    ) {
        $t = $null
        try {
            if ($Case -like '*memfd*') {
                $mf = New-PrivateMemfdTarget
                $t = $mf.Target; $hex = $mf.Hex; $backing = $mf.Memfd
            } else {
                $t = Start-ImgTarget
                $backing = Join-Path $root "file-$([guid]::NewGuid().ToString('n'))"
                [IO.File]::WriteAllBytes($backing, (Get-Bytes 12 (16 * 4096)))
                $hex = Send-ImgTarget $t "mapfile $backing 16 0"
                $null = Send-ImgTarget $t "touch $hex 0 16"
                if ($Case -like '*written*') { $null = Send-ImgTarget $t "write $hex 4 4" }
            }
            Assert-ExactIncrement $t.Id $Method -Because "$Case ($Method)" {
                if ($Case -like '*punched*') {
                    fallocate --punch-hole --keep-size --offset (6 * 4096) --length (2 * 4096) $backing
                    $LASTEXITCODE | Should -Be 0
                } else { $null = Send-ImgTarget $t "dontneed $hex 4 4" }
            }
        } finally {
            if ($t -and $Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }
}

Describe 'Round 14: an io_uring whose rings live in the target''s own memory (IORING_SETUP_NO_MMAP)' -Tag 'WriteTracking', 'Security', 'Round14Writes' -Skip:([bool]$NoMmapSkip) {
    # Before: the kernel writes the completion entries of such a ring through its own mapping of the pinned pages; no
    # page-table bit sees it, VmPin does not count it and fdinfo does not say where the rings are. A WriteProtect watch
    # had the pages of the ring the process itself wrote (the SQEs, the SQ tail and CQ head) but never the pages holding
    # only completion entries; an increment kept the parent's entries there without a warning. Now a process holding an
    # io_uring whose inode it has not mapped has all its memory compared by content.
    It 'sample 2 of a <Method> watch has every page of the ring that completions changed' -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) {
        $r = New-NoMmapRingTarget
        $t = $r.Target
        try {
            $state = @{ Done = $false; Changed = @() }
            $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Count 3 -Interval 1 | ForEach-Object {
                    if (-not $state.Done) {
                        $state.Done = $true
                        $before = Read-Pages $t.Id ($r.Address + 4 * 4096) 4
                        Send-TestTarget $t 'uringnop 300' | Should -Be '600'
                        $state.Changed = @(Get-ChangedPages $before (Read-Pages $t.Id ($r.Address + 4 * 4096) 4) | ForEach-Object { $_ + 4 })
                    }
                    $_
                })
            # Completions 300-599 go round the 512-entry ring: entries 300-511 fill pages 6 and 7, which only the kernel writes.
            $state.Changed | Should -Contain 6
            $state.Changed | Should -Contain 7
            $second = Get-PageIndexes $samples[1].Ranges $r.Address 16 4096
            foreach ($p in $state.Changed) { $second | Should -Contain $p -Because "the kernel or the target changed page $p of the ring in sample 2's interval" }
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }

    It 'a <Method> increment after more completions restores what a full image of that moment restores' -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) {
        $r = New-NoMmapRingTarget
        $t = $r.Target
        try {
            Assert-ExactIncrement $t.Id $Method {
                $null = Send-TestTarget $t 'uringnop 300'
                Wait-ImgTargetIdle $t
            }
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }

    It 'a WriteProtect migration has the ring''s changed pages in the next round, and its final image holds the ring of the end' {
        $r = New-NoMmapRingTarget
        $t = $r.Target
        try {
            $state = @{ Done = $false; Round = 0; Changed = @() }
            $dir = New-Dest
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Method WriteProtect -Destination $dir -Bandwidth 64MB -MaxIterations 3 -StopThreshold 0 | ForEach-Object {
                    if (-not $state.Done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                        $state.Done = $true
                        $state.Round = $_.Round
                        $before = Read-Pages $t.Id ($r.Address + 4 * 4096) 4
                        $null = Send-TestTarget $t 'uringnop 300'
                        Wait-ImgTargetIdle $t
                        $state.Changed = @(Get-ChangedPages $before (Read-Pages $t.Id ($r.Address + 4 * 4096) 4) | ForEach-Object { $_ + 4 })
                    }
                    $_
                })
            $next = $out | Where-Object { $_.PSObject.Properties['Round'] -and $_.Round -eq $state.Round + 1 }
            $next | Should -Not -BeNullOrEmpty
            $seen = Get-PageIndexes $next.Ranges $r.Address 16 4096
            $state.Changed | Should -Contain 7
            foreach ($p in $state.Changed) { $seen | Should -Contain $p -Because "page $p of the ring changed after round $($state.Round)" }
            $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
            Compare-Region $final $full $r.Address 16 | Should -BeNullOrEmpty
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }
}

Describe 'Round 14: an emulated fork whose other half writes a MAP_SHARED mapping' -Tag 'Emulator', 'Security', 'Round14Writes' {
    # Before: the trackers of an emulated process trusted its page table alone ("no other writer"), but a fork's parent
    # and child share their MAP_SHARED pages: a write by one changes the other's memory with no soft-dirty or uffd-wp
    # bit of the other's page table, as on a real kernel. SoftDirty and WriteProtect watches and migration rounds of the
    # other missed it without a word (a Hash watch had it). Now an emulated process that shares its memory with another
    # compares its shared mappings by content, as a real process does.
    It 'sample 2 of a <Method> watch of the <Watched> has the page the other wrote' -ForEach @(
        foreach ($method in 'SoftDirty', 'WriteProtect', 'Hash') {
            @{ Method = $method; Watched = 'parent' }
            @{ Method = $method; Watched = 'child' }
        }
    ) {
        $parent = New-EmulatedProcess -Kernel 6.18 -Name r14-parent
        $m = $parent | Add-EmulatedMapping -Length 64KB -Shared
        $parent | Write-EmulatedMemory -Address $m.Start -Length 64KB
        $child = $parent | Copy-EmulatedProcess -Name r14-child
        $other = if ($Watched -eq 'parent') { 'child' } else { 'parent' }
        $target, $writer = if ($Watched -eq 'parent') { $parent, $child } else { $child, $parent }
        $target | Read-EmulatedMemory -Address $m.Start -Length 64KB # the child maps the shared pages too
        $done = $false
        $samples = @(Watch-DirtyPage -Emulator $target -Method $Method -Count 3 -Interval 1 | ForEach-Object {
                if (-not $done) { $done = $true; $writer | Write-EmulatedMemory -Address ($m.Start + 8KB) -Length 8KB }
                $_
            })
        (Get-PageIndexes $samples[1].Ranges $m.Start 16 4096) | Should -Be @(2, 3) -Because "the $other wrote pages 2 and 3 of the shared mapping in sample 2's interval"
        (Get-PageIndexes $samples[2].Ranges $m.Start 16 4096) | Should -BeNullOrEmpty -Because 'nothing was written in sample 3''s interval'
    }

    It 'a <Method> migration of the parent has the page the child wrote in the next round, and its final image is the memory of the end' -ForEach @(
        @{ Method = 'SoftDirty' }, @{ Method = 'WriteProtect' }
    ) {
        $parent = New-EmulatedProcess -Kernel 6.18 -Name r14-parent
        $m = $parent | Add-EmulatedMapping -Length 64KB -Shared
        $parent | Write-EmulatedMemory -Address $m.Start -Length 64KB
        $child = $parent | Copy-EmulatedProcess -Name r14-child
        $state = @{ Done = $false; Round = 0 }
        $dir = New-Dest
        $out = @(Invoke-PreCopyMigration -Emulator $parent -Method $Method -Destination $dir -Bandwidth 64MB -MaxIterations 3 -StopThreshold 0 | ForEach-Object {
                if (-not $state.Done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                    $state.Done = $true
                    $state.Round = $_.Round
                    $child | Write-EmulatedMemory -Address ($m.Start + 20KB) -Length 4KB
                }
                $_
            })
        $next = $out | Where-Object { $_.PSObject.Properties['Round'] -and $_.Round -eq $state.Round + 1 }
        $next | Should -Not -BeNullOrEmpty
        Get-PageIndexes $next.Ranges $m.Start 16 4096 | Should -Contain 5 -Because "the child wrote page 5 of the shared mapping after round $($state.Round)"
        $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
        $full = New-Dest
        $null = $parent | Save-MemoryImage -Path $full -Method Hash
        Compare-RestoredImage $final $full $root | Should -BeNullOrEmpty
    }
}

Describe 'Round 14: an emulated MAP_PRIVATE file mapping whose copies are dropped under write tracking' -Tag 'Emulator', 'Security', 'Round14Writes' {
    # The emulator leaves a uffd-wp marker where a page of a file-backed mapping is dropped under write tracking, as the
    # kernel does: the same defect as on a real process (above), on the emulator's model. Before: the increment kept the
    # parent's copies for those pages.
    It 'a WriteProtect increment after MADV_DONTNEED of the copies in a MAP_PRIVATE file mapping restores what a full image restores (the pages read the file again)' {
        $e = New-EmulatedProcess -Kernel 6.18 -Name r14-private-file
        $m = $e | Add-EmulatedMapping -Length 64KB -Path /r14/private
        $e | Read-EmulatedMemory -Address $m.Start -Length 64KB
        $e | Write-EmulatedMemory -Address ($m.Start + 16KB) -Length 16KB
        $chain = New-Dest
        $null = $e | Save-MemoryImage -Path "$chain/0" -Method WriteProtect
        $e | Invoke-EmulatedMadvise -Address ($m.Start + 16KB) -Length 16KB -Advice DontNeed
        @($e | Get-PageMap -Address ($m.Start + 16KB) -Length 16KB | Where-Object { $_.Swapped -and -not $_.Present }).Count | Should -Be 4 -Because 'the dropped pages keep uffd-wp markers (pagemap: swapped)'
        $null = $e | Save-MemoryImage -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect
        $full = New-Dest
        $null = $e | Save-MemoryImage -Path $full -Method Hash
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty
    }
}
