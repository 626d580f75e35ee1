#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, seventh attack round (data side), on the images and workflows as round 6 left them (new cases only;
# earlier rounds are in Workflows.Security.Tests.ps1 and Security.Round*.Tests.ps1): -ToSession destination paths of
# other PowerShell providers, streams assembled from the files of different images, branches of emulated
# WriteProtect chains. The engine's side: tests/SoftDirty.Engine.Tests/DataRound7Tests.cs.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r7')
    chmod 0755 $TestDrive $root
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Everything left in a folder, hidden partial folders included.
    function Get-Left([string] $Folder) { @(Get-ChildItem -Force -LiteralPath $Folder -ErrorAction Ignore).Name }
    $script:MigrateId = 'SoftDirty.Commands.InvokePreCopyMigrationCommand'
    $script:ReceiveId = 'SoftDirty.Commands.ReceiveMemoryImageCommand'
}

Describe 'Invoke-PreCopyMigration -ToSession: destination paths of other PowerShell providers' -Tag 'Workflows', 'Security', 'Round7Data' {
    BeforeAll {
        # A local out-of-process runspace stands in for the destination machine (no sshd needed).
        $rs = [runspacefactory]::CreateOutOfProcessRunspace($null); $rs.Open()
        $script:session = [System.Management.Automation.Runspaces.PSSession]::Create($rs, 'Local', $null)
        $module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
        Invoke-Command -Session $session { Import-Module $using:module }
        function New-Source {
            $e = New-EmulatedProcess
            $m = $e | Add-EmulatedMapping -Length 64KB
            $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
            $e
        }
    }
    AfterAll { if ($session) { Remove-PSSession $session } }

    It '-Destination <Path> is InvalidArgument before any round, and no chain appears under the session''s current location' -ForEach @(
        @{ Path = 'Env:\r7chain' }
        @{ Path = 'Variable:\r7chain' }
        @{ Path = 'Function:\r7chain' }
        @{ Path = 'Alias:r7chain' }
    ) {
        # Before the fix the session resolved the path to its bare item name (r7chain) and the images landed in a
        # folder of that name under its current location: a destination the caller never named.
        $there = New-Item -ItemType Directory (New-Dest)
        Invoke-Command -Session $session { Set-Location -LiteralPath $using:there }
        $e = New-Source
        $err = $null
        $out = @($e | Invoke-PreCopyMigration -ToSession $session -Destination $Path -MaxIterations 1 -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable err)
        $out | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be "InvalidArgument,$MigrateId"
        "$($err[0])" | Should -BeLike '*provider*not the file system*'
        Get-Left $there | Should -BeNullOrEmpty
        Invoke-Command -Session $session { Test-Path -LiteralPath $using:Path } | Should -BeFalse -Because 'nothing is made on the other provider either'
    }

    It '-RestorePath on another provider (Env:) is InvalidArgument before any round: no image is sent' {
        # Before the fix it was refused only by the final Restore-MemoryImage, after every round had run and the
        # source had been stopped for the stop-and-copy round.
        $dest = New-Dest
        $e = New-Source
        $err = $null
        $out = @($e | Invoke-PreCopyMigration -ToSession $session -Destination "$dest/chain" -RestorePath 'Env:\r7restore' -MaxIterations 1 -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable err)
        $out | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be "InvalidArgument,$MigrateId"
        Test-Path "$dest/chain" | Should -BeFalse
    }

    It 'a -Destination on a drive that does not exist in the session is InvalidArgument, not LinkBroken' {
        $e = New-Source
        $err = $null
        $null = @($e | Invoke-PreCopyMigration -ToSession $session -Destination 'NoSuchDriveR7:\chain' -MaxIterations 1 -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable err)
        $err[0].FullyQualifiedErrorId | Should -Be "InvalidArgument,$MigrateId"
    }

    It 'wildcard characters in -Destination and -RestorePath are taken literally in the session: the chain goes to [a]b, never to the ab that matches it' {
        $there = New-Item -ItemType Directory (New-Dest)
        $null = New-Item -ItemType Directory "$there/ab"
        $r = @(New-Source | Invoke-PreCopyMigration -ToSession $session -Destination "$there/[a]b/chain" -RestorePath "$there/r*st" -MaxIterations 1 -Confirm:$false)
        $r[-1].FinalImage | Should -BeLike "$there/``[a``]b/chain/*"
        $r[-1].RestorePath | Should -Be "$there/r*st"
        Test-MemoryImage $r[-1].FinalImage | Should -BeTrue
        @(Get-ChildItem -LiteralPath "$there/ab") | Should -BeNullOrEmpty
        @(Get-ChildItem -LiteralPath "$there/r*st" -Filter *.bin).Count | Should -BeGreaterThan 0
    }

    It 'a file-system drive of the session (Temp:) still works, and the summary names the resolved restore folder' {
        $name = "r7-$([guid]::NewGuid().ToString('n'))"
        $e = New-Source
        try {
            $r = @($e | Invoke-PreCopyMigration -ToSession $session -Destination "Temp:/$name/chain" -RestorePath "Temp:/$name/restored" -MaxIterations 1 -Confirm:$false)
            $tmp = Invoke-Command -Session $session { [IO.Path]::GetTempPath().TrimEnd('/') }
            $r[-1].FinalImage | Should -BeLike "$tmp/$name/chain/*"
            $r[-1].RestorePath | Should -Be "$tmp/$name/restored"
            Test-MemoryImage $r[-1].FinalImage | Should -BeTrue
            @(Get-ChildItem "$tmp/$name/restored" -Filter *.bin).Count | Should -BeGreaterThan 0
        } finally { Remove-Item -LiteralPath (Join-Path ([IO.Path]::GetTempPath()) $name) -Recurse -Force -ErrorAction SilentlyContinue }
    }
}

Describe 'Receive-MemoryImage: a stream assembled from the files of two images of one process' -Tag 'Workflows', 'Security', 'Round7Data' {
    BeforeAll {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
        $script:a = New-Dest; $null = $e | Save-MemoryImage -Path $a -Method Hash
        $e | Write-EmulatedMemory -Address $m.Start -Length 4KB -Value 0x5a
        $script:b = New-Dest; $null = $e | Save-MemoryImage -Path $b -Method Hash
        $script:inc = New-Dest; $null = $e | Save-MemoryImage -Path $inc -Parent $a -Method Hash
        # The two full images differ in one page and are otherwise alike (same layout, same sizes).
        (Get-FileHash "$a/pages.bin").Hash | Should -Not -Be (Get-FileHash "$b/pages.bin").Hash
        (Get-Item "$a/pages.bin").Length | Should -Be (Get-Item "$b/pages.bin").Length
        function Get-MixedStream([string] $Pages, [string] $Index, [string] $Manifest) {
            'pages.bin'; , [IO.File]::ReadAllBytes("$Pages/pages.bin")
            'index.bin'; , [IO.File]::ReadAllBytes("$Index/index.bin")
            'manifest.json'; , [IO.File]::ReadAllBytes("$Manifest/manifest.json")
        }
    }

    It '<Label> is ImageCorrupt and nothing is put in place' -ForEach @(
        @{ Label = 'the pages of the later image with the index and manifest of the earlier'; Files = 'b', 'a', 'a' }
        @{ Label = 'the index of the later image between the pages and manifest of the earlier'; Files = 'a', 'b', 'a' }
        @{ Label = 'the manifest of the later image after the pages and index of the earlier'; Files = 'a', 'a', 'b' }
        @{ Label = 'an increment''s pages and manifest with a full image''s index'; Files = 'inc', 'b', 'inc' }
    ) {
        $paths = foreach ($f in $Files) { (Get-Variable $f -Scope Script).Value }
        $parent = New-Item -ItemType Directory (New-Dest)
        # The increment's parent lies beside it, as a chain is received.
        if ($Files[0] -eq 'inc') { $null = Get-Item "$a/pages.bin", "$a/index.bin", "$a/manifest.json" | Receive-MemoryImage -Path (Join-Path $parent (Split-Path -Leaf $a)) }
        $before = @(Get-Left $parent)
        Get-ErrorId { Get-MixedStream @paths | Receive-MemoryImage -Path "$parent/mixed" } | Should -Be "ImageCorrupt,$ReceiveId"
        @(Get-Left $parent) | Should -Be $before
    }
}

Describe 'Emulated chains with -Method WriteProtect: branches' -Tag 'Workflows', 'Security', 'Round7Data' {
    It 'two increments from one parent (a branch): the second holds the page written before its sibling and restores what a full image of that moment restores' {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 256KB
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
        $chain = New-Dest
        $null = $e | Save-MemoryImage -Path "$chain/0" -Method WriteProtect
        $e | Write-EmulatedMemory -Address ($m.Start + 4KB) -Length 4KB -Value 7
        $null = $e | Save-MemoryImage -Path "$chain/a" -Parent "$chain/0" -Method WriteProtect
        $e | Write-EmulatedMemory -Address ($m.Start + 40KB) -Length 4KB -Value 9
        $null = $e | Save-MemoryImage -Path "$chain/b" -Parent "$chain/0" -Method WriteProtect -WarningAction SilentlyContinue
        $full = New-Dest
        $null = $e | Save-MemoryImage -Path $full -Method Hash
        Test-MemoryImage "$chain/b" | Should -BeTrue
        @(Get-RestoredHash "$chain/b" $root) | Should -Be @(Get-RestoredHash $full $root)
    }
}

Describe 'A chain deeper than the open-file limit' -Tag 'Workflows', 'Security', 'Round7Data' {
    It 'Test, Get, Restore and Save (-Parent) say ResourceLimit, never that the valid chain is invalid or has a mismatched parent' {
        $prlimit = Get-Command prlimit -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if (-not $prlimit) { Set-ItResult -Skipped -Because 'prlimit (util-linux) is not installed: the test lowers the open-file limit of a child pwsh with it'; return }
        # Before the fix each image of the chain past the limit failed to open with EMFILE, which the reader took for a
        # broken image: Test-MemoryImage answered $false (a user deletes such a chain) and the others ImageParentMismatch.
        # The child makes the chain of an emulated process of its own (a save's -Parent must be of the same process),
        # then lowers its own limit to what it has open now and a few more: fewer than the chain's images.
        $chain = New-Dest
        $depth = 60
        $leaf = "$chain/$depth"
        $restored = New-Dest
        $out = Invoke-ChildPwsh -ImportModule @"
`$e = New-EmulatedProcess
`$m = `$e | Add-EmulatedMapping -Length 64KB
`$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
`$null = `$e | Save-MemoryImage -Path '$chain/0' -Method Hash
foreach (`$i in 1..$depth) {
    `$e | Write-EmulatedMemory -Address (`$m.Start + 4KB * (`$i % 16)) -Length 4KB -Value (`$i % 250)
    `$null = `$e | Save-MemoryImage -Path "$chain/`$i" -Parent "$chain/`$(`$i - 1)" -Method Hash
}
'valid=' + (Test-MemoryImage '$leaf')
`$open = @(Get-ChildItem /proc/`$PID/fd).Count + 20
& '$($prlimit.Source)' --pid `$PID --nofile=`${open}:`${open}
function Id([scriptblock] `$Run) { try { `$null = & `$Run; 'none' } catch { `$_.FullyQualifiedErrorId.Split(',')[0] } }
'test=' + (Id { Test-MemoryImage '$leaf' -ErrorAction Stop })
'detailed=' + (Id { Test-MemoryImage '$leaf' -Detailed -ErrorAction Stop })
'get=' + (Id { Get-MemoryImage '$leaf' -ErrorAction Stop })
'restore=' + (Id { Restore-MemoryImage '$leaf' '$restored' -ErrorAction Stop })
'save=' + (Id { `$e | Save-MemoryImage -Path '$chain/next' -Parent '$leaf' -Method Hash -ErrorAction Stop })
"@
        $lines = @($out | ForEach-Object { "$_" })
        $lines | Should -Contain 'valid=True' -Because "the chain is valid where descriptors are plenty ($($lines -join '; '))"
        foreach ($command in 'test', 'detailed', 'get', 'restore', 'save') {
            $lines | Should -Contain "$command=ResourceLimit" -Because "$command ($($lines -join '; '))"
        }
        Test-Path $restored | Should -BeFalse
        Test-Path "$chain/next" | Should -BeFalse
        Test-MemoryImage $leaf | Should -BeTrue
    }
}

Describe 'A save that fails after its tracking was collected (a real process)' -Tag 'WriteTracking', 'Security', 'Round7Data' {
    BeforeAll {
        $support = Get-SoftDirtySupport
        # Write tracking of another process as WriteTracking.Tests.ps1 needs it: PAGEMAP_SCAN, WP_ASYNC, x86-64, ptrace of a child.
        $script:WtSkip = if (-not ($support.PagemapScan -and $support.UffdWriteProtectAsync)) { "this kernel lacks PAGEMAP_SCAN or userfaultfd WP_ASYNC: $($support.UffdWriteProtectAsyncReason) $($support.PagemapScanReason)" }
            elseif ([System.Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -ne 'X64') { 'syscall injection is implemented for x86-64 only' }
            elseif ((Test-Path /proc/sys/kernel/yama/ptrace_scope) -and [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) -ge 2) { 'Yama forbids ptrace of a child here' }
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state7d'
    }
    AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

    # Since round 13 a save checks its destination before it touches the process: the refused save
    # collects nothing, so the retry reads the same record of writes and needs no fallback.
    It '-Method WriteProtect: an increment whose destination is taken fails (ImageExists) before it collects the tracking, and the retry from the same parent holds the page written before the failure without a fallback' {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $t = Start-ImgTarget
        try {
            $anon = Send-ImgTarget $t 'map 64'
            $null = Send-ImgTarget $t "fill $anon 64 3"
            $null = Enable-WriteTracking -Id $t.Id
            $chain = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method WriteProtect
            $null = Send-ImgTarget $t "write $anon 5 1"
            $null = New-Item -ItemType Directory "$chain/taken/something" -Force
            Get-ErrorId { Save-MemoryImage -Id $t.Id -Path "$chain/taken" -Parent "$chain/0" -Method WriteProtect } | Should -BeLike 'ImageExists,*'
            $null = Send-ImgTarget $t "write $anon 20 1"
            $w = $null
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect -WarningVariable w -WarningAction SilentlyContinue
            "$w" | Should -Not -BeLike '*reset or restarted since the parent*' -Because 'the refused save left the record of writes alone'
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-ImgTarget $t
        }
        Test-MemoryImage "$chain/1" | Should -BeTrue
        @(Get-RestoredHash "$chain/1" $root) | Should -Be @(Get-RestoredHash $full $root)
    }
}

Describe 'Export-DirtyPageChart: samples of several runs in one chart' -Tag 'Workflows', 'Security', 'Round7Data' {
    BeforeAll {
        function New-Watched {
            $e = New-EmulatedProcess -Name r7chart
            $m = $e | Add-EmulatedMapping -Length 256KB
            @{ Emulator = $e; Workload = @{ Address = $m.Start; Length = 256KB; Pattern = 'HotSet'; AccessesPerSecond = 4000; WriteRatio = 1; Seed = 3 } }
        }
        function Get-Chart([object[]] $Points) {
            $svg = Join-Path $root "chart-$([guid]::NewGuid().ToString('n')).svg"
            $null = $Points | Export-DirtyPageChart -Path $svg
            [xml](Get-Content -Raw $svg)
        }
    }

    It '<Label> are drawn as two series, never one line that jumps back in time' -ForEach @(
        @{ Label = 'two watches of one process, one after the other'; Kind = 'watch' }
        @{ Label = 'the rounds of two migrations (two processes)'; Kind = 'precopy' }
        @{ Label = 'two watches of one process, deserialized (as from a session or Import-Clixml)'; Kind = 'deserialized' }
    ) {
        # Before the fix both runs went into one series (the same process id and name, or "pre-copy rounds"): the line
        # ran through the first run, jumped back to 0 s and drew the second over it, as if one process had done both.
        $w = New-Watched
        $points = switch ($Kind) {
            'watch' { foreach ($i in 1..2) { $w.Emulator | Watch-DirtyPage -Count 3 -Interval 0.5 -Workload $w.Workload } }
            'precopy' { foreach ($i in 1..2) { $x = New-Watched; $x.Emulator | Invoke-PreCopyMigration -Bandwidth 100MB -MaxIterations 2 -StopThreshold 0 -Workload $x.Workload | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] } } }
            'deserialized' {
                $file = Join-Path $root "samples-$([guid]::NewGuid().ToString('n')).xml"
                $(foreach ($i in 1..2) { $w.Emulator | Watch-DirtyPage -Count 3 -Interval 0.5 -Workload $w.Workload }) | Export-Clixml -LiteralPath $file
                Import-Clixml -LiteralPath $file
            }
        }
        $xml = Get-Chart $points
        @($xml.svg.polyline | Where-Object class -eq 'rate').Count | Should -Be 2
        @($xml.svg.text | Where-Object class -eq 'fg legend series').'#text' | Where-Object { $_ -like '*(run 2)' } | Should -Not -BeNullOrEmpty
    }

    It 'one watch is still one series without a legend' {
        $w = New-Watched
        $xml = Get-Chart @($w.Emulator | Watch-DirtyPage -Count 4 -Interval 0.5 -Workload $w.Workload)
        @($xml.svg.polyline | Where-Object class -eq 'rate').Count | Should -Be 1
        @($xml.svg.text | Where-Object class -eq 'fg legend series') | Should -BeNullOrEmpty
    }
}

Describe 'Watch-DirtyPage and Invoke-PreCopyMigration of memory they cannot read (a real process)' -Tag 'Workflows', 'Security', 'Round7Data' {
    BeforeAll {
        # 16 readable anonymous pages and 4 pages of memfd_secret in the target; the reason to skip where the kernel has no memfd_secret.
        function Add-Secret($Target) {
            $anon = Send-ImgTarget $Target 'map 16'
            $null = Send-ImgTarget $Target "fill $anon 16 3"
            $Target.Process.StandardInput.WriteLine('secret 4')
            $line = $Target.Process.StandardOutput.ReadLine()
            if ($line -notlike 'OK*') { return "memfd_secret is not available here (imgtarget: $line)" }
            Wait-ImgTargetIdle $Target
        }
    }

    It 'pages of memfd_secret: each round image that lacks them is said at once (a warning), never a silent Converged with an invalid final image' {
        $t = Start-ImgTarget
        try {
            if ($why = Add-Secret $t) { Set-ItResult -Skipped -Because $why; return }
            # Before the fix the summary said Converged with a FinalImage that Test-MemoryImage called invalid, and not a word.
            $w = $null
            $r = @(Invoke-PreCopyMigration -Id $t.Id -Bandwidth 1GB -Destination (New-Dest) -MaxIterations 2 -StopThreshold 0 -Method Hash -WarningVariable w -WarningAction SilentlyContinue -Confirm:$false)
        } finally { Stop-ImgTarget $t }
        Test-MemoryImage $r[-1].FinalImage | Should -BeFalse
        @($w | Where-Object { "$_" -like "Round 1: 4 present page(s)*could not be read*" }) | Should -HaveCount 1
        @($w | Where-Object { "$_" -like "*$($r[-1].FinalImage) lacks them*" }) | Should -HaveCount 1
    }

    It 'Watch-DirtyPage and a pre-copy without -Destination, -Method Hash, of memfd_secret pages: say once that writes there cannot be seen' {
        $t = Start-ImgTarget
        try {
            if ($why = Add-Secret $t) { Set-ItResult -Skipped -Because $why; return }
            # Before the fix the Hash tracker left those pages unknown and never counted their writes, without a word.
            $w = $null
            $samples = @(Watch-DirtyPage -Id $t.Id -Method Hash -Count 2 -Interval 0.2 -WarningVariable w -WarningAction SilentlyContinue)
            $samples | Should -HaveCount 2
            @($w | Where-Object { "$_" -like '4 present page(s)*could not be read at sample 1*not counted*' }) | Should -HaveCount 1
            $w2 = $null
            $null = @(Invoke-PreCopyMigration -Id $t.Id -Method Hash -Bandwidth 1GB -MaxIterations 2 -StopThreshold 0 -WarningVariable w2 -WarningAction SilentlyContinue -Confirm:$false)
            @($w2 | Where-Object { "$_" -like '4 present page(s)*could not be read at round 2*' }) | Should -HaveCount 1
        } finally { Stop-ImgTarget $t }
    }

    It 'a watch of readable memory only says nothing of unreadable pages' {
        $t = Start-ImgTarget
        try {
            $anon = Send-ImgTarget $t 'map 16'
            $null = Send-ImgTarget $t "fill $anon 16 3"
            $w = $null
            $null = @(Watch-DirtyPage -Id $t.Id -Method Hash -Count 2 -Interval 0.2 -WarningVariable w -WarningAction SilentlyContinue)
            @($w | Where-Object { "$_" -like '*could not be read*' }) | Should -BeNullOrEmpty
        } finally { Stop-ImgTarget $t }
    }
}
