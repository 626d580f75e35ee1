#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, eighth attack round, on memory images (new cases only; rounds 2-7 are in Security.Round*.Tests.ps1,
# Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1): memory whose content changes between a parent and its
# increment without a write (pages dropped and read again as the zero page, huge pages split, collapsed, swapped and
# moved), on every emulator profile and on a real process. The engine's side:
# tests/SoftDirty.Engine.Tests/Images/ImageRound8Tests.cs.

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = (id -u) -eq '0'
    $script:WtSkip = Get-WriteTrackingSkipReason
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r8')
    chmod 0755 $TestDrive $root
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state8'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Pages whose content changes without a write between a parent and its increment (emulated)' -Tag 'Workflows', 'Security', 'Round8Images' {
    BeforeDiscovery {
        $changes = [ordered]@{
            'dropped (MADV_DONTNEED) and read again' = 'dontneed-read'
            'dropped and written in part' = 'dontneed-write'
            'swapped out (MADV_PAGEOUT) and read again' = 'pageout-read'
            'made read-only after a write' = 'mprotect-ro'
            'unmapped and mapped again at the same address, then read' = 'remap-read'
        }
        $hugeChanges = [ordered]@{
            'a huge page dropped and read again (the huge zero page)' = 'thp-dontneed-read'
            'half a huge page dropped and the whole read again' = 'thp-halfdrop-read'
            'a huge page split, partly dropped and read again' = 'thp-split-dontneed-read'
            'a huge page moved (mremap)' = 'thp-move'
        }
        $cases = foreach ($k in '6.1', '6.12', '6.18', '7.3') {
            foreach ($m in 'SoftDirty', 'WriteProtect', 'Hash') {
                if ($k -eq '6.1' -and $m -eq 'WriteProtect') { continue } # no PAGEMAP_SCAN there: WriteProtect is refused
                foreach ($c in $changes.GetEnumerator()) { @{ Kernel = $k; Method = $m; Label = $c.Key; Change = $c.Value; Huge = $false } }
                foreach ($c in $hugeChanges.GetEnumerator()) { @{ Kernel = $k; Method = $m; Label = $c.Key; Change = $c.Value; Huge = $true } }
            }
        }
    }

    It 'profile <Kernel>, -Method <Method>, <Label>: the increment restores what a full image of that moment restores' -ForEach $cases {
        # Before the fix, on profile 6.1 (no PAGEMAP_SCAN: the save walks pagemap, as it does for every real process)
        # with SoftDirty, pages dropped and read again map the zero page, which is present and not soft-dirty: the
        # increment neither read nor recorded them, and its restore held the parent's bytes where the process has zeros.
        $e = New-EmulatedProcess -Kernel $Kernel -Name "r8-$Change"
        $len = if ($Huge) { 2MB } else { 64KB }
        $m = if ($Huge) { $e | Add-EmulatedMapping -Length $len -Address 0x40000000 -HugePage } else { $e | Add-EmulatedMapping -Length $len }
        $e | Write-EmulatedMemory -Address $m.Start -Length $len
        $chain = New-Dest
        $null = $e | Save-MemoryImage -Path "$chain/0" -Method $Method
        switch ($Change) {
            'dontneed-read' { $e | Invoke-EmulatedMadvise $m.Start 32KB DontNeed; $e | Read-EmulatedMemory -Address $m.Start -Length 32KB }
            'dontneed-write' { $e | Invoke-EmulatedMadvise $m.Start 32KB DontNeed; $e | Write-EmulatedMemory -Address ($m.Start + 4KB) -Length 4KB }
            'pageout-read' { $e | Invoke-EmulatedMadvise $m.Start 32KB PageOut; $e | Read-EmulatedMemory -Address $m.Start -Length 8KB }
            'mprotect-ro' { $e | Write-EmulatedMemory -Address $m.Start -Length 4KB; $e | Set-EmulatedProtection -Address $m.Start -Length $len -Protection Read }
            'remap-read' { $e | Remove-EmulatedMapping -Address $m.Start -Length $len; $null = $e | Add-EmulatedMapping -Address $m.Start -Length $len -Fixed; $e | Read-EmulatedMemory -Address $m.Start -Length $len }
            'thp-dontneed-read' { $e | Invoke-EmulatedMadvise $m.Start 2MB DontNeed; $e | Read-EmulatedMemory -Address $m.Start -Length 2MB }
            'thp-halfdrop-read' { $e | Invoke-EmulatedMadvise $m.Start 1MB DontNeed; $e | Read-EmulatedMemory -Address $m.Start -Length 2MB }
            'thp-split-dontneed-read' { $e | Invoke-EmulatedMadvise $m.Start 2MB Split; $e | Invoke-EmulatedMadvise $m.Start 64KB DontNeed; $e | Read-EmulatedMemory -Address $m.Start -Length 64KB }
            'thp-move' { $null = $e | Move-EmulatedMapping -Address $m.Start -Length 2MB -NewAddress ($m.Start + 4MB) }
        }
        $null = $e | Save-MemoryImage -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningAction SilentlyContinue
        $full = New-Dest
        $null = $e | Save-MemoryImage -Path $full -Method Hash
        Test-MemoryImage "$chain/1" | Should -BeTrue
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty
    }
}

Describe 'Pages dropped and read again between a parent and its increment (a real process)' -Tag 'Workflows', 'Security', 'Round8Images' {
    BeforeEach {
        $script:t = Start-ImgTarget
        $script:anon = Send-ImgTarget $t 'map 16'
        $null = Send-ImgTarget $t "fill $anon 16 3"
    }
    AfterEach { Stop-ImgTarget $t }

    It '-Method <Method>: 8 pages dropped with MADV_DONTNEED and read again restore as zeros, as a full image of that moment restores them' -ForEach @(
        @{ Method = 'WriteProtect' }
        @{ Method = 'Hash' }
    ) {
        # Where a read fault maps the shared zero page (SharedZeroPage), the page is present, not exclusive, and
        # neither soft-dirty nor written; where it maps a fresh page (this CI host), the fault marks it written.
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        try {
            $chain = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
            $null = Send-ImgTarget $t "dontneed $anon 0 8"
            $null = Send-ImgTarget $t "touch $anon 0 8"
            $inc = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningAction SilentlyContinue
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
        } finally { if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue } }
        $inc.ZeroPages | Should -BeGreaterOrEqual 8
        Test-MemoryImage "$chain/1" | Should -BeTrue
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty
    }
}

Describe 'Paths longer than PATH_MAX' -Tag 'Workflows', 'Security', 'Round8Images' {
    It 'an image chain in a folder whose path is over 4,096 bytes is saved, described, tested, restored and continued like any other' {
        # Before the fix the save wrote the image there (it opens the folders one at a time) and then said
        # ImageIncomplete, "no such image directory", as did Get, Test (False for the valid image), Restore and an
        # increment: they opened the image by its whole path, which the kernel refuses past PATH_MAX (ENAMETOOLONG).
        $deep = $top = New-Dest
        try {
            for ($i = 0; $i -lt 22; $i++) { $deep = Join-Path $deep ('d' * 200) }
            $deep.Length | Should -BeGreaterThan 4096
            $f = New-FilledEmulator 16
            $e = $f.Emulator
            $full = $e | Save-MemoryImage -Path "$deep/0" -ErrorAction Stop
            $full.DataPages | Should -Be 16
            $e | Write-EmulatedMemory -Address ($f.Mapping.Start + 4KB) -Length 4KB -Value 9
            $inc = $e | Save-MemoryImage -Path "$deep/1" -Parent "$deep/0" -ErrorAction Stop
            $inc.DataPages | Should -Be 1
            @(Get-MemoryImage "$deep/1" -ErrorAction Stop).Depth | Should -Be @(0, 1)
            Test-MemoryImage "$deep/1" | Should -BeTrue
            $short = New-Dest
            $null = $e | Save-MemoryImage -Path $short -Method Hash
            Compare-RestoredImage "$deep/1" $short $root | Should -BeNullOrEmpty
            $into = Join-Path $deep 'restored'
            $restored = @(Restore-MemoryImage -Path "$deep/1" -Destination $into -ErrorAction Stop)
            $restored.Count | Should -Be 1
            $restored[0].PagesWritten | Should -Be 16
        } finally { rm -rf -- $top } # (past PATH_MAX: rm walks with openat; Pester's own clean-up may not)
    }
}

Describe 'A process whose main thread has exited (pthread_exit) while others run on' -Tag 'Workflows', 'Security', 'Round8Images' {
    BeforeAll {
        # wttarget's "mainexit": another thread takes over the commands, the main thread exits (a zombie until the end).
        $psi = [System.Diagnostics.ProcessStartInfo]::new((Join-Path $PSScriptRoot '../native/bin/wttarget'))
        $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
        $script:w = [System.Diagnostics.Process]::Start($psi)
        $null = $w.StandardOutput.ReadLine()
        function Send-W([string] $Command) {
            $w.StandardInput.WriteLine($Command)
            $line = $w.StandardOutput.ReadLine()
            if ($line -notlike 'OK*') { throw "wttarget: '$Command' -> '$line'" }
            $line.Substring(2).Trim()
        }
        $script:region = Send-W 'map 8'
        $null = Send-W "write $region 0 8"
        $null = Send-W 'mainexit'
        $deadline = [DateTime]::UtcNow.AddSeconds(10)
        while ((Get-ProcessState $w.Id) -ne 'Z' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 10 }
    }
    AfterAll { if ($w -and -not $w.HasExited) { $w.Kill(); $null = $w.WaitForExit(5000) } }

    It '<Label> says ProcIOError naming the main thread, not ProcessExited, and the process runs on' -ForEach @(
        @{ Label = 'Save-MemoryImage'; Command = { param($Id, $Dest) Save-MemoryImage -Id $Id -Path $Dest -Method Hash } }
        @{ Label = 'Save-MemoryImage -Freeze'; Command = { param($Id, $Dest) Save-MemoryImage -Id $Id -Path $Dest -Method Hash -Freeze } }
        @{ Label = 'Get-PageMap'; Command = { param($Id, $Dest) Get-PageMap -Id $Id -Present } }
        @{ Label = 'Get-MemoryMapping'; Command = { param($Id, $Dest) Get-MemoryMapping -Id $Id } }
        @{ Label = 'Watch-DirtyPage -Method Hash'; Command = { param($Id, $Dest) Watch-DirtyPage -Id $Id -Method Hash -Count 1 -Interval 0.1 } }
    ) {
        # Before the fix each said ProcessExited ("exited while reading maps"; -Freeze: "exited while it was being
        # frozen", from the zombie main thread's PTRACE_SEIZE) for a process that was running.
        Get-ProcessState $w.Id | Should -Be 'Z' -Because 'the main thread is a zombie; another serves the commands'
        $dest = New-Dest
        $out = $caught = $null
        $ErrorActionPreference = 'Stop' # the first error, terminating or not
        try { $out = & $Command $w.Id $dest } catch { $caught = $_ }
        $out | Should -BeNullOrEmpty
        $caught.FullyQualifiedErrorId | Should -BeLike 'ProcIOError,*'
        "$caught" | Should -Match 'main thread has exited'
        Test-Path -LiteralPath $dest | Should -BeFalse
        Send-W "write $region 0 8" | Should -Be '8' -Because 'the process is left running, not stopped'
    }
}

Describe 'Processes that change under a chain (a real process)' -Tag 'Workflows', 'Security', 'Round8Images' {
    It 'a process that exec()s another program between the parent and the increment, -Method <Method>: the increment restores what a full image of that moment restores' -ForEach @(
        @{ Method = 'Hash' }
        @{ Method = 'WriteProtect' }
    ) {
        # The pid and its start time stay the same across exec (the chain accepts the parent); the memory is all new.
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $perl = Get-Command perl -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
        if (-not $perl) { Set-ItResult -Skipped -Because 'perl is not installed (the program that execs)'; return }
        $psi = [System.Diagnostics.ProcessStartInfo]::new($perl.Source)
        foreach ($a in '-e', ('my $l = <STDIN>; exec "{0}"' -f (Resolve-Path (Join-Path $PSScriptRoot '../native/bin/imgtarget')).Path)) { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
        $p = [System.Diagnostics.Process]::Start($psi)
        try {
            $t = [pscustomobject]@{ Process = $p; Id = $p.Id }
            Wait-ImgTargetIdle $t # perl waits in read(2) for its line
            $chain = New-Dest
            $parent = Save-MemoryImage -Id $p.Id -Path "$chain/0" -Method $Method
            $parent.ProcessName | Should -Be 'perl'
            $p.StandardInput.WriteLine('go')
            $p.StandardOutput.ReadLine() | Should -BeLike 'READY*'
            $anon = Send-ImgTarget $t 'map 16'
            $null = Send-ImgTarget $t "fill $anon 16 3"
            $inc = Save-MemoryImage -Id $p.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningAction SilentlyContinue
            $inc.ProcessName | Should -Be 'imgtarget'
            $full = New-Dest
            $null = Save-MemoryImage -Id $p.Id -Path $full -Method Hash
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $p.Id -ErrorAction SilentlyContinue }
            if (-not $p.HasExited) { $p.Kill() }; $null = $p.WaitForExit(5000)
        }
        Test-MemoryImage "$chain/1" | Should -BeTrue
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty
    }

    It 'a private mapping of a file truncated to nothing between the parent and the increment, -Method <Method>: its pages restore as zeros, as a full image of that moment restores them' -ForEach @(
        @{ Method = 'Hash' }
        @{ Method = 'WriteProtect' }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $t = Start-ImgTarget
        try {
            $file = Join-Path $root "file-$(New-Guid)"
            $bytes = [byte[]]::new(16 * 4096); [Random]::new(8).NextBytes($bytes); [IO.File]::WriteAllBytes($file, $bytes)
            $mapped = Send-ImgTarget $t "file $file 16"
            $null = Send-ImgTarget $t "touch $mapped 0 16"
            $chain = New-Dest
            $parent = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
            $parent.DataPages | Should -BeGreaterOrEqual 16
            [IO.File]::WriteAllBytes($file, [byte[]]::new(0)) # truncate: the kernel drops the pages past the end
            $inc = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningAction SilentlyContinue
            $inc.ZeroPages | Should -BeGreaterOrEqual 16
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
        Test-MemoryImage "$chain/1" | Should -BeTrue
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty
    }

    It 'an image of a real process restored into an emulated process (-Emulator) and saved from there holds the same bytes at every address' {
        $t = Start-ImgTarget
        try {
            $anon = Send-ImgTarget $t 'map 16'
            $null = Send-ImgTarget $t "fill $anon 16 3"
            $null = Send-ImgTarget $t "protect $anon 4 0"
            $img = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $img -Method Hash
        } finally { Stop-ImgTarget $t }
        $e = New-EmulatedProcess -Name restored
        $null = Restore-MemoryImage -Path $img -Emulator $e
        $again = New-Dest
        $null = $e | Save-MemoryImage -Path $again
        # Page by page (the emulator merges adjacent anonymous mappings, as the kernel does, so the files differ in cut).
        function Get-PageHashes([string] $Image) {
            $h = @{}
            $sha = [Security.Cryptography.SHA256]::Create()
            foreach ($m in Restore-MemoryImage -Path $Image -Destination (New-Dest)) {
                $b = [IO.File]::ReadAllBytes($m.File)
                for ($i = 0; $i -lt $b.Length; $i += 4096) { $h[[uint64]$m.Start + [uint64]$i] = [Convert]::ToHexString($sha.ComputeHash($b, $i, 4096)) }
            }
            $h
        }
        $a = Get-PageHashes $img; $b = Get-PageHashes $again
        $a.Count | Should -BeGreaterThan 16
        $b.Count | Should -Be $a.Count
        @($a.Keys | Where-Object { $a[$_] -ne $b[$_] }) | Should -BeNullOrEmpty
    }
}

Describe 'Restores that race or are stopped' -Tag 'Workflows', 'Security', 'Round8Images' {
    BeforeAll {
        $e = New-EmulatedProcess -Name big
        foreach ($len in 24MB, 8MB) { $m = $e | Add-EmulatedMapping -Length $len; $e | Write-EmulatedMemory -Address $m.Start -Length $len }
        $script:big = New-Dest
        $null = $e | Save-MemoryImage -Path $big
        $script:expected = @(Get-RestoredHash $big $root)
    }

    It 'three restores of one image into one destination at once: one wins whole, the others say ImageExists, nothing else is left' {
        $dest = New-Dest
        $module = (Get-Module SoftDirty).Path
        $jobs = 1..3 | ForEach-Object {
            Start-ThreadJob -ArgumentList $big, $dest, $module {
                param($Image, $Dest, $Module)
                Import-Module $Module
                try { $null = Restore-MemoryImage -Path $Image -Destination $Dest -ErrorAction Stop; 'ok' } catch { $_.FullyQualifiedErrorId }
            }
        }
        $results = @($jobs | Wait-Job -Timeout 300 | Receive-Job)
        $results.Count | Should -Be 3
        @($results | Where-Object { $_ -eq 'ok' }).Count | Should -Be 1
        @($results | Where-Object { $_ -like 'ImageExists,*' }).Count | Should -Be 2
        @(Get-ChildItem -LiteralPath $dest -Filter *.bin | Sort-Object Name | ForEach-Object { '{0}={1}' -f $_.Name, (Get-FileHash -LiteralPath $_.FullName).Hash }) | Should -Be $expected
        @(Get-ChildItem -Force -LiteralPath $root | Where-Object Name -like '*.partial-*') | Should -BeNullOrEmpty
    }

    It 'a restore stopped (PowerShell.Stop, as Ctrl+C) at <Ms> ms: the destination is absent or whole, never partial, and no partial folder is left' -ForEach @(
        foreach ($ms in 0, 20, 60, 120, 250, 400) { @{ Ms = $ms } }
    ) {
        $dest = New-Dest
        $ps = [PowerShell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$((Get-Module SoftDirty).Path)'; Restore-MemoryImage -Path '$big' -Destination '$dest'")
            $null = $ps.BeginInvoke()
            Start-Sleep -Milliseconds $Ms
            $ps.Stop()
        } finally { $ps.Dispose() }
        if (Test-Path -LiteralPath $dest) {
            Test-Path -LiteralPath (Join-Path $dest 'mappings.json') | Should -BeTrue
            @(Get-ChildItem -LiteralPath $dest -Filter *.bin | Sort-Object Name | ForEach-Object { '{0}={1}' -f $_.Name, (Get-FileHash -LiteralPath $_.FullName).Hash }) | Should -Be $expected
        }
        @(Get-ChildItem -Force -LiteralPath $root | Where-Object Name -like ".$(Split-Path -Leaf $dest).partial-*") | Should -BeNullOrEmpty
    }
}
