#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, eighth attack round, on write tracking of another process and the workflows that use it (new cases
# only; rounds 2-7 are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1). Here:
# a target that changes under its tracking (mprotect, MADV_DONTNEED / MADV_FREE, mremap, fork, exec, its own
# UFFDIO_UNREGISTER of the tracked ranges, PR_SET_DUMPABLE 0), memory the kernel writes without the target's page
# table (read(2), /proc/PID/mem from another process, io_uring registered buffers), every sample against what the
# target says it wrote, and a write-tracking lock that another process holds for good. Targets: tests/native/wttarget.c.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    # io_uring with a registered buffer, measured in a real target (kernel.io_uring_disabled, RLIMIT_MEMLOCK, seccomp of a container).
    $UringSkip = if ($WtSkip) { $WtSkip } else { Get-UringBufferSkipReason }
    $IsRoot = $IsLinux -and (id -u) -eq '0'
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:dataFile = Join-Path $TestDrive 'data.bin'
    $bytes = [byte[]]::new(64KB)
    [Random]::new(8).NextBytes($bytes)
    [IO.File]::WriteAllBytes($dataFile, $bytes)
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r8t')

    # A mapped region of $Pages pages, every page written (non-zero), as [uint64] and as hex for the target.
    function New-WtRegion($Target, [int] $Pages) {
        $hex = Send-TestTarget $Target "map $Pages"
        $null = Send-TestTarget $Target "write $hex 0 $Pages"
        [pscustomobject]@{ Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Pages = $Pages }
    }
    # The page indexes of [$Base, $Base + $Pages pages) that the ranges of a sample or round cover.
    function Get-PageIndexes($Ranges, [uint64] $Base, [int] $Pages, [int] $PageSize) {
        $end = $Base + [uint64]$Pages * [uint64]$PageSize
        @(foreach ($r in $Ranges) {
            $s = [Math]::Max([uint64]$r.Start, $Base); $e = [Math]::Min([uint64]$r.End, $end)
            for ($a = $s; $a -lt $e; $a += [uint64]$PageSize) { [int](($a - $Base) / [uint64]$PageSize) }
        })
    }
    # The pages of each region (objects with Address and Pages) where the restore of $Image differs from the restore of a
    # full Hash image of the target taken now, as "0xADDRESS+PAGE" (empty: the image holds the target's memory there).
    function Compare-WithTarget($Target, [string] $Image, [string] $Dir, $Regions) {
        $tag = [guid]::NewGuid().ToString('n')
        $null = Save-MemoryImage -Id $Target.Id -Path "$Dir/ref-$tag" -Method Hash
        $null = Restore-MemoryImage -Path $Image -Destination "$Dir/r-img-$tag"
        $null = Restore-MemoryImage -Path "$Dir/ref-$tag" -Destination "$Dir/r-ref-$tag"
        $ps = $Target.PageSize
        foreach ($region in $Regions) {
            $base = [uint64]$region.Address
            $file = Get-ChildItem "$Dir/r-ref-$tag" -Filter *.bin | Where-Object {
                $s, $e = $_.BaseName -split '-'; [Convert]::ToUInt64($s, 16) -le $base -and [Convert]::ToUInt64($e, 16) -gt $base }
            if (-not $file) { throw "no restored mapping holds 0x$('{0:x}' -f $base)" }
            $other = Join-Path "$Dir/r-img-$tag" $file.Name
            if (-not (Test-Path $other)) { "0x$('{0:x}' -f $base): mapping missing"; continue }
            $r = [IO.File]::ReadAllBytes($file.FullName); $l = [IO.File]::ReadAllBytes($other)
            $offset = [int]($base - [Convert]::ToUInt64(($file.BaseName -split '-')[0], 16))
            for ($p = 0; $p -lt $region.Pages; $p++) {
                $at = $offset + $p * $ps
                if (-not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($l, $at, $ps), [ArraySegment[byte]]::new($r, $at, $ps))) { "0x$('{0:x}' -f $base)+$p" }
            }
        }
    }
    # $Pages pages of process $Id's memory at $Address (/proc/PID/mem; absent pages read as zeros).
    function Read-Pages([int] $Id, [uint64] $Address, [int] $Pages, [int] $PageSize) {
        $mem = [IO.FileStream]::new("/proc/$Id/mem", 'Open', 'Read', 'ReadWrite', 1, $false)
        try { $mem.Position = [int64]$Address; $bytes = [byte[]]::new($Pages * $PageSize); $mem.ReadExactly($bytes, 0, $bytes.Length); , $bytes } finally { $mem.Dispose() }
    }
    # Runs Watch-DirtyPage for 3 samples, running $Action (given the target and region) right after sample 1; returns
    # the samples, the region's address after the action (mremap moves it) and, as ground truth independent of any
    # tracker, the pages whose bytes the action changed (read through /proc/PID/mem before and after it).
    function Invoke-WatchAround($Target, $Region, [string] $Method, [scriptblock] $Action) {
        $state = @{ Base = $Region.Address; Done = $false; Changed = @() }
        $ps = $Target.PageSize
        $samples = @(Watch-DirtyPage -Id $Target.Id -Method $Method -Count 3 -Interval 1 | ForEach-Object {
            if (-not $state.Done) {
                $state.Done = $true
                $before = Read-Pages $Target.Id $Region.Address $Region.Pages $ps
                $moved = & $Action $Target $Region
                if ($moved) { $state.Base = [uint64]$moved }
                $after = Read-Pages $Target.Id $state.Base $Region.Pages $ps
                $state.Changed = @(for ($p = 0; $p -lt $Region.Pages; $p++) {
                    if (-not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($before, $p * $ps, $ps), [ArraySegment[byte]]::new($after, $p * $ps, $ps))) { $p }
                })
            }
            $_
        })
        [pscustomobject]@{ Samples = $samples; Base = $state.Base; Changed = $state.Changed }
    }
    function Get-UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 8: a target that changes its memory under write tracking' -Tag 'WriteTracking', 'Security', 'Round8Tracking' -Skip:([bool]$WtSkip) {
    # Before: a page written and then made read-only (or PROT_NONE) before the collection was in no sample of a
    # WriteProtect watch (it watched writable mappings only), and came a sample later only if the mapping was made
    # writable again: never, otherwise. Now mappings that are not writable are compared by content.
    It 'a WriteProtect watch counts pages written and then made <Name> in the sample of the write' -ForEach @(
        @{ Name = 'read-only'; Prot = 1 }
        @{ Name = 'PROT_NONE'; Prot = 0 }
    ) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 16
            $null = Enable-WriteTracking -Id $t.Id
            $w = Invoke-WatchAround $t $r WriteProtect { param($t, $r) $null = Send-TestTarget $t "write $($r.Hex) 0 4"; $null = Send-TestTarget $t "mprotect $($r.Hex) 16 $Prot" }
            $second = Get-PageIndexes $w.Samples[1].Ranges $w.Base 16 $t.PageSize
            foreach ($p in 0..3) { $second | Should -Contain $p -Because "page $p was written in sample 2's interval, then the mapping made $Name" }
        } finally { Stop-TestTarget $t }
    }

    # Each action writes (or changes) the listed pages of the region in sample 2's interval: the WriteProtect watch and an
    # independent Hash watch must both have them in sample 2. These held before this round; they stay as regressions.
    It 'sample 2 of a <Method> watch has every page changed by <Name>' -ForEach @(
        foreach ($method in 'WriteProtect', 'Hash') {
            @{ Method = $method; Name = 'MADV_DONTNEED (the pages read as zeros)'; Expect = 0..3; MayKeep = $false; Action = { param($t, $r) $null = Send-TestTarget $t "madvise $($r.Hex) 0 4 4" } }
            @{ Method = $method; Name = 'MADV_FREE and MADV_PAGEOUT (discarded: zeros)'; Expect = 0..3; MayKeep = $true; Action = { param($t, $r) $null = Send-TestTarget $t "madvise $($r.Hex) 0 4 8"; $null = Send-TestTarget $t "madvise $($r.Hex) 0 4 21" } }
            @{ Method = $method; Name = 'mremap to a new address, then writes there'; Expect = 1..2; MayKeep = $false; Action = { param($t, $r) $n = Send-TestTarget $t "mremap $($r.Hex) 16"; $null = Send-TestTarget $t "write $n 1 2"; [Convert]::ToUInt64($n, 16) } }
            @{ Method = $method; Name = 'read(2) of a file into the pages (the kernel copy_to_user)'; Expect = 5..8; MayKeep = $false; Action = { param($t, $r) $null = Send-TestTarget $t "readinto $($r.Hex) 5 4 $dataFile" } }
            @{ Method = $method; Name = 'writes to /proc/PID/mem by another process'; Expect = 9, 11; MayKeep = $false; Action = {
                    param($t, $r)
                    $mem = [IO.FileStream]::new("/proc/$($t.Id)/mem", 'Open', 'ReadWrite', 'ReadWrite', 1, $false)
                    try { foreach ($p in 9, 11) { $mem.Position = [int64]($r.Address + [uint64]($p * $t.PageSize) + 17); $mem.Write([byte[]](0xA5, 0x5A, 0xC3), 0, 3) } } finally { $mem.Dispose() }
                } }
            @{ Method = $method; Name = 'a fork, then writes in the parent (copy-on-write)'; Expect = 0..3; MayKeep = $false; Action = { param($t, $r) $null = Send-TestTarget $t 'fork'; $null = Send-TestTarget $t "write $($r.Hex) 0 4" } }
            @{ Method = $method; Name = 'writes, then a fork (the pages shared copy-on-write)'; Expect = 0..3; MayKeep = $false; Action = { param($t, $r) $null = Send-TestTarget $t "write $($r.Hex) 0 4"; $null = Send-TestTarget $t 'fork' } }
        }
    ) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 16
            if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id }
            $w = Invoke-WatchAround $t $r $Method $Action
            # What changed is measured: MADV_PAGEOUT may leave a page it could not isolate (a busy machine), whose bytes stay.
            if (-not $MayKeep) { $w.Changed | Should -Be @($Expect) -Because "the target changed pages $($Expect -join ',') ($Name)" }
            $second = Get-PageIndexes $w.Samples[1].Ranges $w.Base 16 $t.PageSize
            foreach ($p in $w.Changed) { $second | Should -Contain $p -Because "page $p changed in sample 2's interval ($Name)" }
        } finally { Stop-TestTarget $t }
    }

    It 'a target that unregisters the tracked ranges through the tracking''s own descriptor: the next sample counts every present page' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 16
            $tracking = Enable-WriteTracking -Id $t.Id
            $w = Invoke-WatchAround $t $r WriteProtect { param($t, $r) $null = Send-TestTarget $t "uffdunreg $($r.Hex) 16 $($tracking.Descriptor)"; $null = Send-TestTarget $t "write $($r.Hex) 2 3" }
            (Get-PageIndexes $w.Samples[1].Ranges $w.Base 16 $t.PageSize).Count | Should -Be 16 -Because 'an unregistered range is registered again and counted whole: never a silent miss'
            (Get-PageIndexes $w.Samples[2].Ranges $w.Base 16 $t.PageSize).Count | Should -Be 0 -Because 'registered again, it is exact from then on'
        } finally { Stop-TestTarget $t }
    }

    It 'ground truth: over 6 samples of random writes, each sample of a WriteProtect watch has every page written in its interval' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 64
            $null = Enable-WriteTracking -Id $t.Id
            $written = @{}
            $i = 0
            $samples = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 7 -Interval 0.5 | ForEach-Object {
                $i++
                $seed = Get-Random -Minimum 1 -Maximum ([int]::MaxValue)
                $answer = Send-TestTarget $t "pattern $($r.Hex) 64 $seed 12"
                $written[$i + 1] = if ($answer -eq '-') { @() } else { @($answer -split ',' | ForEach-Object { [int]$_ }) }
                $_
            })
            foreach ($s in $samples | Select-Object -Skip 1) {
                $seen = Get-PageIndexes $s.Ranges $r.Address 64 $t.PageSize
                foreach ($p in $written[$s.Index]) { $seen | Should -Contain $p -Because "the target wrote page $p in sample $($s.Index)'s interval" }
            }
        } finally { Stop-TestTarget $t }
    }

    It 'exec under tracking: the new program is not reported as tracked, an increment compares contents, Disable says WriteTrackingNotEnabled' {
        $t = Start-TestTarget -Path $wtExe
        $dir = New-Item -ItemType Directory (Join-Path $root "exec-$([guid]::NewGuid().ToString('n'))")
        try {
            $null = New-WtRegion $t 16
            $null = Enable-WriteTracking -Id $t.Id
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method WriteProtect
            $t.Process.StandardInput.WriteLine("exec $wtExe")
            $t.Process.StandardOutput.ReadLine() | Should -Match "^READY $($t.Id) "
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeFalse
            Get-UffdCount $t.Id | Should -Be 0 -Because 'the userfaultfd was close-on-exec'
            { Disable-WriteTracking -Id $t.Id -ErrorAction Stop } | Should -Throw -ErrorId 'WriteTrackingNotEnabled,SoftDirty.Commands.DisableWriteTrackingCommand'
            $n = New-WtRegion $t 8
            $warnings = @(Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method WriteProtect 3>&1 | Where-Object { $_ -is [System.Management.Automation.WarningRecord] })
            ($warnings -join ' ') | Should -Match 'comparing every page'
            Compare-WithTarget $t "$dir/inc" $dir $n | Should -BeNullOrEmpty -Because 'the new program''s pages are all in the increment'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'a target that dropped PR_SET_DUMPABLE: root tracks it; another user is refused as PermissionDenied with nothing injected' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 8
            $null = Send-TestTarget $t 'dumpable 0'
            if ((id -u) -eq '0') {
                $null = Enable-WriteTracking -Id $t.Id
                $w = Invoke-WatchAround $t $r WriteProtect { param($t, $r) $null = Send-TestTarget $t "write $($r.Hex) 1 2" }
                Get-PageIndexes $w.Samples[1].Ranges $w.Base 8 $t.PageSize | Should -Be @(1, 2)
                Disable-WriteTracking -Id $t.Id
            } else {
                { Enable-WriteTracking -Id $t.Id -ErrorAction Stop } | Should -Throw -ErrorId 'PermissionDenied,SoftDirty.Commands.EnableWriteTrackingCommand'
                { Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 1 -Interval 0.2 -ErrorAction Stop } | Should -Throw -ErrorId 'PermissionDenied,SoftDirty.Commands.WatchDirtyPageCommand'
            }
            (Get-ChildItem "/proc/$($t.Id)/fd" -ErrorAction SilentlyContinue | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count | Should -Be 0
            Send-TestTarget $t 'fds' | Should -Match '^\d+$' -Because 'the target still serves its commands'
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 8: io_uring registered buffers, which the kernel writes without the page table' -Tag 'WriteTracking', 'Security', 'Round8Tracking' -Skip:([bool]$UringSkip) {
    # Before: IORING_OP_READ_FIXED into a registered (pinned) buffer set no userfaultfd write-protect bit: a
    # WriteProtect watch, increment or migration missed those pages without a word, and the increment tested valid.
    It 'a WriteProtect watch counts the pages of a registered buffer that READ_FIXED wrote' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 16
            $null = Send-TestTarget $t "uringreg $($r.Hex) 4 4"
            $null = Enable-WriteTracking -Id $t.Id
            $w = Invoke-WatchAround $t $r WriteProtect { param($t, $r) (Send-TestTarget $t "uringread $dataFile") | Should -Be ([string](4 * $t.PageSize)) }
            $second = Get-PageIndexes $w.Samples[1].Ranges $w.Base 16 $t.PageSize
            foreach ($p in 4..7) { $second | Should -Contain $p -Because "the kernel wrote page $p of the registered buffer in sample 2's interval" }
        } finally { Stop-TestTarget $t }
    }

    It 'a WriteProtect increment holds what READ_FIXED wrote: it restores what a full image does' {
        $t = Start-TestTarget -Path $wtExe
        $dir = New-Item -ItemType Directory (Join-Path $root "uring-$([guid]::NewGuid().ToString('n'))")
        try {
            $r = New-WtRegion $t 16
            $null = Send-TestTarget $t "uringreg $($r.Hex) 0 4"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method WriteProtect
            $null = Send-TestTarget $t "uringread $dataFile"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method WriteProtect
            Test-MemoryImage -Path "$dir/inc" | Should -BeTrue
            Compare-WithTarget $t "$dir/inc" $dir $r | Should -BeNullOrEmpty -Because 'the pages READ_FIXED wrote must be in the increment'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'a WriteProtect migration''s final image equals the memory after writes, mprotect, READ_FIXED, read(2), MADV_DONTNEED and mremap during it' {
        $t = Start-TestTarget -Path $wtExe
        $dir = New-Item -ItemType Directory (Join-Path $root "mig-$([guid]::NewGuid().ToString('n'))")
        try {
            $regions = [ordered]@{}
            foreach ($n in 'write', 'mprotect', 'uring', 'readinto', 'dontneed', 'mremap') { $regions[$n] = New-WtRegion $t 16 }
            $null = Send-TestTarget $t "uringreg $($regions.uring.Hex) 0 4"
            $done = $false
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Method WriteProtect -Destination "$dir/m" -Bandwidth 4MB -MaxIterations 4 -StopThreshold 0 | ForEach-Object {
                if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                    $done = $true
                    $null = Send-TestTarget $t "write $($regions.write.Hex) 3 2"
                    $null = Send-TestTarget $t "write $($regions.mprotect.Hex) 5 2"; $null = Send-TestTarget $t "mprotect $($regions.mprotect.Hex) 16 1"
                    $null = Send-TestTarget $t "uringread $dataFile"
                    $null = Send-TestTarget $t "readinto $($regions.readinto.Hex) 8 2 $dataFile"
                    $null = Send-TestTarget $t "madvise $($regions.dontneed.Hex) 0 3 4"
                    $moved = Send-TestTarget $t "mremap $($regions.mremap.Hex) 16"
                    $regions.mremap = [pscustomobject]@{ Hex = $moved; Address = [Convert]::ToUInt64($moved, 16); Pages = 16 }
                    $null = Send-TestTarget $t "write $moved 1 1"
                }
                $_
            })
            $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
            $final | Should -Not -BeNullOrEmpty
            Compare-WithTarget $t $final $dir @($regions.Values) | Should -BeNullOrEmpty -Because 'the migrated memory of every region (write, mprotect, uring, readinto, dontneed, mremap) must be the target''s'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'Round 8: a write-tracking lock that another process holds for good' -Tag 'WriteTracking', 'Security', 'Round8Tracking' -Skip:([bool]$WtSkip) {
    # Before: Watch-DirtyPage, Save-MemoryImage and Invoke-PreCopyMigration -Method WriteProtect waited for the
    # process's PID.lock with no way out: Ctrl+C (StopProcessing) did not return while another process held it.
    It 'Ctrl+C ends <Name> waiting for the lock' -ForEach @(
        @{ Name = 'Watch-DirtyPage -Method WriteProtect'; Command = 'Watch-DirtyPage -Id {0} -Method WriteProtect -Count 1 -Interval 0.2' }
        @{ Name = 'Save-MemoryImage -Method WriteProtect'; Command = 'Save-MemoryImage -Id {0} -Method WriteProtect -Path {1}' }
        @{ Name = 'Invoke-PreCopyMigration -Method WriteProtect'; Command = 'Invoke-PreCopyMigration -Id {0} -Method WriteProtect -Bandwidth 1MB' }
        @{ Name = 'Enable-WriteTracking'; Command = 'Enable-WriteTracking -Id {0}' }
    ) {
        $flock = Get-Command flock -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if (-not $flock) { Set-ItResult -Skipped -Because 'flock(1) (util-linux) is not installed to hold the lock from another process'; return }
        $t = Start-TestTarget -Path $wtExe
        $holder = $null
        $ps = $null
        try {
            $state = New-Item -ItemType Directory -Force $env:SOFTDIRTY_STATE_DIR
            chmod 700 $state.FullName
            $lock = Join-Path $state.FullName "$($t.Id).lock"
            $holder = [System.Diagnostics.Process]::Start($flock.Source, @('-x', $lock, 'sleep', '600'))
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            do {
                Start-Sleep -Milliseconds 50
                $held = (Test-Path $lock) -and (Select-String -Path /proc/locks -Pattern "FLOCK .*:$(stat -c %i $lock) " -Quiet)
            } until ($held -or [DateTime]::UtcNow -gt $deadline)
            $held | Should -BeTrue -Because 'flock(1) holds the lock (/proc/locks)'
            $ps = [powershell]::Create()
            $null = $ps.AddScript("Import-Module '$env:SOFTDIRTY_MODULE'; `$env:SOFTDIRTY_STATE_DIR = '$($state.FullName)'; " + ($Command -f $t.Id, (Join-Path $root "img-$([guid]::NewGuid().ToString('n'))")))
            $run = $ps.BeginInvoke()
            Start-Sleep -Seconds 2
            $run.IsCompleted | Should -BeFalse -Because 'the command waits for the lock another process holds'
            $stop = $ps.BeginStop($null, $null)
            $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(60)) | Should -BeTrue -Because 'Ctrl+C must end the wait (hang guard: 60 s)'
            Get-UffdCount $t.Id | Should -Be 0 -Because 'nothing was injected'
            $ps.Dispose()
        } finally {
            if ($holder -and -not $holder.HasExited) { $holder.Kill($true); $holder.WaitForExit(5000) | Out-Null } # flock and its sleep
            Stop-TestTarget $t
        }
    }
}
