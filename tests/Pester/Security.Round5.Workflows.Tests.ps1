#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, fifth attack round, on the workflow and process-control side (new cases only; rounds 1-4 are in
# Workflows.Security.Tests.ps1 and Security.Round2/3/4.Tests.ps1): writes the page-table trackers cannot see
# (another process writing a shared file mapping, /proc/PID/mem), targets that are stopped, traced by someone
# else, zombies or forged in a state file, Ctrl+C (StopProcessing) in the long loops of real targets, hostile
# names and deserialized values in charts, and trace files that are FIFOs or devices.

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $HasMkfifo = [bool](Get-Command mkfifo -CommandType Application -ErrorAction SilentlyContinue)
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    $PtraceSkip = if ((Test-Path /proc/sys/kernel/yama/ptrace_scope) -and ($scope = [int](Get-Content /proc/sys/kernel/yama/ptrace_scope)) -ge 2 -and ($scope -ge 3 -or (id -u) -ne '0')) { $true } else { $false }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r5w')
    chmod 0755 $TestDrive $root
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:sdExe = Join-Path $PSScriptRoot '../native/bin/sdtarget'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    function Get-Left([string] $Folder) { @(Get-ChildItem -Force -LiteralPath $Folder -ErrorAction Ignore).Name }
    function Get-UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count }
    function Get-StatusField([int] $Id, [string] $Field) { ((Get-Content "/proc/$Id/status" | Where-Object { $_ -like "${Field}:*" }) -split '\s+')[1] }
    # Writes $Bytes at $Offset of a file, as another process sharing its pages would (write(2) into the page cache).
    function Write-FileAt([string] $Path, [long] $Offset, [byte[]] $Bytes) {
        $fs = [IO.File]::Open($Path, 'Open', 'ReadWrite', 'ReadWrite')
        try { $fs.Position = $Offset; $fs.Write($Bytes, 0, $Bytes.Length) } finally { $fs.Dispose() }
    }
    function Read-FileAt([string] $Path, [long] $Offset, [int] $Length) {
        $fs = [IO.File]::OpenRead($Path)
        try { $fs.Position = $Offset; $b = [byte[]]::new($Length); $null = $fs.Read($b, 0, $Length); , $b } finally { $fs.Dispose() }
    }
    # The flat file Restore-MemoryImage writes for the mapping that starts at $Start.
    function Get-RestoredBytes([string] $Destination, [uint64] $Start) {
        $f = Get-ChildItem -LiteralPath $Destination -Filter "$('{0:x}' -f $Start)-*.bin" | Select-Object -First 1
        if (-not $f) { throw "no restored file for 0x$('{0:x}' -f $Start) in $Destination" }
        , [IO.File]::ReadAllBytes($f.FullName)
    }
    # Runs $Script (with $Arguments: its param block) in a new runspace with the module; returns @{ PowerShell; Handle }.
    function Start-Runspace([string] $Script, [object[]] $Arguments) {
        # One script, not a batch (AddStatement): a batch stopped and disposed crashed the host (PowerShell's
        # BatchInvocationWorkItem on the closed runspace).
        $ps = [powershell]::Create()
        $null = $ps.AddScript("param([object[]] `$Arguments) Import-Module '$((Get-Module SoftDirty).Path)'; `$body = { $Script }; & `$body @Arguments").AddParameter('Arguments', $Arguments)
        @{ PowerShell = $ps; Handle = $ps.BeginInvoke() }
    }
    # Stops a runspace's command (Ctrl+C) and says whether it returned within the hang limit.
    function Stop-Runspace($Run) {
        $stop = $Run.PowerShell.BeginStop($null, $null)
        $returned = $stop.AsyncWaitHandle.WaitOne(60000)
        $Run.PowerShell.Dispose()
        $returned
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Writes another process makes to memory the target shares' -Tag 'WriteTracking', 'Security', 'Round5Workflows' -Skip:([bool]$WtSkip) {
    # A MAP_SHARED file mapping changes when anyone writes the file: no bit of the target's page table
    # changes, so SoftDirty and WriteProtect alone never saw it (before the fix: Watch reported 0 pages, an
    # increment inherited the old bytes and restored memory that differed from the process's).
    BeforeEach {
        $script:t = Start-TestTarget -Path $sdExe
        $script:file = Join-Path $root "shared-$([guid]::NewGuid().ToString('n'))"
        $script:base = $t.Map(16, "file $file")
        $null = $t.Send("write $(Hex $base) 0 16")
    }
    AfterEach {
        if (Test-Path "/proc/$($t.Id)") { Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue }
        Stop-TestTarget $t
    }

    It 'Watch-DirtyPage -Method <Method> counts the page another process wrote through the file' -ForEach @(
        @{ Method = 'WriteProtect' }
        @{ Method = 'Hash' }
    ) {
        $job = Start-ThreadJob { param($f) Start-Sleep -Milliseconds 400; $fs = [IO.File]::Open($f, 'Open', 'ReadWrite', 'ReadWrite'); $fs.Position = 5 * 4096; $fs.Write([byte[]](0xA5) * 64, 0, 64); $fs.Dispose() } -ArgumentList $file
        $samples = Watch-DirtyPage -Id $t.Id -Method $Method -Count 2 -Interval 0.8 -Mapping $file
        $null = $job | Wait-Job | Receive-Job; Remove-Job $job
        ($samples | Measure-Object DirtyPages -Sum).Sum | Should -BeGreaterOrEqual 1
        $samples.Ranges.Start | Should -Contain ($base + 5 * [uint64]$t.PageSize)
    }

    It 'an increment saved with -Method WriteProtect after another process wrote the file restores the file''s bytes' {
        $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
        $full = New-Dest; $inc = New-Dest; $dest = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path $full -Method WriteProtect -Mapping $file -Confirm:$false
        Write-FileAt $file (3 * 4096) ([byte[]](0x5A) * 100)
        $r = Save-MemoryImage -Id $t.Id -Path $inc -Parent $full -Method WriteProtect -Mapping $file -Confirm:$false
        $r.DataPages | Should -BeGreaterOrEqual 1
        $null = Restore-MemoryImage -Path $inc -Destination $dest -Confirm:$false
        $bytes = Get-RestoredBytes $dest $base
        [byte[]]$bytes[(3 * 4096)..(3 * 4096 + 99)] | Should -Be (Read-FileAt $file (3 * 4096) 100)
    }

    It 'a local pre-copy migration with -Method WriteProtect while another process writes the file restores what the file holds at the end' {
        $dest = New-Dest; $restore = New-Dest
        # The writer stops long before the migration can end: the first live round alone takes about a second
        # on the simulated 64 KiB/s link.
        $job = Start-ThreadJob { param($f) for ($v = 1; $v -le 20; $v++) { $fs = [IO.File]::Open($f, 'Open', 'ReadWrite', 'ReadWrite'); $fs.Position = 7 * 4096; $fs.Write([byte[]]@($v) * 32, 0, 32); $fs.Dispose(); Start-Sleep -Milliseconds 10 } } -ArgumentList $file
        $out = Invoke-PreCopyMigration -Id $t.Id -Method WriteProtect -Mapping $file -Bandwidth 64KB -MaxIterations 4 -StopThreshold 0 -Destination $dest -Confirm:$false
        $null = $job | Wait-Job | Receive-Job; Remove-Job $job
        $summary = $out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopySummary] }
        $null = Restore-MemoryImage -Path $summary.FinalImage -Destination $restore -Confirm:$false
        $bytes = Get-RestoredBytes $restore $base
        [byte[]]$bytes[(7 * 4096)..(7 * 4096 + 31)] | Should -Be (Read-FileAt $file (7 * 4096) 32)
    }

    It 'Watch-DirtyPage -Method WriteProtect sees a write another process makes through /proc/PID/mem into private memory (the kernel takes the write fault)' {
        $a = $t.Map(8)
        $null = $t.Send("write $(Hex $a) 0 8")
        $job = Start-ThreadJob { param($id, $at) Start-Sleep -Milliseconds 400; $fs = [IO.File]::Open("/proc/$id/mem", 'Open', 'ReadWrite', 'ReadWrite'); $fs.Position = [int64]$at; $fs.Write([byte[]](0x77) * 8, 0, 8); $fs.Dispose() } -ArgumentList $t.Id, ($a + 2 * [uint64]$t.PageSize)
        $samples = Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.8 -Address $a -Length (8 * [uint64]$t.PageSize)
        $null = $job | Wait-Job | Receive-Job; Remove-Job $job
        $samples.Ranges.Start | Should -Contain ($a + 2 * [uint64]$t.PageSize)
    }

    It 'Save-MemoryImage -Method WriteProtect -Verify compares every present page, and an increment after a reset of the tracking warns' {
        # Before the fix a second switch case for another process's WriteProtect was shadowed by an older one:
        # -Verify and the reset warning were never reached.
        $a = $t.Map(32)
        $null = $t.Send("write $(Hex $a) 0 32")
        $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
        $full = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path $full -Method WriteProtect -Mapping '[anon]' -Confirm:$false
        $null = $t.Send("write $(Hex $a) 1 1")
        $v = Save-MemoryImage -Id $t.Id -Path (New-Dest) -Parent $full -Method WriteProtect -Verify -Mapping '[anon]' -Confirm:$false
        $v.ScannedPages | Should -BeGreaterOrEqual 32 -Because '-Verify compares the contents of every present page, not only the written one'
        $v.DataPages | Should -BeGreaterOrEqual 1
        $null = Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 1 -Interval 0.05 -Address $a -Length (32 * [uint64]$t.PageSize)
        $w = $null
        $null = Save-MemoryImage -Id $t.Id -Path (New-Dest) -Parent $full -Method WriteProtect -Mapping '[anon]' -Confirm:$false -WarningVariable w -WarningAction SilentlyContinue
        "$w" | Should -BeLike '*was reset or restarted since the parent image*'
    }
}

Describe 'Targets that are stopped, traced by someone else, zombies, or forged' -Tag 'WriteTracking', 'Security', 'Round5Workflows' -Skip:([bool]$WtSkip) {
    It 'Enable- and Disable-WriteTracking of a stopped (SIGSTOP) process finish, leave it stopped, and its tracking works after SIGCONT' {
        $t = Start-TestTarget -Path $sdExe
        try {
            $a = $t.Map(8)
            $null = $t.Send("write $(Hex $a) 0 8")
            kill -STOP $t.Id
            while ((Get-ProcessState $t.Id) -ne 'T') { Start-Sleep -Milliseconds 10 }
            $state = Enable-WriteTracking -Id $t.Id -Confirm:$false
            $state.ProcessId | Should -Be $t.Id
            Get-ProcessState $t.Id | Should -Be 'T' -Because 'a process stopped before stays stopped'
            kill -CONT $t.Id
            # (The target's pipes directly: a script method of the test module would wait for this runspace.)
            $job = Start-ThreadJob { param($p, $a) Start-Sleep -Milliseconds 300; $p.StandardInput.WriteLine("write $('{0:x}' -f $a) 3 1"); $p.StandardInput.Flush(); $p.StandardOutput.ReadLine() } -ArgumentList $t.Process, $a
            $samples = Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.6 -Address $a -Length (8 * [uint64]$t.PageSize)
            $null = $job | Wait-Job | Receive-Job; Remove-Job $job
            $samples.Ranges.Start | Should -Contain ($a + 3 * [uint64]$t.PageSize)
            kill -STOP $t.Id
            while ((Get-ProcessState $t.Id) -ne 'T') { Start-Sleep -Milliseconds 10 }
            Disable-WriteTracking -Id $t.Id -Confirm:$false
            Get-ProcessState $t.Id | Should -Be 'T'
            Get-UffdCount $t.Id | Should -Be 0
            kill -CONT $t.Id
            $t.Send('ping') | Should -Be "$($t.Id)"
        } finally { kill -CONT $t.Id 2>$null; Stop-TestTarget $t }
    }

    It 'Save-MemoryImage -Freeze, Enable-WriteTracking and Watch-DirtyPage -Method WriteProtect of a process another tracer holds fail cleanly, leaving its tracer and state as they were' {
        $w = Start-TestTarget -Path $wtExe
        try {
            $child = [int]$w.Send('traced')
            while ((Get-StatusField $child 'TracerPid') -ne "$($w.Id)") { Start-Sleep -Milliseconds 10 }
            $before = Get-ProcessState $child
            $dest = New-Dest
            Get-ErrorId { Save-MemoryImage -Id $child -Path $dest -Freeze -Method Hash -Confirm:$false } | Should -Be 'ProcessAlreadyTraced,SoftDirty.Commands.SaveMemoryImageCommand' -Because 'as Enable-WriteTracking says (PermissionDenied before)'
            Test-Path $dest | Should -BeFalse
            Get-ErrorId { Enable-WriteTracking -Id $child -Confirm:$false } | Should -Be 'ProcessAlreadyTraced,SoftDirty.Commands.EnableWriteTrackingCommand'
            Get-ErrorId { Watch-DirtyPage -Id $child -Method WriteProtect -Count 1 -Interval 0.05 } | Should -Be 'ProcessAlreadyTraced,SoftDirty.Commands.WatchDirtyPageCommand'
            Get-StatusField $child 'TracerPid' | Should -Be "$($w.Id)"
            Get-ProcessState $child | Should -Be $before
            Get-UffdCount $child | Should -Be 0
        } finally {
            if ($child) { kill -KILL $child 2>$null } # wttarget's traced child outlives it (and holds its output pipe)
            Stop-TestTarget $w
        }
    }

    It 'a zombie is ProcessExited for Save -Freeze, Enable-WriteTracking, Watch-DirtyPage and Invoke-PreCopyMigration, and is still a zombie its parent can reap' {
        $t = Start-TestTarget -Path $sdExe
        try {
            $z = [int]$t.Send('forkexit')
            while ((Get-ProcessState $z) -ne 'Z') { Start-Sleep -Milliseconds 10 }
            $dest = New-Dest
            Get-ErrorId { Save-MemoryImage -Id $z -Path $dest -Freeze -Confirm:$false } | Should -BeLike 'ProcessExited,*'
            Get-ErrorId { Enable-WriteTracking -Id $z -Confirm:$false } | Should -BeLike 'ProcessExited,*'
            Get-ErrorId { Watch-DirtyPage -Id $z -Count 1 -Interval 0.05 } | Should -BeLike 'ProcessExited,*'
            Get-ErrorId { Invoke-PreCopyMigration -Id $z -Bandwidth 1GB -Destination $dest -Confirm:$false } | Should -BeLike 'ProcessExited,*'
            Test-Path $dest | Should -BeFalse
            Get-ProcessState $z | Should -Be 'Z'
            $t.Send("reap $z") | Should -Be '0'
        } finally { Stop-TestTarget $t }
    }

    It 'a forged state file (another live process''s pid with the tracked one''s start time and descriptor) is discarded: Disable-WriteTracking touches neither' {
        $a = Start-TestTarget -Path $sdExe
        $b = Start-TestTarget -Path $sdExe
        try {
            $null = Enable-WriteTracking -Id $a.Id -Confirm:$false
            $stateFile = Get-ChildItem $env:SOFTDIRTY_STATE_DIR -Recurse -Filter "$($a.Id).*" | Select-Object -First 1
            $stateFile | Should -Not -BeNullOrEmpty
            $json = Get-Content -Raw $stateFile.FullName | ConvertFrom-Json
            $fdsBefore = @(Get-ChildItem "/proc/$($b.Id)/fd").Count
            foreach ($forged in @(
                    @{ ProcessId = $b.Id }                                                    # a's start time and inode
                    @{ ProcessId = $b.Id; StartTime = [uint64]((Get-Content "/proc/$($b.Id)/stat" -Raw).Split(')')[1].Trim().Split(' ')[19]) })) {
                $j = $json | ConvertTo-Json | ConvertFrom-Json
                foreach ($k in $forged.Keys) { $j.$k = $forged[$k] }
                $path = Join-Path $stateFile.DirectoryName ($stateFile.Name -replace "^$($a.Id)", "$($b.Id)")
                $j | ConvertTo-Json | Set-Content -LiteralPath $path
                chmod 0600 $path
                Get-ErrorId { Disable-WriteTracking -Id $b.Id -Confirm:$false } | Should -Be 'WriteTrackingNotEnabled,SoftDirty.Commands.DisableWriteTrackingCommand'
                Test-Path -LiteralPath $path | Should -BeFalse -Because 'a state that does not match its process is removed'
                @(Get-ChildItem "/proc/$($b.Id)/fd").Count | Should -Be $fdsBefore
                Get-StatusField $b.Id 'TracerPid' | Should -Be '0'
            }
            Get-UffdCount $a.Id | Should -Be 1 -Because 'the real tracking of a is untouched'
            Disable-WriteTracking -Id $a.Id -Confirm:$false
            Get-UffdCount $a.Id | Should -Be 0
        } finally { Stop-TestTarget $a; Stop-TestTarget $b }
    }

    It 'a tracked process that exited: Disable-WriteTracking says so (no injection into whatever has its pid), and the next Enable-WriteTracking removes its state file' {
        $t = Start-TestTarget -Path $sdExe
        $id = $t.Id
        $null = Enable-WriteTracking -Id $id -Confirm:$false
        Stop-TestTarget $t
        Get-ErrorId { Disable-WriteTracking -Id $id -Confirm:$false } | Should -BeIn 'WriteTrackingNotEnabled,SoftDirty.Commands.DisableWriteTrackingCommand', 'ProcessNotFound,SoftDirty.Commands.DisableWriteTrackingCommand'
        $other = Start-TestTarget -Path $sdExe
        try {
            $null = Enable-WriteTracking -Id $other.Id -Confirm:$false
            @(Get-ChildItem $env:SOFTDIRTY_STATE_DIR -Recurse -Filter "$id.*" -ErrorAction Ignore).Count | Should -Be 0 -Because 'states of processes that are gone are removed whenever a state is saved (README)'
            Disable-WriteTracking -Id $other.Id -Confirm:$false
        } finally { Stop-TestTarget $other }
    }
}

Describe 'Ctrl+C (StopProcessing) in the long loops of real targets' -Tag 'Workflows', 'Security', 'Round5Workflows' -Skip:$PtraceSkip {
    It 'Save-MemoryImage -Freeze stopped while the target is frozen returns, resumes the target and leaves no image or partial folder' {
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 49152
            $parent = New-Item -ItemType Directory (New-Dest)
            $run = Start-Runspace 'param($id, $p) Save-MemoryImage -Id $id -Path $p -Freeze -Method Hash -Confirm:$false' @($t.Id, "$parent/img")
            $seen = $false
            for ($i = 0; $i -lt 3000 -and -not $run.Handle.IsCompleted; $i++) { if ((Get-ProcessState $t.Id) -eq 't') { $seen = $true; break }; Start-Sleep -Milliseconds 2 }
            if (-not $seen) { $run.PowerShell.Dispose(); Set-ItResult -Skipped -Because 'the save finished before it could be stopped while frozen'; return }
            Stop-Runspace $run | Should -BeTrue -Because 'Stop() returns'
            Get-ProcessState $t.Id | Should -Not -BeIn 't', 'T'
            Get-StatusField $t.Id 'TracerPid' | Should -Be '0'
            Get-Left $parent | Where-Object { $_ -ne 'img' } | Should -BeNullOrEmpty -Because 'no partial folder is left'
            if (Test-Path "$parent/img") { Test-MemoryImage -Path "$parent/img" | Should -BeTrue }
        } finally { Stop-WfTarget $t }
    }

    It 'Watch-DirtyPage -Method WriteProtect stopped mid-watch returns and removes the tracking it enabled for the command' -Skip:([bool]$WtSkip) {
        $t = Start-WfTarget
        try {
            $null = New-WfRegion $t 64
            $run = Start-Runspace 'param($id) Watch-DirtyPage -Id $id -Method WriteProtect -Count 1000 -Interval 0.05' @($t.Id)
            for ($i = 0; $i -lt 3000 -and (Get-UffdCount $t.Id) -eq 0; $i++) { Start-Sleep -Milliseconds 5 }
            Get-UffdCount $t.Id | Should -Be 1 -Because 'the watch enabled tracking for itself'
            Start-Sleep -Milliseconds 200
            Stop-Runspace $run | Should -BeTrue
            Get-UffdCount $t.Id | Should -Be 0
            Get-ProcessState $t.Id | Should -Not -BeIn 't', 'T'
            @(Get-ChildItem $env:SOFTDIRTY_STATE_DIR -Recurse -Filter "$($t.Id).*" -ErrorAction Ignore).Count | Should -Be 0
            { Send-WfTarget $t "write $(Send-WfTarget $t 'map 1') 0" } | Should -Not -Throw -Because 'the target runs on and answers'
        } finally { Stop-WfTarget $t }
    }

    It 'Invoke-PreCopyMigration -Destination stopped mid-round returns, leaves the target running and only whole round images' {
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 4096
            $null = Send-WfTarget $t "hot $($r.Hex) 0 256 1000"
            $dest = New-Dest
            $run = Start-Runspace 'param($id, $d) Invoke-PreCopyMigration -Id $id -Bandwidth 4MB -MaxIterations 50 -StopThreshold 0 -Destination $d -Confirm:$false' @($t.Id, $dest)
            for ($i = 0; $i -lt 3000 -and -not (Test-Path "$dest/round-01"); $i++) { Start-Sleep -Milliseconds 5 }
            Test-Path "$dest/round-01" | Should -BeTrue -Because 'the migration runs its live rounds'
            $run.Handle.IsCompleted | Should -BeFalse -Because 'at 4 MiB/s and 50 rounds of a hot target it is still running'
            Stop-Runspace $run | Should -BeTrue
            $null = Send-WfTarget $t 'cold'
            Get-ProcessState $t.Id | Should -Not -BeIn 't', 'T'
            Get-StatusField $t.Id 'TracerPid' | Should -Be '0'
            foreach ($img in Get-ChildItem -LiteralPath $dest -Directory -ErrorAction Ignore | Where-Object Name -like 'round-*') {
                Test-MemoryImage -Path $img.FullName | Should -BeTrue -Because "$($img.Name) is whole"
            }
            @(Get-ChildItem -Force -LiteralPath $dest -ErrorAction Ignore | Where-Object Name -like '.*partial*').Count | Should -Be 0
        } finally { Stop-WfTarget $t }
    }
}

Describe 'Export-DirtyPageChart: hostile names and deserialized values' -Tag 'Workflows', 'Security', 'Round5Workflows' {
    BeforeAll {
        function New-FakeSample([string] $Name, $Elapsed, $Rate, $PageSize, $Ranges) {
            $o = [pscustomobject]@{ ProcessId = 42; Name = $Name; Method = 'Hash'; Elapsed = $Elapsed; Rate = $Rate; PageSize = $PageSize; Ranges = $Ranges }
            $o.PSObject.TypeNames.Insert(0, 'Deserialized.SoftDirty.Workflows.DirtyPageSample')
            $o
        }
        $script:okRange = @([pscustomobject]@{ Start = [uint64]0x10000; End = [uint64]0x12000 })
        $script:ChartId = 'SoftDirty.Commands.ExportDirtyPageChartCommand'
    }

    It 'a process whose name holds markup and control characters gives a well-formed chart with the markup escaped' {
        # A process names itself: the executable's name becomes its comm (as prctl PR_SET_NAME would set it).
        $exe = Join-Path $root "<s>`u{1}&`"x"
        Copy-Item $sdExe $exe
        chmod 0755 $exe
        $t = Start-TestTarget -Path $exe
        try {
            $a = $t.Map(4)
            $samples = Watch-DirtyPage -Id $t.Id -Method Hash -Count 2 -Interval 0.05 -Address $a -Length (4 * [uint64]$t.PageSize)
            $samples[0].Name | Should -BeLike '<s>*'
            $svg = Join-Path $root "name-$([guid]::NewGuid().ToString('n')).svg"
            $null = $samples | Export-DirtyPageChart -Path $svg -WarningAction SilentlyContinue   # the title names the process
            $text = Get-Content -Raw -LiteralPath $svg
            { [xml]$text } | Should -Not -Throw
            $text | Should -Not -Match '<s>'
            $text | Should -Match '&lt;s&gt;'
            $null = $samples | Export-DirtyPageChart -Path $svg -Title "<script>alert(1)</script>`u{7}" -WarningAction SilentlyContinue
            $text = Get-Content -Raw -LiteralPath $svg
            { [xml]$text } | Should -Not -Throw
            $text | Should -Not -Match '<script'
            $text | Should -Match '&lt;script&gt;'
        } finally { Stop-TestTarget $t }
    }

    It 'a deserialized sample with <Label> is InvalidArgument and no chart is written' -ForEach @(
        @{ Label = 'a NaN time'; Elapsed = [double]::NaN; Rate = 1.0; PageSize = 4096; Bad = $null }
        @{ Label = 'an infinite rate'; Elapsed = 1.0; Rate = [double]::PositiveInfinity; PageSize = 4096; Bad = $null }
        @{ Label = 'a negative rate'; Elapsed = 1.0; Rate = -5.0; PageSize = 4096; Bad = $null }
        @{ Label = 'a negative time'; Elapsed = -1.0; Rate = 5.0; PageSize = 4096; Bad = $null }
        @{ Label = 'page size 0'; Elapsed = 1.0; Rate = 5.0; PageSize = 0; Bad = $null }
        @{ Label = 'page size 3000'; Elapsed = 1.0; Rate = 5.0; PageSize = 3000; Bad = $null }
        @{ Label = 'a range that ends before it starts'; Elapsed = 1.0; Rate = 5.0; PageSize = 4096; Bad = @([pscustomobject]@{ Start = [uint64]0x9000; End = [uint64]0x2000 }) }
    ) {
        $svg = Join-Path $root "bad-$([guid]::NewGuid().ToString('n')).svg"
        $s = New-FakeSample 'x' ([double]$Elapsed) ([double]$Rate) ([int]$PageSize) ($Bad ?? $okRange)
        Get-ErrorId { $s | Export-DirtyPageChart -Path $svg } | Should -Be "InvalidArgument,$ChartId"
        Test-Path -LiteralPath $svg | Should -BeFalse
    }

    It 'a -Path that is a FIFO does not hang: the FIFO is replaced by the chart, never opened' -Skip:(-not $HasMkfifo) {
        $fifo = Join-Path $root "fifo-$([guid]::NewGuid().ToString('n')).svg"
        mkfifo $fifo
        $run = Start-Runspace 'param($p, $s) $s | Export-DirtyPageChart -Path $p' @($fifo, @(New-FakeSample 'x' 1.0 5.0 4096 $okRange))
        $run.Handle.AsyncWaitHandle.WaitOne(60000) | Should -BeTrue -Because 'writing a chart never waits for a reader'
        $errors = @($run.PowerShell.Streams.Error | ForEach-Object FullyQualifiedErrorId)
        $run.PowerShell.Dispose()
        $errors | Should -BeNullOrEmpty
        (Get-Item -LiteralPath $fifo).UnixMode | Should -BeLike '-rw-------' -Because 'the FIFO was replaced by a regular 0600 file'
        { [xml](Get-Content -Raw -LiteralPath $fifo) } | Should -Not -Throw
    }
}

Describe 'Invoke-EmulatedWorkload -TracePath: pipes and devices' -Tag 'Workflows', 'Security', 'Round5Workflows' {
    BeforeAll {
        $script:e = New-EmulatedProcess
        $script:m = $e | Add-EmulatedMapping -Length 64KB
        $script:WorkloadId = 'SoftDirty.Commands.InvokeEmulatedWorkloadCommand'
    }

    It 'a device (<Device>) is InvalidArgument at once: no hang, no unbounded line read into memory' -ForEach @(
        @{ Device = '/dev/zero' }
        @{ Device = '/dev/urandom' }
    ) {
        $run = Start-Runspace 'param($e, $t) $e | Invoke-EmulatedWorkload -TracePath $t -ErrorAction Stop' @($e, $Device)
        $run.Handle.AsyncWaitHandle.WaitOne(60000) | Should -BeTrue -Because 'a device is refused, not read'
        $err = try { $run.PowerShell.EndInvoke($run.Handle); 'none' } catch { $_.Exception.InnerException.ErrorRecord.FullyQualifiedErrorId }
        $run.PowerShell.Dispose()
        $err | Should -Be "InvalidArgument,$WorkloadId"
    }

    It 'a FIFO nobody writes to waits, and Ctrl+C (Stop) returns; a FIFO with a writer replays its lines' -Skip:(-not $HasMkfifo) {
        $fifo = Join-Path $root "trace-$([guid]::NewGuid().ToString('n'))"
        mkfifo $fifo
        $run = Start-Runspace 'param($e, $t) $e | Invoke-EmulatedWorkload -TracePath $t' @($e, $fifo)
        Start-Sleep -Milliseconds 300
        $run.Handle.IsCompleted | Should -BeFalse
        Stop-Runspace $run | Should -BeTrue -Because 'Stop() ends a wait for a writer that never comes'
        $run = Start-Runspace 'param($e, $t) $e | Invoke-EmulatedWorkload -TracePath $t' @($e, $fifo)
        Start-Sleep -Milliseconds 200
        $lines = "op,address`n" + (@(0..3 | ForEach-Object { "write,0x$('{0:x}' -f ($m.Start + $_ * 4096))" }) -join "`n") + "`n"
        [IO.File]::WriteAllText($fifo, $lines)
        $run.Handle.AsyncWaitHandle.WaitOne(60000) | Should -BeTrue
        $result = $run.PowerShell.EndInvoke($run.Handle)
        $run.PowerShell.Dispose()
        $result.Accesses | Should -Be 4
    }

    It 'a line longer than any trace line (1 MiB without a line end) is InvalidArgument' {
        $f = Join-Path $root "long-$([guid]::NewGuid().ToString('n')).csv"
        [IO.File]::WriteAllText($f, 'w' * 1MB)
        Get-ErrorId { $e | Invoke-EmulatedWorkload -TracePath $f } | Should -Be "InvalidArgument,$WorkloadId"
    }
}
