#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, tenth attack round, on write tracking of another process and the workflows that use it (new cases only;
# rounds 2-9 are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1). Here: the
# kernel changing the target's page tables between samples without the target writing (KSM merging identical pages,
# transparent huge pages collapsed with MADV_COLLAPSE and split again), and careless destinations of
# Invoke-PreCopyMigration and Export-DirtyPageChart (-WhatIf, two migrations into one folder, a destination inside an
# image). Targets: tests/native/wttarget.c.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $IsRoot = $IsLinux -and (id -u) -eq '0'
    # KSM: measured, and started only by root where it is off (put back afterwards, in the test).
    $KsmRun = '/sys/kernel/mm/ksm/run'
    $KsmSkip = if ($WtSkip) { $WtSkip }
    elseif (-not (Test-Path $KsmRun)) { 'no KSM here (/sys/kernel/mm/ksm/run is missing: CONFIG_KSM)' }
    elseif (-not (Test-Path /proc/self/ksm_merging_pages)) { 'this kernel does not count merged pages per process (/proc/PID/ksm_merging_pages, Linux 6.1)' }
    else {
        $run = (Get-Content $KsmRun).Trim()
        if ($run -eq '2') { 'KSM is unmerging every page (/sys/kernel/mm/ksm/run 2)' }
        elseif ($run -ne '1' -and -not $IsRoot) { "KSM is off (/sys/kernel/mm/ksm/run $run) and only root may start it" }
    }
    # THP: measured; MADV_COLLAPSE works in every mode but "never" (Linux 6.1).
    $ThpFile = '/sys/kernel/mm/transparent_hugepage/enabled'
    $ThpSkip = if ($WtSkip) { $WtSkip }
    elseif (-not (Test-Path $ThpFile)) { 'no transparent huge pages here' }
    elseif ((Get-Content $ThpFile) -match '\[never\]') { 'transparent huge pages are off ([never])' }
    $SetuidSkip = if ($WtSkip) { $WtSkip } elseif ($IsRoot) { 'a setuid-root program changes no credentials for root (the unprivileged run tries it)' }
    elseif (-not (Test-Path /usr/bin/passwd)) { 'no /usr/bin/passwd here' }
    elseif (((Get-Item /usr/bin/passwd).UnixMode -notmatch '^-..s') -or (Get-Item /usr/bin/passwd).User -ne 'root') { '/usr/bin/passwd is not setuid-root here' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r10t')
    # madvise(2) advice values (include/uapi/asm-generic/mman-common.h).
    $script:MadvMergeable = 12; $script:MadvHugePage = 14; $script:MadvNoHugePage = 15; $script:MadvCollapse = 25
    $script:ProtRead = 1
    $script:KsmRun = '/sys/kernel/mm/ksm/run'

    function New-Region($Target, [int] $Pages) {
        $hex = Send-TestTarget $Target "map $Pages"
        [pscustomobject]@{ Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Pages = $Pages }
    }
    function Read-Region([int] $Id, [uint64] $Address, [int] $Pages, [int] $PageSize) {
        $mem = [IO.FileStream]::new("/proc/$Id/mem", 'Open', 'Read', 'ReadWrite', 1, $false)
        try { $mem.Position = [int64]$Address; $bytes = [byte[]]::new($Pages * $PageSize); $mem.ReadExactly($bytes, 0, $bytes.Length); , $bytes } finally { $mem.Dispose() }
    }
    # The indexes of the pages of [$Base, +$Pages) that $Ranges (a sample's) holds.
    function Get-SampledPages($Ranges, [uint64] $Base, [int] $Pages, [int] $PageSize) {
        $end = $Base + [uint64]$Pages * [uint64]$PageSize
        @(foreach ($r in $Ranges) {
                $s = [Math]::Max([uint64]$r.Start, $Base); $e = [Math]::Min([uint64]$r.End, $end)
                for ($a = $s; $a -lt $e; $a += [uint64]$PageSize) { [int](($a - $Base) / [uint64]$PageSize) }
            })
    }
    # The pages of a region whose bytes differ between two reads of it.
    function Get-ChangedPages([byte[]] $Before, [byte[]] $After, [int] $PageSize) {
        @(for ($p = 0; $p -lt $Before.Length / $PageSize; $p++) {
                if (-not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($Before, $p * $PageSize, $PageSize), [ArraySegment[byte]]::new($After, $p * $PageSize, $PageSize))) { $p }
            })
    }
    # The restored bytes of [$Address, +$Pages) from a flat restore of $Image.
    function Get-RestoredRegion([string] $Image, [uint64] $Address, [int] $Pages, [int] $PageSize) {
        $dir = Join-Path $root "restore-$([guid]::NewGuid().ToString('n'))"
        $null = Restore-MemoryImage -Path $Image -Destination $dir
        $file = Get-ChildItem $dir -Filter *.bin | Where-Object { $s, $e = $_.BaseName -split '-'; [Convert]::ToUInt64($s, 16) -le $Address -and [Convert]::ToUInt64($e, 16) -gt $Address }
        if (-not $file) { throw "no restored mapping holds 0x$('{0:x}' -f $Address)" }
        $all = [IO.File]::ReadAllBytes($file.FullName)
        $offset = [int]($Address - [Convert]::ToUInt64(($file.BaseName -split '-')[0], 16))
        , [byte[]]$all[$offset..($offset + $Pages * $PageSize - 1)]
    }
    function Wait-Until([scriptblock] $Condition, [string] $What) {
        $deadline = [DateTime]::UtcNow.AddSeconds(180) # a hang guard only
        while (-not (& $Condition)) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "timed out waiting for $What" }
            Start-Sleep -Milliseconds 50
        }
    }
    function Get-MappingAnonHuge([int] $Id, [uint64] $Address) {
        $m = Get-MemoryMapping -Id $Id | Where-Object { [uint64]$_.Start -le $Address -and [uint64]$_.End -gt $Address }
        [uint64]($m.AnonHugePages ?? 0)
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 10: KSM merging the target''s identical pages between samples and increments' -Tag 'WriteTracking', 'Security', 'Round10Tracking' -Skip:([bool]$KsmSkip) {
    BeforeAll {
        # Started by root only where it was off, and put back after this block.
        $script:ksmWas = (Get-Content $KsmRun).Trim()
        if ($ksmWas -ne '1') { Set-Content -Path $KsmRun -Value 1 }
        # 32 identical pages (every byte 0x5A): KSM merges them into one page, write-protected in every page table.
        $script:same = Join-Path $TestDrive 'same.bin'
        $bytes = [byte[]]::new(32 * [Environment]::SystemPageSize); [Array]::Fill($bytes, [byte]0x5A)
        [IO.File]::WriteAllBytes($same, $bytes)
    }
    AfterAll { if ($ksmWas -and $ksmWas -ne '1') { Set-Content -Path $KsmRun -Value $ksmWas } }

    It 'a <Method> watch: sample 2 has every page written after KSM merged the region, and the merge is no write' -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-Region $t 32
            $null = Send-TestTarget $t "readinto $($r.Hex) 0 32 $same"
            $state = @{ Done = $false; Changed = @() }
            $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Count 3 -Interval 1 | ForEach-Object {
                    if (-not $state.Done) {
                        $state.Done = $true
                        $null = Send-TestTarget $t "madvise $($r.Hex) 0 32 $MadvMergeable"
                        Wait-Until { [int](Get-Content /proc/$($t.Id)/ksm_merging_pages) -ge 16 } 'KSM to merge the region'
                        $before = Read-Region $t.Id $r.Address 32 $t.PageSize
                        $null = Send-TestTarget $t "write $($r.Hex) 3 1"
                        $null = Send-TestTarget $t "write $($r.Hex) 17 2"
                        $state.Changed = Get-ChangedPages $before (Read-Region $t.Id $r.Address 32 $t.PageSize) $t.PageSize
                    }
                    $_
                })
            $state.Changed | Should -Be @(3, 17, 18)
            $second = Get-SampledPages $samples[1].Ranges $r.Address 32 $t.PageSize
            foreach ($p in $state.Changed) { $second | Should -Contain $p -Because "page $p was written (copy-on-write of a KSM page) in sample 2's interval" }
        } finally { Stop-TestTarget $t }
    }

    It 'a WriteProtect increment saved after KSM merged and the target wrote restores the memory of that moment' {
        $t = Start-TestTarget -Path $wtExe
        $dir = New-Item -ItemType Directory (Join-Path $root "ksm-$([guid]::NewGuid().ToString('n'))")
        try {
            $r = New-Region $t 32
            $null = Send-TestTarget $t "readinto $($r.Hex) 0 32 $same"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method WriteProtect
            $null = Send-TestTarget $t "madvise $($r.Hex) 0 32 $MadvMergeable"
            Wait-Until { [int](Get-Content /proc/$($t.Id)/ksm_merging_pages) -ge 16 } 'KSM to merge the region'
            $null = Send-TestTarget $t "write $($r.Hex) 5 3"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method WriteProtect
            $now = Read-Region $t.Id $r.Address 32 $t.PageSize
            Test-MemoryImage -Path "$dir/inc" | Should -BeTrue
            Get-ChangedPages (Get-RestoredRegion "$dir/inc" $r.Address 32 $t.PageSize) $now $t.PageSize | Should -BeNullOrEmpty -Because 'the increment must hold the pages written after the merge'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'Round 10: transparent huge pages collapsed (MADV_COLLAPSE) and split between samples' -Tag 'WriteTracking', 'Security', 'Round10Tracking' -Skip:([bool]$ThpSkip) {
    # A 4 MiB region of small pages holds a whole 2 MiB-aligned huge page's range; MADV_HUGEPAGE on it. After sample 1
    # the target writes every page of that range (no page there is write-protected any more) and collapses it
    # (MADV_COLLAPSE: whether the kernel made a huge page is measured in smaps, never assumed); after sample 2 it writes
    # into the huge page the tracking protected; after sample 3 a page of it made read-only (mprotect splits the huge
    # page and the mapping), MADV_NOHUGEPAGE, and writes again. Every page written in an interval must be in its sample
    # (Hash: every page whose bytes changed).
    It 'a <Method> watch: each sample has every page written after the collapse, into the huge page, and after the split' -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $huge = [uint64](Get-Content /sys/kernel/mm/transparent_hugepage/hpage_pmd_size)
            $ps = [uint64]$t.PageSize
            $per = [int]($huge / $ps)
            $r = New-Region $t ($per * 2)
            $first = [int]((($r.Address + $huge - 1) - ($r.Address + $huge - 1) % $huge - $r.Address) / $ps) # the first page of the aligned range
            $hex = $r.Hex
            # Small pages first (the region is MADV_NOHUGEPAGE until now), so that only MADV_COLLAPSE can make a huge page.
            $null = Send-TestTarget $t "write $hex 0 $($per * 2)"
            $null = Send-TestTarget $t "madvise $hex 0 $($per * 2) $MadvHugePage"
            $state = @{ N = 0; Written = @{}; Changed = @{}; Log = @() }
            $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Count 5 -Interval 1 | ForEach-Object {
                    $n = ++$state.N
                    if ($n -le 3) {
                        $before = Read-Region $t.Id $r.Address ($per * 2) $t.PageSize
                        $at = $r.Address + [uint64]$first * $ps
                        switch ($n) {
                            1 {
                                $null = Send-TestTarget $t "write $hex $first $per"
                                $rc = Send-TestTarget $t "madvise $hex $first $per $MadvCollapse"
                                $state.Log += "MADV_COLLAPSE errno $rc, AnonHugePages $(Get-MappingAnonHuge $t.Id $at)"
                                $state.Written[$n] = @($first..($first + $per - 1))
                            }
                            2 {
                                $null = Send-TestTarget $t "write $hex $($first + 7) 1"
                                $null = Send-TestTarget $t "write $hex $($first + 300) 2"
                                $state.Log += "AnonHugePages after the writes into it $(Get-MappingAnonHuge $t.Id $at)"
                                $state.Written[$n] = @(($first + 7), ($first + 300), ($first + 301))
                            }
                            3 {
                                $null = Send-TestTarget $t "mprotect $(Hex ($at + 100 * $ps)) 1 $ProtRead"
                                $null = Send-TestTarget $t "madvise $hex $first $per $MadvNoHugePage"
                                $null = Send-TestTarget $t "write $hex $($first + 99) 1"
                                $null = Send-TestTarget $t "write $hex $($first + 101) 1"
                                $null = Send-TestTarget $t "write $hex $($first + $per - 1) 1"
                                $state.Written[$n] = @(($first + 99), ($first + 101), ($first + $per - 1))
                            }
                        }
                        $state.Changed[$n] = Get-ChangedPages $before (Read-Region $t.Id $r.Address ($per * 2) $t.PageSize) $t.PageSize
                    }
                    $_
                })
            Write-Host "${Method}: $($state.Log -join '; ')"
            foreach ($n in 1, 2, 3) {
                $truth = if ($Method -eq 'Hash') { $state.Changed[$n] } else { $state.Written[$n] }
                $got = Get-SampledPages $samples[$n].Ranges $r.Address ($per * 2) $t.PageSize
                foreach ($p in $truth) { $got | Should -Contain $p -Because "page $p was written in sample $($n + 1)'s interval" }
            }
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 10: threads created and gone all the time while write tracking is enabled, used and disabled' -Tag 'WriteTracking', 'Security', 'Round10Tracking' -Skip:([bool]$WtSkip) {
    # The target's churn thread starts one short-lived thread after another (each writes a byte into the next page of
    # the region and exits) through twelve Enable/Disable cycles (a thread that exits while the injection picks one
    # must not make a live process look exited), then writes between a full image and an increment: the target lives on,
    # the churn never stopped, no userfaultfd is left, and the increment restores the memory of its moment.
    It 'Enable- and Disable-WriteTracking under thread churn leave the target whole, and a WriteProtect increment is exact' {
        $t = Start-TestTarget -Path $wtExe
        $dir = New-Item -ItemType Directory (Join-Path $root "churn-$([guid]::NewGuid().ToString('n'))")
        try {
            $r = New-Region $t 64
            $null = Send-TestTarget $t "write $($r.Hex) 0 64"
            $null = Send-TestTarget $t "churn $($r.Hex) 64"
            foreach ($i in 1..12) {
                $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
                Disable-WriteTracking -Id $t.Id -Confirm:$false
                @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count | Should -Be 0
            }
            # The saves run with the churn stopped, so that the image holds the region as the churn left it (a thread stack
            # unmapped during a save is memory that no longer exists, in no image since round 18: not what this case is about).
            $null = Send-TestTarget $t 'churn 0'
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method WriteProtect
            $null = Send-TestTarget $t "churn $($r.Hex) 64"
            Start-Sleep -Milliseconds 300 # let the churn write (not a timing assertion: any number of writes will do)
            $started = [uint64]((Send-TestTarget $t 'churn 0') -replace '^OK ')
            $started | Should -BeGreaterThan 0
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method WriteProtect
            $now = Read-Region $t.Id $r.Address 64 $t.PageSize
            Test-MemoryImage -Path "$dir/inc" | Should -BeTrue
            Get-ChangedPages (Get-RestoredRegion "$dir/inc" $r.Address 64 $t.PageSize) $now $t.PageSize | Should -BeNullOrEmpty -Because 'every page a short-lived thread wrote after the full image must be in the increment'
            (Get-Process -Id $t.Id).HasExited | Should -BeFalse
        } finally { Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'Round 10: a watched target that execs another program, or a setuid-root one, mid-watch' -Tag 'WriteTracking', 'Security', 'Round10Tracking' -Skip:([bool]$WtSkip) {
    # After sample 1 the target execs: wttarget again (a new program under the same pid, which maps and writes), or, as
    # an unprivileged user, a setuid-root program (passwd: its credentials change at exec). The watch must either count
    # the new program's writes or stop with a SoftDirty error: never go on sampling as if nothing happened (the old
    # program's memory is gone), never a System.* error, and never a sample of a root program's memory for a user.
    BeforeAll {
        function Test-ExecMidWatch([string] $Method, [bool] $Setuid) {
            $t = Start-TestTarget -Path $wtExe
            try {
                $r = New-Region $t 16
                $null = Send-TestTarget $t "write $($r.Hex) 0 16"
                $state = @{ N = 0; New = $null; Error = $null; Samples = @() }
                try {
                    Watch-DirtyPage -Id $t.Id -Method $Method -Count 4 -Interval 1 -ErrorAction Stop | ForEach-Object {
                        $state.Samples += $_
                        if (++$state.N -eq 1) {
                            if ($Setuid) { $t.Process.StandardInput.WriteLine('exec /usr/bin/passwd') }
                            else {
                                $t.Process.StandardInput.WriteLine("exec $wtExe")
                                $t.Process.StandardOutput.ReadLine() | Should -Match "^READY $($t.Id) "
                                $state.New = [Convert]::ToUInt64((Send-TestTarget $t 'map 16'), 16)
                                $null = Send-TestTarget $t "write $('{0:x}' -f $state.New) 0 16"
                            }
                        }
                    }
                } catch { $state.Error = $_.FullyQualifiedErrorId }
                if ($state.Error) {
                    $state.Error | Should -Match '^[A-Za-z]+,SoftDirty\.Commands\.WatchDirtyPageCommand$'
                } else {
                    $Setuid | Should -BeFalse -Because 'a user''s watch cannot sample a setuid-root program'
                    $state.Samples.Count | Should -Be 4
                    Get-SampledPages $state.Samples[1].Ranges $state.New 16 $t.PageSize | Should -Be @(0..15) -Because 'the new program wrote these pages in sample 2''s interval'
                }
                # What the user may do next with that pid: a clear SoftDirty answer (the kernel keeps a user out of a root program).
                if ($Setuid) { Get-ErrorId { Disable-WriteTracking -Id $t.Id -Confirm:$false } | Should -Match '^(none|[A-Za-z]+,SoftDirty\.Commands\.DisableWriteTrackingCommand)$' }
            } finally { Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue; Stop-TestTarget $t }
        }
    }

    It 'a <Method> watch across exec of wttarget stops with a SoftDirty error or counts the new program''s pages' -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) { Test-ExecMidWatch $Method $false }

    It 'a <Method> watch of a user across exec of a setuid-root program (passwd) stops with a SoftDirty error, and Disable-WriteTracking then answers clearly' -Skip:([bool]$SetuidSkip) -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) { Test-ExecMidWatch $Method $true }
}

Describe 'Round 10: careless destinations of Invoke-PreCopyMigration and Export-DirtyPageChart' -Tag 'Workflows', 'Security', 'Round10Tracking' -Skip:([bool]$WtSkip) {
    BeforeAll {
        $script:t = Start-TestTarget -Path $wtExe
        $script:reg = New-Region $t 32
        $null = Send-TestTarget $t "write $($reg.Hex) 0 32"
        $script:samples = @(Watch-DirtyPage -Id $t.Id -Method Hash -Count 2 -Interval 0.2)
    }
    AfterAll { Stop-TestTarget $t }

    It 'Invoke-PreCopyMigration -WhatIf writes nothing, stops nothing and tracks nothing' {
        $dest = Join-Path $root "whatif-$([guid]::NewGuid().ToString('n'))"
        Invoke-PreCopyMigration -Id $t.Id -Bandwidth 1GB -Destination $dest -Method WriteProtect -WhatIf | Should -BeNullOrEmpty
        Test-Path $dest | Should -BeFalse
        (Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]') | Should -BeNullOrEmpty
        (Get-Content "/proc/$($t.Id)/status" | Select-String '^TracerPid:\s+0$') | Should -Not -BeNullOrEmpty
        Test-Path (Join-Path $env:SOFTDIRTY_STATE_DIR "$($t.Id).json") | Should -BeFalse
    }

    It 'Export-DirtyPageChart -WhatIf writes no chart' {
        $path = Join-Path $root "whatif-$([guid]::NewGuid().ToString('n')).svg"
        $samples | Export-DirtyPageChart $path -WhatIf -WarningAction SilentlyContinue | Should -BeNullOrEmpty
        Test-Path $path | Should -BeFalse
    }

    It 'two migrations into one destination at once: one makes the chain, the other is refused, and every round is valid' {
        $t2 = Start-TestTarget -Path $wtExe
        $dest = Join-Path $root "shared-$([guid]::NewGuid().ToString('n'))"
        try {
            $r2 = New-Region $t2 32
            $null = Send-TestTarget $t2 "write $($r2.Hex) 0 32"
            $runs = foreach ($id in $t.Id, $t2.Id) {
                $ps = [powershell]::Create()
                $null = $ps.AddScript({
                        param($State, $Module, $Id, $Dest)
                        $env:SOFTDIRTY_STATE_DIR = $State
                        Import-Module $Module
                        Invoke-PreCopyMigration -Id $Id -Bandwidth 1MB -MaxIterations 4 -StopThreshold 0 -Destination $Dest -Mapping '[anon]' -Method Hash -Confirm:$false
                    }).AddParameters(@{ State = $env:SOFTDIRTY_STATE_DIR; Module = (Get-Module SoftDirty).Path; Id = $id; Dest = $dest })
                @{ PowerShell = $ps; Handle = $ps.BeginInvoke(); Id = $id }
            }
            $ends = foreach ($run in $runs) {
                $out = $null; $thrown = $null
                try { $out = $run.PowerShell.EndInvoke($run.Handle) } catch { $thrown = $_.Exception.InnerException ?? $_.Exception }
                [pscustomobject]@{
                    Id = $run.Id; Summary = @($out) | Where-Object { $_.PSObject.Properties['FinalImage'] } | Select-Object -Last 1
                    Errors = @(@($run.PowerShell.Streams.Error | ForEach-Object FullyQualifiedErrorId) + @(if ($thrown -is [System.Management.Automation.IContainsErrorRecord]) { $thrown.ErrorRecord.FullyQualifiedErrorId } elseif ($thrown) { $thrown.GetType().FullName }))
                }
                $run.PowerShell.Dispose()
            }
            $won = @($ends | Where-Object { $_.Summary -and $_.Summary.FinalImage })
            $lost = @($ends | Where-Object { -not ($_.Summary -and $_.Summary.FinalImage) })
            $won.Count | Should -BeGreaterOrEqual 1
            # ImageExists (a round of the other there), or UnsafeDestination (both found the folder absent and the other created it first).
            foreach ($l in $lost) { ($l.Errors -join ' ') | Should -Match '(ImageExists|UnsafeDestination),SoftDirty\.Commands\.InvokePreCopyMigrationCommand' }
            foreach ($img in Get-ChildItem -Directory $dest) {
                Test-MemoryImage -Path $img.FullName | Should -BeTrue -Because "$($img.Name) must be a whole image"
                @((Get-MemoryImage -Path $img.FullName).ProcessId | Select-Object -Unique) | Should -Be @($won[0].Id) -Because 'a chain holds the rounds of one process'
            }
        } finally { Stop-TestTarget $t2 }
    }

    # Round 11 refuses every destination inside an image's folder (it allowed them here, the image staying valid).
    It 'a migration, a restore and an increment whose destination is inside an image are ImageExists and leave that image valid' {
        $dir = New-Item -ItemType Directory (Join-Path $root "inside-$([guid]::NewGuid().ToString('n'))")
        $null = Save-MemoryImage -Id $t.Id -Path "$dir/img" -Method Hash
        Get-ErrorId { Invoke-PreCopyMigration -Id $t.Id -Bandwidth 1GB -MaxIterations 2 -Destination "$dir/img/mig" -Mapping '[anon]' -Method Hash -Confirm:$false } |
            Should -Be 'ImageExists,SoftDirty.Commands.InvokePreCopyMigrationCommand'
        Get-ErrorId { Restore-MemoryImage -Path "$dir/img" -Destination "$dir/img/flat" } | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        Get-ErrorId { Save-MemoryImage -Id $t.Id -Path "$dir/img/inc" -Parent "$dir/img" -Method Hash } | Should -Be 'ImageExists,SoftDirty.Commands.SaveMemoryImageCommand'
        @(Get-ChildItem -Force -LiteralPath "$dir/img").Name | Sort-Object | Should -Be @('index.bin', 'manifest.json', 'pages.bin')
        Test-MemoryImage -Path "$dir/img" | Should -BeTrue
    }

    It 'Export-DirtyPageChart over a file of a memory image (<Name>) is ImageExists and leaves the image valid' -ForEach @(
        @{ Name = 'manifest.json' }, @{ Name = 'index.bin' }, @{ Name = 'pages.bin' }
    ) {
        $dir = New-Item -ItemType Directory (Join-Path $root "chartimg-$([guid]::NewGuid().ToString('n'))")
        $null = Save-MemoryImage -Id $t.Id -Path "$dir/img" -Method Hash
        $before = (Get-FileHash "$dir/img/$Name").Hash
        Get-ErrorId { $samples | Export-DirtyPageChart "$dir/img/$Name" -WarningAction SilentlyContinue } | Should -Be 'ImageExists,SoftDirty.Commands.ExportDirtyPageChartCommand'
        (Get-FileHash "$dir/img/$Name").Hash | Should -Be $before
        Test-MemoryImage -Path "$dir/img" | Should -BeTrue
        # A new file beside the image's files is no harm to it: written.
        $samples | Export-DirtyPageChart "$dir/img/chart.svg" -WarningAction SilentlyContinue | Should -Not -BeNullOrEmpty
        Test-MemoryImage -Path "$dir/img" | Should -BeTrue
    }
}
