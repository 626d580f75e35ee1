#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, nineteenth attack round, on the memory-image side: memory whose identity changes at an address between the
# images of a chain, in ways rounds 5-18 did not try: a mapping moved with mremap(MREMAP_FIXED) ONTO another one (which
# it replaces: the old bytes, and with write tracking the old registration, are gone there), two mappings swapped, a
# MAP_SHARED memfd moved onto anonymous memory, and memfds truncated and grown again through the target's descriptor
# (MAP_SHARED: the pages past the cut read zero again; MAP_PRIVATE: the copies past the cut are dropped with the file's
# pages, the kernel's even_cows truncation). Emulated chains do the same without reading the pages again (earlier
# rounds read them after MADV_DONTNEED and MAP_FIXED, which maps the zero page: here the increments see them absent).
# Each chain is compared with a full image of the same moment and with an independent reading of the memory
# (/proc/PID/mem, or Read-EmulatedMemory). All held when written (no defect found by these cases).
# Target: tests/native/imgtarget.c ("moveto", "trunc").

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    $Methods = @(@{ Method = 'WriteProtect'; WtSkip = $WtSkip }, @{ Method = 'Hash'; WtSkip = $null })
    # A child pwsh saves while this one drives the target: under Yama's ptrace_scope 1 a user may trace descendants only.
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $SiblingSkip = if (-not $IsLinux) { 'Linux only' } elseif ($yama -ge 3 -or ($yama -ge 1 -and (id -u) -ne '0')) { "Yama's ptrace_scope $yama forbids ptrace of a sibling here" } else { $null }
    $KillCases = foreach ($m in 'WriteProtect', 'Hash') {
        foreach ($ms in 150, 900, 1700) { @{ Method = $m; Ms = $ms; Skip = if ($SiblingSkip) { $SiblingSkip } elseif ($m -eq 'WriteProtect') { Get-WriteTrackingSkipReason -Relation Sibling } else { $null } } }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r19i')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state19i'
    $script:PageSize = [Environment]::SystemPageSize
    function New-Dest([string] $Name = 'd') { Join-Path $root "$Name-$([guid]::NewGuid().ToString('n'))" }
    # A region of the target as Get-RestoredRegionWords and Get-LiveRegionWords take it.
    function New-Region([string] $Hex, [int] $Pages) { [pscustomobject]@{ Address = [Convert]::ToUInt64($Hex, 16); Pages = $Pages; Hex = $Hex } }
    # The leaf of a chain against a full image saved now and against the target's memory read now (/proc/PID/mem): valid,
    # restoring the full image's bytes, and holding the live words of each region.
    function Assert-ExactLeaf($t, [string] $Leaf, $Regions, [string] $Because) {
        $full = New-Dest 'f'
        $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
        Test-MemoryImage $Leaf | Should -BeTrue -Because "$Because`: the leaf"
        Compare-RestoredImage $Leaf $full $root | Should -BeNullOrEmpty -Because "$Because`: the chain restores the full image's bytes"
        foreach ($r in $Regions) {
            Get-RestoredRegionWords $Leaf $r $PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $r $PageSize) -Because "$Because`: 0x$($r.Hex) as /proc/PID/mem reads it"
        }
    }
    # The changes between the first and the second image of each case, on an imgtarget with two written anonymous
    # mappings of 8 pages ($a, $b), an empty one ($park), a MAP_SHARED memfd of 16 pages read in ($md: address, fd) and a
    # MAP_PRIVATE one of 16 pages read in with 10 copied ($mp); the regions whose words are compared with the live memory.
    function Invoke-Change($t, [string] $Case, $a, $b, $park, $md, $mp, $sh) {
        switch -Wildcard ($Case) {
            'an anonymous mapping moved onto another*' { $null = Send-ImgTarget $t "moveto $b 8 $a"; New-Region $a 8 }
            'two anonymous mappings swapped*' {
                $null = Send-ImgTarget $t "moveto $a 8 $park"; $null = Send-ImgTarget $t "moveto $b 8 $a"; $null = Send-ImgTarget $t "moveto $park 8 $b"
                New-Region $a 8; New-Region $b 8
            }
            'a MAP_SHARED memfd moved onto*' { $null = Send-ImgTarget $t "moveto $($sh[0]) 8 $a"; New-Region $a 8 }
            'a MAP_SHARED memfd truncated*' {
                $null = Send-ImgTarget $t "trunc $($md[1]) 4"; $null = Send-ImgTarget $t "trunc $($md[1]) 16"; $null = Send-ImgTarget $t "touch $($md[0]) 0 16"
                New-Region $md[0] 16
            }
            'a MAP_PRIVATE memfd*' {
                $null = Send-ImgTarget $t "pwrite $($mp[1]) 2 3"; $null = Send-ImgTarget $t "trunc $($mp[1]) 6"; $null = Send-ImgTarget $t "trunc $($mp[1]) 16"
                $null = Send-ImgTarget $t "touch $($mp[0]) 0 16"
                New-Region $mp[0] 16
            }
            default { throw "unknown case $Case" }
        }
    }
    function Initialize-Target($t) {
        $a = Send-ImgTarget $t 'map 8'; $null = Send-ImgTarget $t "fill $a 8 3"
        $b = Send-ImgTarget $t 'map 8'; $null = Send-ImgTarget $t "fill $b 8 4"
        $park = Send-ImgTarget $t 'map 8'
        $md = (Send-ImgTarget $t 'memfd 16 1') -split ' '; $null = Send-ImgTarget $t "touch $($md[0]) 0 16"
        $mp = (Send-ImgTarget $t 'memfd 16 0') -split ' '; $null = Send-ImgTarget $t "touch $($mp[0]) 0 16"; $null = Send-ImgTarget $t "write $($mp[0]) 0 10"
        $sh = (Send-ImgTarget $t 'shm 8') -split ' '; $null = Send-ImgTarget $t "fill $($sh[0]) 8 9"
        @{ a = $a; b = $b; park = $park; md = $md; mp = $mp; sh = $sh }
    }
    $script:Cases = @(
        'an anonymous mapping moved onto another (mremap MREMAP_FIXED)'
        'two anonymous mappings swapped through a third'
        'a MAP_SHARED memfd moved onto an anonymous mapping'
        'a MAP_SHARED memfd truncated and grown again through its descriptor'
        'a MAP_PRIVATE memfd with copied pages, written with pwrite(2), truncated and grown again'
    )
}

Describe 'Round 19: mappings moved onto others and memfds truncated and regrown between the images of a chain (a real process)' -Tag 'Workflows', 'Security', 'Round19Images' {
    It '-Method <Method>: each chain of three is valid, restores what a full image of its moment restores and what the process holds' -ForEach $Methods {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        foreach ($case in $Cases) {
            $t = Start-ImgTarget
            try {
                if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id }
                $m = Initialize-Target $t
                $chain = New-Dest 'c'
                $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
                $regions = @(Invoke-Change $t $case $m.a $m.b $m.park $m.md $m.mp $m.sh)
                $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningAction SilentlyContinue
                $null = Send-ImgTarget $t "write $($m.a) 7 1"
                $null = Save-MemoryImage -Id $t.Id -Path "$chain/2" -Parent "$chain/1" -Method $Method -WarningAction SilentlyContinue
                Test-MemoryImage "$chain/1" | Should -BeTrue -Because "$case ($Method): the middle image"
                Assert-ExactLeaf $t "$chain/2" $regions "$case ($Method)"
            } finally {
                if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
                Stop-ImgTarget $t
            }
        }
    }

    It '-Method <Method>: pages dropped (MADV_DONTNEED) in a mapping that a -Mapping middle image left out, <When>, restore as zeros from the next increment of all' -ForEach @(
        foreach ($m in $Methods) { foreach ($w in 'before the middle image', 'after the middle image') { $m + @{ When = $w } } }
    ) {
        # The middle image holds one file mapping: the anonymous one is outside it, so the leaf must override the full
        # image's records of the dropped pages (zeros now) as well as save what the middle one never looked at.
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $t = Start-ImgTarget
        try {
            if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id }
            $file = Join-Path $root "x-$([guid]::NewGuid().ToString('n')).bin"
            [IO.File]::WriteAllBytes($file, [byte[]](1..(8 * $PageSize) | ForEach-Object { $_ % 13 }))
            $x = Send-ImgTarget $t "mapfile $file 8 0"; $null = Send-ImgTarget $t "touch $x 0 8"; $null = Send-ImgTarget $t "write $x 0 3"
            $a = Send-ImgTarget $t 'map 8'; $null = Send-ImgTarget $t "fill $a 8 3"
            $chain = New-Dest 'c'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
            if ($When -like 'before*') { $null = Send-ImgTarget $t "dontneed $a 2 3" }
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -Mapping $file -WarningAction SilentlyContinue
            if ($When -like 'after*') { $null = Send-ImgTarget $t "dontneed $a 2 3" }
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/2" -Parent "$chain/1" -Method $Method -WarningAction SilentlyContinue
            $r = New-Region $a 8
            Assert-ExactLeaf $t "$chain/2" $r "dropped $When ($Method)"
            @(Get-LiveRegionWords $t.Id $r $PageSize)[2..4] | Should -Be @(0, 0, 0) -Because 'the dropped pages read as zeros'
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }

    It 'a -Method <Method> migration: mappings swapped and a private memfd truncated and regrown after its first live round are in its final image as the process holds them' -ForEach $Methods {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        foreach ($case in $Cases[1], $Cases[4]) {
            $t = Start-ImgTarget
            try {
                $m = Initialize-Target $t
                $regions = $null
                $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Destination (New-Dest 'm') -Bandwidth 4MB -MaxIterations 3 -StopThreshold 0 | ForEach-Object {
                        if ($null -eq $regions -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') { $regions = @(Invoke-Change $t $case $m.a $m.b $m.park $m.md $m.mp $m.sh) }
                        $_
                    })
                $regions | Should -Not -BeNullOrEmpty -Because "$case ($Method): a live round ran"
                $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
                Test-MemoryImage -Path $final | Should -BeTrue -Because "$case ($Method)"
                # The regions alone: as the stop-and-copy round resumes the target, the kernel may write its rseq area.
                foreach ($r in $regions) {
                    Get-RestoredRegionWords $final $r $PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $r $PageSize) -Because "$case ($Method): 0x$($r.Hex) as /proc/PID/mem reads it"
                }
            } finally {
                if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
                Stop-ImgTarget $t
            }
        }
    }
}

Describe 'Round 19: pages made absent in an emulated chain and never read again' -Tag 'Workflows', 'Emulator', 'Security', 'Round19Images' {
    It 'profile <Kernel>, -Method <Method>, <Case>: the increment restores what a full image restores and what the process holds' -ForEach @(
        foreach ($k in '6.1', '6.19') {
            # Profile 6.1 has no userfaultfd WP_ASYNC (New-EmulatedProcess): no WriteProtect chain there.
            foreach ($method in @('SoftDirty', 'Hash') + @(if ($k -ne '6.1') { 'WriteProtect' })) {
                foreach ($c in @(
                        'pages dropped (MADV_DONTNEED)'
                        'pages paged out (MADV_PAGEOUT)'
                        'a new mapping put over written pages (MAP_FIXED)'
                        'an empty mapping moved onto written pages'
                        'a partly written mapping moved onto written pages'
                    )) { @{ Kernel = $k; Method = $method; Case = $c } }
            }
        }
    ) {
        $e = New-EmulatedProcess -Name r19 -Kernel $Kernel
        $features = $e | Get-SoftDirtySupport
        if ($Method -eq 'SoftDirty' -and -not $features.SoftDirty) { Set-ItResult -Skipped -Because "profile $Kernel has no soft-dirty"; return }
        if ($Method -eq 'WriteProtect' -and -not $features.UffdWriteProtectAsync) { Set-ItResult -Skipped -Because "profile $Kernel has no userfaultfd WP_ASYNC"; return }
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size -Value 7
        $chain = New-Dest 'e'
        $null = Save-MemoryImage -Emulator $e -Path "$chain/0" -Method $Method -Confirm:$false
        $at = $m.Start + 8KB
        switch -Wildcard ($Case) {
            '*DONTNEED*' { $e | Invoke-EmulatedMadvise -Address $at -Length 16KB -Advice DontNeed }
            '*PAGEOUT*' { $e | Invoke-EmulatedMadvise -Address $at -Length 16KB -Advice PageOut }
            '*MAP_FIXED*' { $null = $e | Add-EmulatedMapping -Address $at -Length 16KB -Fixed }
            'an empty mapping moved*' { $n = $e | Add-EmulatedMapping -Length 8KB; $null = $e | Move-EmulatedMapping -Address $n.Start -Length 8KB -NewAddress $at }
            'a partly written mapping moved*' {
                $n = $e | Add-EmulatedMapping -Length 8KB
                $e | Write-EmulatedMemory -Address $n.Start -Length 4KB -Value 9
                $null = $e | Move-EmulatedMapping -Address $n.Start -Length 8KB -NewAddress $at
            }
        }
        $null = Save-MemoryImage -Emulator $e -Path "$chain/1" -Parent "$chain/0" -Method $Method -Confirm:$false -WarningAction SilentlyContinue
        $full = New-Dest 'f'
        $null = Save-MemoryImage -Emulator $e -Path $full -Method Hash -Confirm:$false
        Test-MemoryImage "$chain/1" | Should -BeTrue
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty
        # The memory as the process reads it now (after both saves: a read maps the zero page where nothing is), against
        # the restored mappings that cover the region (a moved mapping need not merge with its new neighbours).
        $live = [byte[]]($e | Read-EmulatedMemory -Address $m.Start -Length $m.Size -AsByteArray)
        $restored = [byte[]]::new($live.Length)
        $covered = 0
        foreach ($r in Restore-MemoryImage -Path "$chain/1" -Destination (New-Dest 'r')) {
            $from = [Math]::Max($r.Start, $m.Start); $to = [Math]::Min($r.End, $m.End)
            if ($from -ge $to) { continue }
            [Array]::Copy([IO.File]::ReadAllBytes($r.File), [int64]($from - $r.Start), $restored, [int64]($from - $m.Start), [int64]($to - $from))
            $covered += $to - $from
        }
        $covered | Should -Be $m.Size -Because 'the restored mappings cover the region'
        [Convert]::ToHexString($restored) | Should -Be ([Convert]::ToHexString($live))
    }
}

Describe 'Round 19: a PowerShell saving a chain killed outright (SIGKILL), the chain continued by another' -Tag 'Workflows', 'Security', 'Round19Images' {
    It '-Method <Method>, killed <Ms> ms after its first increment: the last image in place is valid, the target runs untraced, and an increment of it is exact' -ForEach $KillCases {
        # The kill lands anywhere in a loop of increments (every other one -Freeze): before a save, while it reads, while
        # it holds the target stopped, while it injects the write-tracking reset, between its files and the rename, or
        # after. In every one of these, what a rename put in place is a whole image (the partial folder is hidden and
        # never read), the kernel detaches a dead tracer's threads (they run on), and an increment of the last image in
        # place either trusts a tracking still at that image's reset or compares contents: it must restore the memory.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-ImgTarget
        $child = $null
        try {
            $a = Send-ImgTarget $t 'map 64'; $null = Send-ImgTarget $t "fill $a 64 3"
            $chain = New-Item -ItemType Directory (New-Dest 'k')
            if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id }
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
            $child = Start-ChildPwsh ("for (`$i = 1; `$i -lt 1000; `$i++) {{ `$null = Save-MemoryImage -Id {0} -Path ('{1}/' + `$i) -Parent ('{1}/' + (`$i - 1)) -Method {2} -Freeze:(`$i % 2 -eq 0) -WarningAction SilentlyContinue }}" -f $t.Id, $chain, $Method)
            $errors = $child.StandardError.ReadToEndAsync()
            $page = 0
            $start = [Diagnostics.Stopwatch]::StartNew()
            while (-not (Test-Path "$chain/1") -and -not $child.HasExited -and $start.Elapsed.TotalSeconds -lt 120) { $null = Send-ImgTarget $t "write $a $(($page++) % 60) 2" }
            Test-Path "$chain/1" | Should -BeTrue -Because "the child saved its first increment ($(if ($child.HasExited) { $errors.Result }))"
            $start.Restart()
            while ($start.Elapsed.TotalMilliseconds -lt $Ms) { $null = Send-ImgTarget $t "write $a $(($page++) % 60) 2" }
            $child.Kill(); $child.WaitForExit()
            $last = @(Get-ChildItem -LiteralPath $chain -Directory | Where-Object Name -Match '^\d+$' | ForEach-Object { [int]$_.Name } | Sort-Object)[-1]
            Test-MemoryImage "$chain/$last" | Should -BeTrue -Because "image $last was put in place whole"
            @(Get-ThreadTracer $t.Id) | Should -BeNullOrEmpty
            (Get-ProcessState $t.Id) | Should -Not -Be 'T' -Because 'a dead tracer''s threads run on'
            $null = Send-ImgTarget $t "write $a 5 7"
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/next" -Parent "$chain/$last" -Method $Method -WarningAction SilentlyContinue
            Assert-ExactLeaf $t "$chain/next" (New-Region $a 64) "killed at $Ms ms ($Method), continued from image $last"
        } finally {
            if ($child -and -not $child.HasExited) { $child.Kill(); $child.WaitForExit() }
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }
}
