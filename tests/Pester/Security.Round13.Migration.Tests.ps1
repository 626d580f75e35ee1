#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, thirteenth attack round: pre-copy migration (Invoke-PreCopyMigration -Destination and -ToSession) and the
# receiving side (Receive-MemoryImage). New cases only: earlier rounds are in Security.Round*.Tests.ps1 (rounds 10 and 11
# covered migration), Workflows.Security.Tests.ps1 and Remoting.Tests.ps1. First the receiver killed mid-migration, the
# case rounds 10 and 11 left open (the migration waited for good in some runs).

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    # -Method Hash reads the target's memory and stops it (ptrace) for the final round: a child of this PowerShell.
    $HashSkip = if ($yama -ge 3 -or ($yama -eq 2 -and -not $IsRoot)) { "Yama's ptrace_scope $yama forbids ptrace of a child here" } else { $null }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r13m')
    chmod 0755 $TestDrive $root
    $script:MigrateId = 'SoftDirty.Commands.InvokePreCopyMigrationCommand'
    $script:ReceiveId = 'SoftDirty.Commands.ReceiveMemoryImageCommand'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Everything left in a folder, hidden partial folders included.
    # (Names one by one: @(...).Name of nothing is one $null, and a wait on its count waited for its whole deadline.)
    function Get-Left([string] $Folder) { Get-ChildItem -Force -LiteralPath $Folder -ErrorAction Ignore | ForEach-Object Name }
    # A local out-of-process runspace stands in for the destination machine (no sshd needed); the module imported there.
    function New-LocalSession {
        $rs = [runspacefactory]::CreateOutOfProcessRunspace($null); $rs.Open()
        $s = [System.Management.Automation.Runspaces.PSSession]::Create($rs, 'Local', $null)
        $null = Invoke-Command -Session $s { Import-Module $using:module }
        $s
    }
    function New-Source([int] $Bytes = 256KB) {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length $Bytes
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
        $e
    }
    # The staging folders this process made (PreCopyStage: softdirty-precopy-BOOT-NS-PID-START-GUID) in $Temp.
    function Get-OwnStage([string] $Temp = [IO.Path]::GetTempPath()) {
        @(Get-ChildItem -Force -Directory -LiteralPath $Temp -Filter 'softdirty-precopy-*' -ErrorAction Ignore | Where-Object { ($_.Name -split '-')[4] -eq "$PID" }).Name
    }
    # Field 22 of /proc/PID/stat: the start time.
    function Get-StartTime([int] $Id) { $s = Get-Content "/proc/$Id/stat" -Raw; ($s.Substring($s.LastIndexOf(')') + 2) -split ' ')[19] }
    # Runs Invoke-PreCopyMigration -ToSession in a child PowerShell, kills the receiver (the session's host process)
    # once $When (run there, with $dest) says so, and waits for the migration to end (the wait is a hang guard only);
    # what happened, as the child saw it. A child, because PowerShell itself waits for good to close an out-of-process
    # session whose process was killed (Remove-PSSession, or pwsh's exit): the child is killed once it has answered.
    function Invoke-KilledMigration([string] $Dest, [string] $When, [string] $Source, [int] $MaxIterations, [string] $Workload = '$null') {
        $script = Join-Path $TestDrive "killed-$([guid]::NewGuid().ToString('n')).ps1"
        Set-Content $script @"
`$ErrorActionPreference = 'Stop'
Import-Module '$PSScriptRoot/SoftDirty.TestSupport.psm1'
`$dest = '$Dest'
`$rs = [runspacefactory]::CreateOutOfProcessRunspace(`$null); `$rs.Open()
`$s = [System.Management.Automation.Runspaces.PSSession]::Create(`$rs, 'Local', `$null)
`$null = Invoke-Command -Session `$s { Import-Module `$using:env:SOFTDIRTY_MODULE }
`$receiver = Invoke-Command -Session `$s { `$PID }
`$target = $Source
`$ps = [powershell]::Create()
`$null = `$ps.AddCommand('Import-Module').AddArgument(`$env:SOFTDIRTY_MODULE).AddStatement().AddCommand('Invoke-PreCopyMigration').AddParameter('ToSession', `$s).
    AddParameter('Destination', "`$dest/chain").AddParameter('MaxIterations', $MaxIterations).AddParameter('StopThreshold', 0).AddParameter('Confirm', `$false).AddParameter('LinkTimeoutSec', 20)
`$workload = $Workload
if (`$workload) { `$null = `$ps.AddParameter('Workload', `$workload) }
if (`$target -is [SoftDirty.Emulation.EmulatedProcess]) { `$null = `$ps.AddParameter('Emulator', `$target) } else { `$null = `$ps.AddParameter('Id', `$target.Id).AddParameter('Method', 'Hash') }
`$run = `$ps.BeginInvoke()
`$deadline = [DateTime]::UtcNow.AddMinutes(3); `$killed = `$false
while (-not `$killed -and [DateTime]::UtcNow -lt `$deadline -and -not `$run.IsCompleted) {
    if ($When) { kill -9 `$receiver; `$killed = `$true } else { Start-Sleep -Milliseconds 5 }
}
`$deadline = [DateTime]::UtcNow.AddMinutes(5)
while (-not `$run.IsCompleted -and [DateTime]::UtcNow -lt `$deadline) { Start-Sleep -Milliseconds 200 }
`$r = [ordered]@{ Killed = `$killed; ReceiverGone = -not (Test-Path "/proc/`$receiver"); Ended = `$run.IsCompleted; ErrorId = `$null; Message = `$null; Summary = 0; Stage = @(); State = `$null; Tracer = `$null }
if (`$run.IsCompleted) {
    `$out = @(`$ps.EndInvoke(`$run))
    if (`$ps.Streams.Error.Count) { `$r.ErrorId = `$ps.Streams.Error[0].FullyQualifiedErrorId; `$r.Message = `$ps.Streams.Error[0].Exception.Message }
    `$r.Summary = @(`$out | Where-Object { `$_ -is [SoftDirty.Workflows.PreCopySummary] }).Count
}
`$r.Stage = @(Get-ChildItem -Force -Directory -LiteralPath ([IO.Path]::GetTempPath()) -Filter 'softdirty-precopy-*' | Where-Object { (`$_.Name -split '-')[4] -eq "`$PID" }).Name
if (`$target -isnot [SoftDirty.Emulation.EmulatedProcess]) {
    `$r.State = Get-ProcessState `$target.Id
    `$r.Tracer = ((Get-Content "/proc/`$(`$target.Id)/status" | Where-Object { `$_ -like 'TracerPid:*' }) -replace '\s', '')
}
'RESULT ' + (ConvertTo-Json -Compress `$r)
"@
        $p = Start-ChildPwsh "& '$script'"
        try {
            # 3 minutes to the kill, 5 to the end there, and slack for a busy machine: a hang guard only.
            $deadline = [DateTime]::UtcNow.AddMinutes(10)
            $line = $null
            while ($null -eq $line -and [DateTime]::UtcNow -lt $deadline) {
                $next = $p.StandardOutput.ReadLineAsync()
                while (-not $next.Wait(1000) -and [DateTime]::UtcNow -lt $deadline) { }
                if (-not $next.IsCompleted -or $null -eq $next.Result) { break }
                if ($next.Result.StartsWith('RESULT ')) { $line = $next.Result.Substring(7) }
            }
            if ($null -eq $line) { throw "the child gave no result: $($p.StandardError.ReadToEndAsync().Wait(2000))" }
            $line | ConvertFrom-Json
        } finally { $p.Kill($true); $p.WaitForExit(10000) }
    }
}

Describe 'Invoke-PreCopyMigration -ToSession: the receiver killed (rounds 10, 11, 13)' -Tag 'Workflows', 'Security', 'Round13Migration' {
    It 'killed <Label>: LinkBroken within the stall time, no summary, no round left in place that was not confirmed, no staging folder' -ForEach @(
        @{ Label = 'after 8 MiB of round 1'; When = '($f = Get-ChildItem -Force "$dest/chain/.round-01.partial-*/pages.bin" -ErrorAction Ignore | Select-Object -First 1) -and $f.Length -ge 8MB'; Placed = @() }
        @{ Label = 'while it verifies round 1 (all sent)'; When = '[bool](Get-ChildItem -Force "$dest/chain/.round-01.partial-*/manifest.json" -ErrorAction Ignore)'; Placed = @() }
        @{ Label = 'during the stop-and-copy round'; When = '($f = Get-ChildItem -Force "$dest/chain/.round-02.partial-*/pages.bin" -ErrorAction Ignore | Select-Object -First 1) -and $f.Length -ge 4MB'; Placed = @('round-01') }
    ) {
        # Before the fix the migration waited for good (a stack showed SessionImageLink.Run in PowerShell.Dispose ->
        # Stop, which waits for the dead far end to confirm; or in EndInvoke once all input was sent): an
        # out-of-process session stays Opened, its pipeline Running, after its process is killed.
        $dest = New-Dest
        $source = '$(New-EmulatedProcess | ForEach-Object { $global:m = $_ | Add-EmulatedMapping -Length 32MB; $_ | Write-EmulatedMemory -Address $m.Start -Length $m.Size; $_ })'
        # A workload that dirties most of the memory during round 1 (emulated time: the measured seconds), so that the
        # stop-and-copy round (round 2: one live round at most) sends megabytes and the kill comes mid-round.
        $workload = '@{ Address = $global:m.Start; Length = $global:m.Size; Pattern = ''Sequential''; AccessesPerSecond = 1000000; WriteRatio = 1; Seed = 7 }'
        $r = Invoke-KilledMigration -Dest $dest -When $When -Source $source -MaxIterations 1 -Workload $workload
        $r.Killed | Should -BeTrue -Because 'the receiver was killed at that point'
        $r.ReceiverGone | Should -BeTrue
        $r.Ended | Should -BeTrue -Because 'the migration must end (hang guard)'
        $r.ErrorId | Should -Be "LinkBroken,$MigrateId"
        # The child gives -LinkTimeoutSec 20: a receiver that went silent is called gone after that, not the default minute.
        if ($r.Message -like 'Nothing was heard*') { $r.Message | Should -Match 'for 20 seconds' }
        $r.Summary | Should -Be 0
        # Only what the receiver confirmed is in place (a valid chain); its hidden partial folder is no image.
        @(Get-ChildItem -LiteralPath "$dest/chain" -ErrorAction Ignore).Name | Should -Be $Placed
        foreach ($p in $Placed) { Test-MemoryImage "$dest/chain/$p" | Should -BeTrue }
        @($r.Stage) | Should -BeNullOrEmpty -Because 'the staging folder (process memory) is removed'
    }
    It 'killed while a real process is frozen for the stop-and-copy round: LinkBroken, the process resumed, not traced' -Skip:([bool]$HashSkip) {
        $dest = New-Dest
        $r = Invoke-KilledMigration -Dest $dest -Source '(Start-TestTarget)' -MaxIterations 1 -When '(Get-ProcessState $target.Id) -in ''t'', ''T'''
        $r.Killed | Should -BeTrue
        $r.Ended | Should -BeTrue -Because 'the migration must end (hang guard)'
        $r.ErrorId | Should -Be "LinkBroken,$MigrateId"
        $r.State | Should -Not -BeIn 't', 'T' -Because 'the target is resumed after the freeze of the final round'
        $r.Tracer | Should -Be 'TracerPid:0'
        @($r.Stage) | Should -BeNullOrEmpty
        Test-MemoryImage "$dest/chain/round-01" | Should -BeTrue
    }
}

Describe 'The staging folders of a killed sender (round 13)' -Tag 'Workflows', 'Security', 'Round13Migration' {
    BeforeAll {
        # The sender stages in the temp directory: this one, in TestDrive, for the test.
        $script:temp = New-Item -ItemType Directory (Join-Path $TestDrive "tmp-$([guid]::NewGuid().ToString('n'))")
        $script:oldTmp = $env:TMPDIR
        $env:TMPDIR = $temp.FullName
        $script:boot = (Get-Content /proc/sys/kernel/random/boot_id).Trim() -replace '-', ''
        $script:ns = if ((Get-Item /proc/self/ns/pid).LinkTarget -match '\[(\d+)\]') { $Matches[1] } else { throw 'no pid namespace' }
        # A pid that is gone: a process that ran and ended.
        $p = Start-Process -FilePath true -PassThru; $p.WaitForExit()
        $script:deadPid = $p.Id
        function New-Stage([string] $Name, [string] $Mode = '700') {
            $d = New-Item -ItemType Directory (Join-Path $temp $Name)
            Set-Content "$d/pages.bin" 'memory of a migrated process'
            chmod $Mode $d
            $d.Name
        }
    }
    AfterAll { $env:TMPDIR = $oldTmp }
    It 'a later -ToSession migration removes the stale folders it can prove dead, of its own user, and nothing else' {
        $dead = New-Stage "softdirty-precopy-$boot-$ns-$deadPid-1-$([guid]::NewGuid().ToString('n'))"
        $reused = New-Stage "softdirty-precopy-$boot-$ns-$PID-1-$([guid]::NewGuid().ToString('n'))"     # this pid, another start time: gone
        $oldBoot = New-Stage "softdirty-precopy-0123456789abcdef0123456789abcdef-$ns-$PID-$(Get-StartTime $PID)-$([guid]::NewGuid().ToString('n'))"
        $live = New-Stage "softdirty-precopy-$boot-$ns-$PID-$(Get-StartTime $PID)-$([guid]::NewGuid().ToString('n'))"
        $otherNs = New-Stage "softdirty-precopy-$boot-1-$deadPid-1-$([guid]::NewGuid().ToString('n'))"   # another pid namespace: its pid means nothing here
        $legacy = New-Stage "softdirty-precopy-$([guid]::NewGuid().ToString('n'))"                       # no maker in the name
        $open = New-Stage "softdirty-precopy-$boot-$ns-$deadPid-2-$([guid]::NewGuid().ToString('n'))" '755'  # not a private folder: not one the module made
        $victim = New-Item -ItemType Directory (Join-Path $TestDrive "victim-$([guid]::NewGuid().ToString('n'))")
        Set-Content "$victim/keep" 'x'
        $link = "softdirty-precopy-$boot-$ns-$deadPid-3-$([guid]::NewGuid().ToString('n'))"
        New-Item -ItemType SymbolicLink -Path (Join-Path $temp $link) -Target $victim.FullName | Out-Null
        $s = New-LocalSession
        try {
            $out = @(New-Source | Invoke-PreCopyMigration -ToSession $s -Destination "$(New-Dest)/chain" -MaxIterations 1 -Confirm:$false)
            $out[-1].Converged | Should -BeTrue
        } finally { Remove-PSSession $s }
        $left = @(Get-ChildItem -Force -LiteralPath $temp).Name
        $left | Should -Not -Contain $dead
        $left | Should -Not -Contain $reused
        $left | Should -Not -Contain $oldBoot
        foreach ($kept in $live, $otherNs, $legacy, $open, $link) { $left | Should -Contain $kept }
        Get-Content "$victim/keep" | Should -Be 'x'
        Get-OwnStage $temp | Should -Be @($live) -Because "this migration's own staging folder is removed at its end"
    }
}

Describe 'Ctrl+C, -WhatIf and two migrations of one target (round 13)' -Tag 'Workflows', 'Security', 'Round13Migration' {
    It 'Ctrl+C during a -ToSession transfer: stopped, no partial image there, no staging folder here, and the session still migrates' {
        $s = New-LocalSession
        try {
            $dest = New-Dest
            # The module imported by a call of its own, then the migration alone: a batch (AddStatement) stopped and disposed
            # can crash the host (PowerShell's BatchInvocationWorkItem on the closed runspace, an unhandled exception).
            $ps = [powershell]::Create()
            $null = $ps.AddCommand('Import-Module').AddArgument($module).Invoke()
            $ps.Commands.Clear()
            $null = $ps.AddCommand('Invoke-PreCopyMigration').AddParameter('Emulator', (New-Source 32MB)).
                AddParameter('ToSession', $s).AddParameter('Destination', "$dest/chain").AddParameter('MaxIterations', 2).AddParameter('StopThreshold', 0).AddParameter('Confirm', $false)
            $run = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddMinutes(3)
            while (-not $run.IsCompleted -and [DateTime]::UtcNow -lt $deadline -and -not ((Get-ChildItem -Force "$dest/chain/.round-01.partial-*/pages.bin" -ErrorAction Ignore | Select-Object -First 1).Length -ge 4MB)) { Start-Sleep -Milliseconds 5 }
            $run.IsCompleted | Should -BeFalse -Because 'the stop comes mid-transfer'
            $stop = $ps.BeginStop($null, $null)
            $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromMinutes(3)) | Should -BeTrue -Because 'the stop ends (hang guard)'
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            $ps.Dispose()
            Get-OwnStage | Should -BeNullOrEmpty
            # The receiver was stopped too: its partial folder is gone, nothing is in place.
            $deadline = [DateTime]::UtcNow.AddMinutes(1)
            while (@(Get-Left "$dest/chain").Count -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
            Get-Left "$dest/chain" | Should -BeNullOrEmpty
            $out = @(New-Source | Invoke-PreCopyMigration -ToSession $s -Destination "$(New-Dest)/chain" -MaxIterations 1 -Confirm:$false)
            $out[-1].Converged | Should -BeTrue
            Test-MemoryImage $out[-1].FinalImage | Should -BeTrue
        } finally { Remove-PSSession $s }
    }
    It '-ToSession -WhatIf sends nothing, creates nothing there and stages nothing here' {
        $s = New-LocalSession
        try {
            $dest = New-Dest
            $out = @(New-Source | Invoke-PreCopyMigration -ToSession $s -Destination "$dest/chain" -RestorePath "$dest/restored" -MaxIterations 1 -WhatIf)
            $out | Should -BeNullOrEmpty
            Test-Path $dest | Should -BeFalse
            Get-OwnStage | Should -BeNullOrEmpty
        } finally { Remove-PSSession $s }
    }
    It '-LinkTimeoutSec without -ToSession is InvalidArgument, and under 15 seconds (the receiver beats every 5) is refused' {
        Get-ErrorId { New-Source | Invoke-PreCopyMigration -Bandwidth 1GB -LinkTimeoutSec 30 -MaxIterations 1 } | Should -Be "InvalidArgument,$MigrateId"
        Get-ErrorId { New-Source | Invoke-PreCopyMigration -Bandwidth 1GB -LinkTimeoutSec 5 -MaxIterations 1 } | Should -Be "ParameterArgumentValidationError,$MigrateId"
    }
    It 'two migrations of one real process at once: each ends with a valid chain or one of the module''s errors; the process is left running, untraced' -Skip:([bool]$HashSkip) {
        $t = Start-TestTarget
        $runs = @()
        try {
            $runs = foreach ($n in 1, 2) {
                $ps = [powershell]::Create()
                $null = $ps.AddCommand('Import-Module').AddArgument($module).AddStatement().AddCommand('Invoke-PreCopyMigration').AddParameter('Id', $t.Id).AddParameter('Method', 'Hash').
                    AddParameter('Bandwidth', 4MB).AddParameter('Destination', "$(New-Dest)/chain").AddParameter('MaxIterations', 3).AddParameter('StopThreshold', 0).AddParameter('Confirm', $false)
                [pscustomobject]@{ PS = $ps; Run = $ps.BeginInvoke() }
            }
            $deadline = [DateTime]::UtcNow.AddMinutes(4)
            while (@($runs | Where-Object { -not $_.Run.IsCompleted }).Count -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
            foreach ($r in $runs) {
                $r.Run.IsCompleted | Should -BeTrue -Because 'each migration ends (hang guard)'
                $out = @($r.PS.EndInvoke($r.Run))
                $summary = $out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopySummary] }
                if ($summary) { Test-MemoryImage $summary.FinalImage | Should -BeTrue }
                else { $r.PS.Streams.Error[0].FullyQualifiedErrorId | Should -Match ",$([regex]::Escape($MigrateId))$" -Because 'a failed migration says why' }
                @($r.PS.Streams.Error | Where-Object { $_.FullyQualifiedErrorId -like 'System.*' }) | Should -BeNullOrEmpty
            }
            Get-ProcessState $t.Id | Should -Not -BeIn 't', 'T'
            (Get-Content "/proc/$($t.Id)/status" | Where-Object { $_ -like 'TracerPid:*' }) -replace '\s', '' | Should -Be 'TracerPid:0'
        } finally {
            foreach ($r in $runs) { if ($r.Run.IsCompleted) { $r.PS.Dispose() } }
            Stop-TestTarget $t
        }
    }
}

Describe 'A target that another tracer holds stopped (round 13)' -Tag 'Workflows', 'Security', 'Round13Migration' -Skip:(-not (Test-Path /usr/bin/python3)) {
    BeforeAll {
        # The other tracer: a Python process that starts the target (so that Yama's ptrace_scope 1 lets it trace it as an
        # unprivileged user too), holds every thread in a ptrace stop (PTRACE_SEIZE, PTRACE_INTERRUPT) and lets go on a line.
        $script:holder = Join-Path $TestDrive 'hold.py'
        Set-Content $holder @'
import ctypes, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
SEIZE, INTERRUPT, DETACH, WALL = 0x4206, 0x4207, 17, 0x40000000
p = subprocess.Popen([sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
p.stdout.readline()
tids = [int(t) for t in os.listdir(f"/proc/{p.pid}/task")]
for t in tids:
    if libc.ptrace(SEIZE, t, None, None) != 0 or libc.ptrace(INTERRUPT, t, None, None) != 0:
        print("FAILED", ctypes.get_errno(), flush=True); sys.exit(1)
    os.waitpid(t, WALL)
print("HELD", p.pid, flush=True)
sys.stdin.readline()
for t in tids: libc.ptrace(DETACH, t, None, None)
p.kill()
p.wait()
'@
        $script:target = if ($env:SOFTDIRTY_TARGET) { $env:SOFTDIRTY_TARGET } else { Join-Path $PSScriptRoot '../native/bin/sdtarget' }
        function Start-Held {
            $psi = [Diagnostics.ProcessStartInfo]::new('/usr/bin/python3')
            foreach ($a in $holder, $target) { $psi.ArgumentList.Add($a) }
            $psi.RedirectStandardInput = $true
            $psi.RedirectStandardOutput = $true
            $h = [Diagnostics.Process]::Start($psi)
            $line = $h.StandardOutput.ReadLine()
            if ($line -notmatch '^HELD (\d+)$') { $h.Kill(); throw "the holder said '$line'" }
            [pscustomobject]@{ Holder = $h; Id = [int]$Matches[1] }
        }
        function Stop-Held($Held) { $Held.Holder.StandardInput.WriteLine(''); if (-not $Held.Holder.WaitForExit(10000)) { $Held.Holder.Kill($true) } }
    }
    It '<Command> -Freeze of it is ProcessAlreadyTraced: never an image said to be taken frozen while another tracer may let it run mid-read' -ForEach @(
        @{ Command = 'Save-MemoryImage'; Run = { param($id, $dest) Save-MemoryImage -Id $id -Freeze -Path $dest -Confirm:$false }; Id = 'ProcessAlreadyTraced,SoftDirty.Commands.SaveMemoryImageCommand' }
        @{ Command = 'Invoke-PreCopyMigration'; Run = { param($id, $dest) Invoke-PreCopyMigration -Id $id -Method Hash -Bandwidth 1GB -Destination $dest -MaxIterations 1 -Confirm:$false }; Id = 'ProcessAlreadyTraced,SoftDirty.Commands.InvokePreCopyMigrationCommand' }
    ) {
        # Before the fix a process in a ptrace stop ('t') counted as stopped already: nothing was attached, and the
        # image (the stop-and-copy round) was written as if frozen, while the other tracer could resume it at any moment.
        $held = Start-Held
        try {
            $dest = New-Dest
            $state = (Get-Content "/proc/$($held.Id)/status" | Where-Object { $_ -like 'State:*' })
            $state | Should -Match '\bt\b' -Because 'the other tracer holds it'
            Get-ErrorId { & $Run $held.Id $dest } | Should -Be $Id
            Get-ChildItem -Recurse -Force -LiteralPath $dest -ErrorAction Ignore | Where-Object { $_.Name -eq 'manifest.json' } | Where-Object { $_.Directory.Name -notlike 'round-01' } | Should -BeNullOrEmpty -Because 'no frozen image is written'
            (Get-Content "/proc/$($held.Id)/status" | Where-Object { $_ -like 'TracerPid:*' }) -replace '\s', '' | Should -Be "TracerPid:$($held.Holder.Id)" -Because 'the other tracer keeps it'
        } finally { Stop-Held $held }
    }
}

Describe 'Stops and overlaps on the receiving and freezing side (round 13)' -Tag 'Workflows', 'Security', 'Round13Migration' {
    It 'Receive-MemoryImage stopped (Ctrl+C) while it verifies: nothing in place or the whole verified image, never a partial folder' {
        # Verification now runs off the pipeline thread with a heartbeat (round 13): a stop must still end it cleanly.
        $src = New-Source 48MB
        $img = Join-Path $root "big-$([guid]::NewGuid().ToString('n'))"
        $null = Save-MemoryImage -Emulator $src -Path $img -Confirm:$false
        $dest = New-Dest
        $null = New-Item -ItemType Directory $dest
        $ps = [powershell]::Create()
        $null = $ps.AddCommand('Import-Module').AddArgument($module).Invoke()
        $ps.Commands.Clear()
        $null = $ps.AddCommand('Receive-MemoryImage').AddParameter('Path', "$dest/img").AddParameter('Confirm', $false)
        $stream = [System.Management.Automation.PSDataCollection[object]]::new()
        foreach ($f in 'pages.bin', 'index.bin', 'manifest.json') { $stream.Add($f); $stream.Add([IO.File]::ReadAllBytes("$img/$f")) }
        $stream.Complete()
        $output = [System.Management.Automation.PSDataCollection[psobject]]::new()
        $run = $ps.BeginInvoke($stream, $output)
        $deadline = [DateTime]::UtcNow.AddMinutes(2)
        while (-not $run.IsCompleted -and [DateTime]::UtcNow -lt $deadline -and -not (Get-ChildItem -Force "$dest/.img.partial-*/manifest.json" -ErrorAction Ignore)) { Start-Sleep -Milliseconds 1 }
        $stop = $ps.BeginStop($null, $null)
        $stop.AsyncWaitHandle.WaitOne([TimeSpan]::FromMinutes(2)) | Should -BeTrue -Because 'the stop ends (hang guard)'
        $left = @(Get-Left $dest)
        # A stop that lands between the rename into place and the output leaves the whole verified image without an
        # answer (the sender, stopped too, never counts that round as sent): either outcome, never a partial folder.
        $because = "it ended $($ps.InvocationStateInfo.State) with $($output.Count) object(s) and errors: $($ps.Streams.Error)"
        if ($ps.InvocationStateInfo.State -ne 'Stopped' -or $output.Count) { $left | Should -Be @('img') -Because $because }
        if ($left) { $left | Should -Be @('img') -Because $because; Test-MemoryImage "$dest/img" | Should -BeTrue }
        $ps.Dispose()
    }
    It 'Save-MemoryImage -Freeze of one real process from two runspaces at once, again and again: each saves a valid image or says ProcessAlreadyTraced; the process runs on, untraced' -Skip:([bool]$HashSkip) {
        # Before round 13 a freeze that found the process in the other one's ptrace stop took it as "stopped already"
        # and wrote its image as if frozen, while the other could let the process run mid-read.
        $t = Start-TestTarget
        try {
            $runs = foreach ($n in 1, 2) {
                $ps = [powershell]::Create()
                $null = $ps.AddCommand('Import-Module').AddArgument($module).AddStatement().AddScript({
                    param($Id, $Folder)
                    foreach ($i in 1..15) { Save-MemoryImage -Id $Id -Freeze -Path "$Folder/img-$i" -Confirm:$false -ErrorAction Continue }
                }).AddArgument($t.Id).AddArgument((New-Item -ItemType Directory (New-Dest)).FullName)
                [pscustomobject]@{ PS = $ps; Run = $ps.BeginInvoke() }
            }
            $deadline = [DateTime]::UtcNow.AddMinutes(4)
            while (@($runs | Where-Object { -not $_.Run.IsCompleted }).Count -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 100 }
            foreach ($r in $runs) {
                $r.Run.IsCompleted | Should -BeTrue -Because 'the saves end (hang guard)'
                foreach ($info in @($r.PS.EndInvoke($r.Run))) { Test-MemoryImage $info.Path | Should -BeTrue }
                @($r.PS.Streams.Error | Where-Object { $_.FullyQualifiedErrorId -ne 'ProcessAlreadyTraced,SoftDirty.Commands.SaveMemoryImageCommand' }).FullyQualifiedErrorId | Should -BeNullOrEmpty
                $r.PS.Dispose()
            }
            Get-ProcessState $t.Id | Should -Not -BeIn 't', 'T'
            (Get-Content "/proc/$($t.Id)/status" | Where-Object { $_ -like 'TracerPid:*' }) -replace '\s', '' | Should -Be 'TracerPid:0'
        } finally { Stop-TestTarget $t }
    }
}

Describe 'A -Destination swapped for a link between rounds (round 13)' -Tag 'Workflows', 'Security', 'Round13Migration' {
    It 'the chain folder moved away and a link to another folder put in its place after round 1: a clean error, nothing written through the link' -Skip:([bool]$HashSkip) {
        $t = Start-TestTarget
        try {
            $d = New-Item -ItemType Directory (New-Dest)
            $victim = New-Item -ItemType Directory "$d/victim"
            Set-Content "$victim/keep" 'x'
            $ps = [powershell]::Create()
            # A slow simulated link: round 1 lasts long enough for the swap to come before round 2.
            $null = $ps.AddCommand('Import-Module').AddArgument($module).AddStatement().AddCommand('Invoke-PreCopyMigration').AddParameter('Id', $t.Id).AddParameter('Method', 'Hash').
                AddParameter('Bandwidth', 256KB).AddParameter('Destination', "$d/chain").AddParameter('MaxIterations', 3).AddParameter('StopThreshold', 0).AddParameter('Confirm', $false)
            $run = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddMinutes(3)
            while (-not $run.IsCompleted -and [DateTime]::UtcNow -lt $deadline -and -not (Test-Path "$d/chain/round-01")) { Start-Sleep -Milliseconds 2 }
            Move-Item "$d/chain" "$d/chain.old"
            $null = New-Item -ItemType SymbolicLink -Path "$d/chain" -Target $victim.FullName
            $deadline = [DateTime]::UtcNow.AddMinutes(4)
            while (-not $run.IsCompleted -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            $run.IsCompleted | Should -BeTrue -Because 'the migration ends (hang guard)'
            $out = @($ps.EndInvoke($run))
            @($out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopySummary] }) | Should -BeNullOrEmpty
            $ps.Streams.Error[0].FullyQualifiedErrorId | Should -Match ",$([regex]::Escape($MigrateId))$"
            $ps.Streams.Error[0].FullyQualifiedErrorId | Should -Not -BeLike 'System.*'
            @(Get-ChildItem -Force -Recurse -LiteralPath $victim.FullName).Name | Should -Be @('keep')
            Test-MemoryImage "$d/chain.old/round-01" | Should -BeTrue
            Get-ProcessState $t.Id | Should -Not -BeIn 't', 'T'
            $ps.Dispose()
        } finally { Stop-TestTarget $t }
    }
}

Describe 'A hostile receiver (round 13)' -Tag 'Workflows', 'Security', 'Round13Migration' {
    It 'lying acknowledgements, then an error of the module''s with terminal sequences and a local path as its target: that ErrorId, the text escaped, nothing left here' {
        $s = New-LocalSession
        try {
            Invoke-Command -Session $s {
                $null = New-Module -Name SoftDirty -ScriptBlock {
                    function Receive-MemoryImage {
                        [CmdletBinding()]
                        param($Path, [Parameter(ValueFromPipeline)] $InputObject)
                        begin { $n = 0 }
                        process {
                            # Acknowledges far more than it was sent, then fails with a crafted error.
                            Write-Progress -Id 0x5E01 -Activity 'receiving' -CurrentOperation '999999999999'
                            if (++$n -eq 3) {
                                $e = [System.Management.Automation.ErrorRecord]::new([Exception]::new("`e]0;owned`a`e[2J`e[31mdone"), 'ImageCorrupt', 'InvalidData', '/etc/passwd')
                                $PSCmdlet.ThrowTerminatingError($e)
                            }
                        }
                    }
                } | Import-Module -PassThru
            }
            $dest = New-Dest
            $errors = @()
            $r = @(New-Source 8MB | Invoke-PreCopyMigration -ToSession $s -Destination "$dest/chain" -MaxIterations 2 -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable +errors)
            $errors | Should -Not -BeNullOrEmpty
            $errors[0].FullyQualifiedErrorId | Should -Be "ImageCorrupt,$MigrateId"
            $errors[0].Exception.Message | Should -Not -Match "`e|`a" -Because 'the far end''s text is shown escaped'
            (Out-String -InputObject $errors[0]) | Should -Not -Match "`e\]|`a"
            @($r | Where-Object { $_ -is [SoftDirty.Workflows.PreCopySummary] }) | Should -BeNullOrEmpty
            Get-OwnStage | Should -BeNullOrEmpty
            Test-Path $dest | Should -BeFalse -Because 'the fake receiver wrote nothing, and the sender writes nothing here for it'
        } finally { Remove-PSSession $s }
    }
}
