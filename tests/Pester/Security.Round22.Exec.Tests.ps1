#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-second attack round, exec: a target that exec()s again and again from a thread that is not the leader
# (tests/native/exectarget.c, an exec every 3 ms), met by -Freeze, write tracking and /proc reads. Round 16 made these
# end; this round makes them say what happened: a freeze holds every thread or says ProcessExecuted, and a command that
# met the exec says ProcessExecuted, never ProcessExited, ProcIOError ("pthread_exit"), WriteProtectNotSupported,
# PtraceNotPermitted or PermissionDenied. Counts before the fixes are in each case.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $PtraceSkip = Get-PtraceSkipReason
    $WtSkip = Get-WriteTrackingSkipReason -Relation Descendant
    # -Method WriteProtect of a frozen target injects through the freeze's stop: both must be possible.
    $SaveCases = foreach ($m in 'Hash', 'WriteProtect') { @{ Method = $m; Skip = @($PtraceSkip, $(if ($m -eq 'WriteProtect') { $WtSkip })) -ne $null | Select-Object -First 1 } }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $ExecTarget = (Resolve-Path (Join-Path $PSScriptRoot '../native/bin/exectarget')).Path
    $Root = New-Item -ItemType Directory (Join-Path ([IO.Path]::GetTempPath()) "sd-r22exec-$(New-Guid)")

    # Field 22 of /proc/PID/stat (the start time, which an exec keeps); null where the process is gone.
    function Get-StartTime([int] $Id) {
        $stat = Get-Content -Raw "/proc/$Id/stat" -ErrorAction SilentlyContinue
        if ($stat) { $stat.Substring($stat.LastIndexOf([char]41) + 2).Split(' ')[19] }
    }

    # Starts exectarget (generation 0 up to 1000000, 4 threads, an exec every 3 ms); returns its pid and start time.
    function Start-ExecTarget {
        $psi = [System.Diagnostics.ProcessStartInfo]::new($ExecTarget)
        foreach ($a in '0', '1000000', '4', '3000') { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true; $psi.UseShellExecute = $false
        $p = [System.Diagnostics.Process]::Start($psi)
        $null = $p.StandardOutput.ReadLine()
        [pscustomobject]@{ Id = $p.Id; Start = (Get-StartTime $p.Id); Process = $p }
    }

    # Kills the target by its pid while that names the same process (its start time): its Process object may take the old
    # leader's exit for its own, and its cmdline reads empty mid-exec. No kill(1): a gate run (unprivileged, 1 of 5) hung
    # for good waiting for that child, which .NET never reaped after the target's execs under ptrace (see the report).
    function Stop-ExecTarget($Target) {
        if (-not $Target) { return }
        if ((Get-StartTime $Target.Id) -eq $Target.Start) { try { [System.Diagnostics.Process]::GetProcessById($Target.Id).Kill() } catch { } }
    }

    # The first field of an error's FullyQualifiedErrorId and its message, on one line.
    function Format-Outcome($Err) { "$($Err.FullyQualifiedErrorId.Split(',')[0]) $($Err.Exception.Message)" }

    # The outcome ids counted, for the log: "valid x12, ProcessExecuted x8".
    function Format-Tally([string[]] $Outcomes) { ($Outcomes | ForEach-Object { ($_ -split ' ')[0] } | Group-Object | ForEach-Object { "$($_.Name) x$($_.Count)" }) -join ', ' }
}

AfterAll {
    if ($Root) { Remove-Item -LiteralPath $Root -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'Round 22: -Freeze and write tracking of a target that exec()s from a thread that is not the leader' -Tag 'Security', 'Round22Exec' {
    It 'a freeze ends with every thread of the target held, or says ProcessExecuted: 60 freezes' -Skip:([bool]$PtraceSkip) {
        # Before: a pass looked at the leader (held, or a zombie), then met the exec'ing thread, whose PTRACE_SEIZE waited for
        # the exec and failed (its id gone to the leader); the pass had found nothing new, so the freeze ended while the
        # exec'd program ran: 62 of 200 freezes returned with threads running (root). Save-MemoryImage -Freeze then read a
        # running program into an image marked frozen, or met it mid-exec.
        $engine = [SoftDirty.EngineException].Assembly
        $internal = [Reflection.BindingFlags] 'Static, Public, NonPublic'
        $open = $engine.GetType('SoftDirty.ProcPageSource', $true).GetMethod('Open', $internal)
        $freeze = $engine.GetType('SoftDirty.Tracking.PtraceFreeze', $true).GetMethod('Freeze', $internal)
        $t = Start-ExecTarget
        $outcomes = [Collections.Generic.List[string]]::new()
        try {
            foreach ($i in 1..60) {
                $source = $open.Invoke($null, @($t.Id))
                try {
                    $f = $freeze.Invoke($null, @($t.Id, [Threading.CancellationToken]::None, $source))
                    $running = foreach ($task in Get-ChildItem "/proc/$($t.Id)/task" -ErrorAction SilentlyContinue) {
                        $stat = Get-Content -Raw "$($task.FullName)/stat" -ErrorAction SilentlyContinue
                        $state = if ($stat) { $stat.Substring($stat.LastIndexOf([char]41) + 2, 1) }
                        if ($state -and $state -notin 't', 'T', 'Z', 'X') { $task.Name + ':' + $state }
                    }
                    $f.Dispose()
                    $outcomes.Add($(if ($running) { "RUNNING $($running -join ' ')" } else { 'held' }))
                } catch {
                    $e = $_.Exception; while ($e.InnerException) { $e = $e.InnerException }
                    $outcomes.Add("$($e.Error) $($e.Message)")
                } finally { $source.Dispose() }
            }
            Write-Host "    $(Format-Tally $outcomes)"
            $outcomes | Where-Object { $_ -notmatch '^(held|ProcessExecuted )' } | Should -BeNullOrEmpty
            Get-ThreadTracer $t.Id | Should -BeNullOrEmpty -Because 'nothing the freeze attached stays attached'
        } finally { Stop-ExecTarget $t }
    }

    It 'Save-MemoryImage -Freeze -Method <Method>, 20 saves: each a valid image or ProcessExecuted; nothing stays traced; the target execs on' -ForEach $SaveCases {
        # Pester evaluates -Skip once, before the -ForEach data are bound: each case says why it cannot run here.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip }
        # Before: WriteProtect 16 of 40 (root) and 18 of 40 (unprivileged) said ProcessExited ("killed during syscall
        # injection", PTRACE_SETOPTIONS ESRCH on the leader the freeze believed held), ProcIOError or WriteProtectNotSupported
        # (the leader a zombie mid-exec, taken for pthread_exit); Hash 1 of 40 ProcIOError.
        $t = Start-ExecTarget
        $outcomes = [Collections.Generic.List[string]]::new()
        try {
            foreach ($i in 1..20) {
                $d = Join-Path $Root "freeze-$Method-$i"
                try {
                    $null = Save-MemoryImage -Id $t.Id -Path $d -Method $Method -Freeze -WarningAction SilentlyContinue -ErrorAction Stop
                    $outcomes.Add($(if (Test-MemoryImage $d) { 'valid' } else { 'INVALID' }))
                } catch { $outcomes.Add((Format-Outcome $_)) }
                Remove-Item -LiteralPath $d -Recurse -Force -ErrorAction SilentlyContinue
            }
            Write-Host "    ${Method}: $(Format-Tally $outcomes)"
            $outcomes | Where-Object { $_ -notmatch '^(valid|ProcessExecuted )' } | Should -BeNullOrEmpty
            Get-ThreadTracer $t.Id | Should -BeNullOrEmpty -Because 'nothing the freeze attached stays attached'
            $before = Get-Content -Raw "/proc/$($t.Id)/stat" -ErrorAction SilentlyContinue
            $changed = $false
            foreach ($k in 1..2000) {
                Start-Sleep -Milliseconds 5
                $now = Get-Content -Raw "/proc/$($t.Id)/stat" -ErrorAction SilentlyContinue
                # Field 28, startstack, differs with each exec (a new stack, placed at random).
                if ($now -and $before -and $now.Split(' ')[27] -ne $before.Split(' ')[27]) { $changed = $true; break }
            }
            $changed | Should -BeTrue -Because 'the target still execs (nothing left it stopped or stuck in an exec)'
        } finally { Stop-ExecTarget $t }
    }

    It 'Enable-WriteTracking and Disable-WriteTracking, 20 each: done, ProcessExecuted, or (Disable) WriteTrackingNotEnabled; nothing stays traced' -Skip:([bool]$WtSkip) {
        # Before: 35 of 40 Enables (root; 36 unprivileged) said ProcessExited, ProcIOError, PtraceNotPermitted or
        # WriteProtectNotSupported, and 9 of 40 Disables (18 unprivileged) ProcessExited ("its write tracking ended with it").
        # A thread held for injection that exec'd came back stopped under the leader's id and stayed traced by this
        # PowerShell (the next Enable: ProcessAlreadyTraced).
        $t = Start-ExecTarget
        $outcomes = [Collections.Generic.List[string]]::new()
        try {
            foreach ($i in 1..20) {
                try { $null = Enable-WriteTracking -Id $t.Id -ErrorAction Stop; $outcomes.Add('Enable ok') } catch { $outcomes.Add("Enable $(Format-Outcome $_)") }
                try { Disable-WriteTracking -Id $t.Id -ErrorAction Stop; $outcomes.Add('Disable ok') } catch { $outcomes.Add("Disable $(Format-Outcome $_)") }
            }
            Write-Host "    $(($outcomes | ForEach-Object { ($_ -split ' ')[0..1] -join ' ' } | Group-Object | ForEach-Object { "$($_.Name) x$($_.Count)" }) -join ', ')"
            $outcomes | Where-Object { $_ -notmatch '^(Enable|Disable) (ok|ProcessExecuted )' -and $_ -notmatch '^Disable WriteTrackingNotEnabled ' } | Should -BeNullOrEmpty
            Get-ThreadTracer $t.Id | Should -BeNullOrEmpty -Because 'nothing the injection attached stays attached'
        } finally { Stop-ExecTarget $t }
    }

    It 'Invoke-PreCopyMigration -Method <Method>, 4 migrations: each a valid final image or ProcessExecuted; nothing stays traced' -ForEach $SaveCases {
        # Pester evaluates -Skip once, before the -ForEach data are bound: each case says why it cannot run here.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip }
        # Before: 3 of 8 Hash migrations said ProcIOError (pthread_exit, or ESRCH opening pagemap) and 7 of 8 WriteProtect
        # ones WriteProtectNotSupported or ProcIOError (root). None gave an image.
        $t = Start-ExecTarget
        $outcomes = [Collections.Generic.List[string]]::new()
        try {
            foreach ($i in 1..4) {
                $d = Join-Path $Root "mig-$Method-$i"
                try {
                    $null = Invoke-PreCopyMigration -Id $t.Id -Destination $d -Method $Method -MaxIterations 3 -Bandwidth 1GB -WarningAction SilentlyContinue -ErrorAction Stop
                    $final = Get-ChildItem -LiteralPath $d -Directory | Sort-Object Name | Select-Object -Last 1
                    $outcomes.Add($(if (Test-MemoryImage $final.FullName) { 'valid' } else { 'INVALID' }))
                } catch { $outcomes.Add((Format-Outcome $_)) }
                Remove-Item -LiteralPath $d -Recurse -Force -ErrorAction SilentlyContinue
            }
            Write-Host "    ${Method}: $(Format-Tally $outcomes)"
            $outcomes | Where-Object { $_ -notmatch '^(valid|ProcessExecuted )' } | Should -BeNullOrEmpty
            Get-ThreadTracer $t.Id | Should -BeNullOrEmpty -Because 'nothing the migration attached stays attached'
        } finally { Stop-ExecTarget $t }
    }

    It 'Get-MemoryMapping and Get-PageMap, 300 each: a result or ProcessExecuted' {
        # Before: 87 of 400 Get-MemoryMapping and 64 of 400 Get-PageMap (root; 42 and 46 unprivileged) said ProcIOError
        # ("pthread_exit": the leader a zombie while the exec ran), ProcessExited, or, unprivileged, PermissionDenied (the
        # zombie leader's files are root's for that moment).
        $t = Start-ExecTarget
        $outcomes = [Collections.Generic.List[string]]::new()
        try {
            foreach ($i in 1..300) {
                try { $null = Get-MemoryMapping -Id $t.Id -ErrorAction Stop; $outcomes.Add('ok') } catch { $outcomes.Add((Format-Outcome $_)) }
                try { $null = Get-PageMap -Id $t.Id -Mapping '*exectarget*' -WarningAction SilentlyContinue -ErrorAction Stop; $outcomes.Add('ok') } catch { $outcomes.Add((Format-Outcome $_)) }
            }
            Write-Host "    $(Format-Tally $outcomes)"
            # MappingNotFound: a read of the new program's memory while its exec still builds it (no binary mapped yet).
            $outcomes | Where-Object { $_ -notmatch '^(ok|ProcessExecuted |MappingNotFound )' } | Should -BeNullOrEmpty
        } finally { Stop-ExecTarget $t }
    }
}
