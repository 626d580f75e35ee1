#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, seventh attack round, on syscall injection as the lead rewrote it (the restore trampoline, the
# seccomp judge) and on write tracking of another process (new cases only; rounds 1-6 are in
# Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1, whose kill -9 case covers
# Enable- and Disable-WriteTracking). Here: kill -9 of a PowerShell whose Save-MemoryImage or Watch-DirtyPage
# -Method WriteProtect enables, uses and disables the tracking itself, under the per-process lock. The
# engine-level cases (signals, SIGSTOP, seccomp filters installed mid-injection) are the xunit InjectionRound7Tests.

BeforeDiscovery {
    # Why write tracking of another process cannot be tried here ($null where it can).
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Sibling } else { 'Linux only' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r7i')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    function Get-UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count }
    function Get-UwCount([int] $Id) { @(Get-Content "/proc/$Id/smaps" | Select-String -Pattern '^VmFlags:.* uw\b').Count }
    function Get-TaskStatus([int] $Id, [string] $Key) { ((Get-Content "/proc/$Id/task/$Id/status" | Where-Object { $_ -like "${Key}:*" }) -split ':\s*', 2)[1] }
    function Get-TaskState([int] $Id) { $stat = Get-Content "/proc/$Id/task/$Id/stat" -Raw; $stat.Substring($stat.LastIndexOf(')') + 2, 1) }
    # $Length bytes of process $Id's memory at $Address (/proc/PID/mem; ReadExactly throws on a short read).
    function Read-ProcMem([int] $Id, [uint64] $Address, [int] $Length) {
        $mem = [System.IO.FileStream]::new("/proc/$Id/mem", 'Open', 'Read', 'ReadWrite', 1, $false)
        try { $mem.Position = [int64]$Address; $bytes = [byte[]]::new($Length); $mem.ReadExactly($bytes, 0, $Length); , $bytes } finally { $mem.Dispose() }
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'kill -9 of a PowerShell whose command enables write tracking for itself' -Tag 'WriteTracking', 'Security', 'Round7Injection' -Skip:([bool]$WtSkip) {
    It 'kill -9 at random moments of <Name> leaves the target running as it was, and the next image of the chain exact' -ForEach @(
        @{ Name = 'Save-MemoryImage -Method WriteProtect (a chain: enabled once, then collected under the lock)'; Save = $true }
        @{ Name = 'Watch-DirtyPage -Method WriteProtect (each watch enables and disables)'; Save = $false }
    ) {
        # A child pwsh runs the command in a loop and is killed at a random moment: for the watch, every round but
        # the first while it traces the target (inside an injection); otherwise after a random delay (reading memory, writing
        # the image, holding the process's lock, saving the state file; a chain injects only to register the
        # mapping each round adds). The target must go on exactly (running, untraced,
        # mask and memory as they were, its read restarted), hold a userfaultfd only with a recorded tracking,
        # and the chain must go on to an image that restores the target's memory byte for byte.
        $t = Start-TestTarget -Path $wtExe
        $child = $null
        $chain = New-Item -ItemType Directory (Join-Path $root "chain-$([guid]::NewGuid().ToString('n'))")
        try {
            $pages = 32
            $region = $t.Send("map $pages")
            $address = [Convert]::ToUInt64($region, 16)
            $null = $t.Send("write $region 0 $pages")
            $sigBlk = Get-TaskStatus $t.Id 'SigBlk'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0000-0000" -Method WriteProtect -Confirm:$false
            $pwsh = Get-PwshCommandLine
            $module = (Get-Module SoftDirty).Path
            $progress = Join-Path $root "watches-$([guid]::NewGuid().ToString('n'))"
            $statusPath = "/proc/$($t.Id)/status"
            $body = if ($Save) {
                "`$n = 0; `$prev = `$args[0]; while (`$true) { `$p = Join-Path '$chain' (`$args[1] + '-' + (`$n++).ToString('D4')); " +
                "`$null = Save-MemoryImage -Id $($t.Id) -Path `$p -Parent `$prev -Method WriteProtect -Confirm:`$false -WarningAction SilentlyContinue; `$prev = `$p }"
            } else {
                # Each watch done is counted in a file: a loop that watches is told from one that hangs.
                "`$n = 0; while (`$true) { `$null = Watch-DirtyPage -Id $($t.Id) -Method WriteProtect -Interval 0.01 -Count 1 -WarningAction SilentlyContinue; [System.IO.File]::WriteAllText('$progress', (++`$n).ToString()) }"
            }
            $random = [Random]::new(20261202)
            $landed = 0
            foreach ($round in 1..6) {
                $null = $t.Send("pattern $region $pages $round 8")
                $null = $t.Send('map 1') # a mapping the next save registers with the tracking (an injection)
                $sum = $t.Send('sum')
                $last = @(Get-ChildItem $chain -Directory | Where-Object Name -NotLike '.*' | Sort-Object Name | Where-Object { Test-MemoryImage -Path $_.FullName }) | Select-Object -Last 1
                $script = "`$ErrorActionPreference = 'Stop'; `$env:SOFTDIRTY_STATE_DIR = '$env:SOFTDIRTY_STATE_DIR'; Import-Module '$module'; [Console]::Out.WriteLine('LOOPING'); [Console]::Out.Flush(); & { $body } '$($last.FullName)' '$($round.ToString('D4'))'"
                $psi = [System.Diagnostics.ProcessStartInfo]::new($pwsh[0])
                foreach ($a in @($pwsh | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-Command', $script)) { $psi.ArgumentList.Add($a) }
                $psi.RedirectStandardOutput = $true
                $psi.RedirectStandardError = $true
                $child = [System.Diagnostics.Process]::Start($psi)
                $errors = $child.StandardError.ReadToEndAsync()
                $child.StandardOutput.ReadLine() | Should -Be 'LOOPING'
                $clock = [System.Diagnostics.Stopwatch]::StartNew()
                if (-not $Save -and $round -gt 1) {
                    # Each watch traces the target for milliseconds: polled as fast as this PowerShell can. On a busy machine the
                    # polls may miss every one for a minute; a loop that goes on watching is then killed at a random moment
                    # (the round's checks all hold; the case is inconclusive if no kill ever landed while traced).
                    $seen = $false
                    while (-not ($seen = [System.IO.File]::ReadAllText($statusPath) -notmatch "`nTracerPid:\s+0`n")) {
                        if ($child.HasExited) { throw "the command ended before it traced the target: $($errors.Result)" }
                        if ($clock.Elapsed.TotalSeconds -gt 60) {
                            $watches = [int](Get-Content -LiteralPath $progress -ErrorAction SilentlyContinue)
                            if ($watches -lt 2) { $child.Kill(); throw "the command never traced the target ($watches watches in 60 s): $($errors.Result)" }
                            break
                        }
                    }
                    if ($seen) {
                        foreach ($poll in 1..$random.Next(0, 4)) { $null = Get-TaskStatus $t.Id 'TracerPid' }
                        if ((Get-TaskStatus $t.Id 'TracerPid') -ne '0') { $landed++ }
                    }
                } else {
                    Start-Sleep -Milliseconds $random.Next(200, 1500)
                }
                $ran = -not $child.HasExited
                $child.Kill()
                $ran | Should -BeTrue -Because "round ${round}: the loop ran until killed ($($errors.Result))"
                $child.WaitForExit()
                $child.Dispose(); $child = $null
                $clock.Restart()
                do {
                    Test-Path "/proc/$($t.Id)/task/$($t.Id)" | Should -BeTrue -Because "round ${round}: the target lives on"
                    $state = Get-TaskState $t.Id
                    $settled = (Get-TaskStatus $t.Id 'TracerPid') -eq '0' -and $state -notin 't', 'T'
                } until ($settled -or $clock.Elapsed.TotalSeconds -gt 10)
                $state | Should -BeIn 'S', 'R' -Because "round ${round}: the target neither stopped nor died"
                Get-TaskStatus $t.Id 'TracerPid' | Should -Be '0' -Because "round ${round}: the kernel detached it"
                Get-TaskStatus $t.Id 'SigBlk' | Should -Be $sigBlk -Because "round ${round}: its signal mask is as it was"
                $enabled = (Get-SoftDirtySupport -Id $t.Id).Enabled
                Get-UffdCount $t.Id | Should -Be ([int]$enabled) -Because "round ${round}: a userfaultfd only with a recorded tracking, a recorded tracking only with its userfaultfd"
                if (-not $enabled) { Get-UwCount $t.Id | Should -Be 0 -Because "round ${round}: no registration outlives its descriptor" }
                $t.Send('sum') | Should -Be $sum -Because "round ${round}: the interrupted read was restarted and the memory is as it was"
            }
            # The chain goes on from its last complete image: the next image restores the region exactly.
            $null = $t.Send("pattern $region $pages 99 12")
            $last = @(Get-ChildItem $chain -Directory | Where-Object Name -NotLike '.*' | Sort-Object Name | Where-Object { Test-MemoryImage -Path $_.FullName }) | Select-Object -Last 1
            $next = Save-MemoryImage -Id $t.Id -Path "$chain/9999-9999" -Parent $last.FullName -Method WriteProtect -Confirm:$false -WarningAction SilentlyContinue
            $next.Method | Should -Be 'WriteProtect'
            $restored = Restore-MemoryImage -Path "$chain/9999-9999" -Destination (Join-Path $root "restored-$([guid]::NewGuid().ToString('n'))") | Where-Object Start -EQ $address
            $restored | Should -Not -BeNullOrEmpty
            $live = Read-ProcMem $t.Id $address ($pages * [int]$t.PageSize)
            [System.Linq.Enumerable]::SequenceEqual([System.IO.File]::ReadAllBytes($restored.File), $live) | Should -BeTrue -Because 'no write was lost to a killed command'
            if (-not $Save -and $landed -eq 0) { Set-ItResult -Inconclusive -Because 'no kill landed while the target was traced (a busy machine); the other checks held' }
        } finally {
            if ($child) { try { $child.Kill() } catch { }; $child.Dispose() }
            if (Test-Path "/proc/$($t.Id)") { Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }
}
