#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, seventeenth attack round: targets whose threads and signals change under the module's feet while it freezes
# them (-Freeze, a migration's last round), injects syscalls into them (write tracking) or watches them: job control
# from another process (SIGSTOP, SIGCONT), SIGKILL, threads that exit or start as they are seized. New cases only
# (exec from a thread: round 16; threads starting back to back: rounds 10 and 16; a stopped target and its sharer:
# round 15; a signal or SIGSTOP arriving during one injection: the xunit InjectionRound7Tests).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $PtraceSkip = if ($yama -ge 3 -or ($yama -eq 2 -and (id -u) -ne '0')) { "Yama's ptrace_scope $yama forbids ptrace of a child here" } else { $null }
    # A child pwsh that stops the target this one started: a sibling, which Yama's ptrace_scope 1 keeps from an unprivileged user.
    $SiblingSkip = if ($PtraceSkip) { $PtraceSkip } elseif ($yama -eq 1 -and (id -u) -ne '0') { "Yama's ptrace_scope 1 lets a user trace only descendants, and the commands run in a sibling of the target" } else { $null }
    $WtSkip = Get-WriteTrackingSkipReason -Relation Sibling
    $WtDescendantSkip = Get-WriteTrackingSkipReason -Relation Descendant
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:Root = New-Item -ItemType Directory (Join-Path $TestDrive 'r17t')
    # Bound on anything that only a hang comes near (a save of 128 MiB, a child pwsh's start).
    $script:HangBoundMs = 120000
    function New-ImagePath([string] $Prefix = 'i') { Join-Path $Root "$Prefix-$([guid]::NewGuid().ToString('n'))" }

    # Waits (hang bound) until $Condition holds; whether it did.
    function Wait-Until([scriptblock] $Condition) {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        while ($clock.ElapsedMilliseconds -lt $HangBoundMs) {
            if (& $Condition) { return $true }
            Start-Sleep -Milliseconds 1
        }
        $false
    }

    # Starts bash -c $Script; returns the Process.
    function Start-Bash([string] $Script) {
        $psi = [Diagnostics.ProcessStartInfo]::new('bash')
        $psi.ArgumentList.Add('-c'); $psi.ArgumentList.Add($Script)
        [Diagnostics.Process]::Start($psi)
    }

    # The TracerPid of every thread of process $Id that is still there (none once it is gone).
    function Get-TracerPid([int] $Id) {
        foreach ($task in Get-ChildItem "/proc/$Id/task" -ErrorAction SilentlyContinue) {
            $line = Get-Content "$($task.FullName)/status" -ErrorAction SilentlyContinue | Where-Object { $_ -like 'TracerPid:*' }
            if ($line) { [int]($line -replace '\D', '') }
        }
    }

    # Why the words of wftarget's "hot" thread (it writes an ever larger counter into page 0, 1, ... in turn, so at one
    # moment each page holds its predecessor's word plus one, but where the current sweep meets the last) are not one
    # moment; empty when they are.
    function Test-HotMoment([uint64[]] $Words) {
        $wraps = 0
        for ($p = 1; $p -lt $Words.Count; $p++) {
            if ($Words[$p] -eq $Words[$p - 1] + 1) { continue }
            if ($Words[$p] + [uint64]$Words.Count - 1 -eq $Words[$p - 1] -and ++$wraps -eq 1) { continue }
            "page $p holds $($Words[$p]) after page $($p - 1)'s $($Words[$p - 1]): not one moment of the sweeps"
            return
        }
    }
}

AfterAll { Stop-TestTarget -All }

Describe 'Round 17: job control from another process while a save holds the target frozen' -Tag 'Security', 'Round17Threads' -Skip:([bool]$PtraceSkip) {
    It 'a target stopped (SIGSTOP) before a -Freeze save and continued (SIGCONT) during it: the image that says Frozen is one moment, and the target runs after' {
        # Before: a target stopped already was left unattached (only "not resumed"), so a SIGCONT from elsewhere during the
        # save let it run while its memory was read, and the image still said Frozen: 66 of 29,999 neighbouring pages here
        # were of different moments.
        $t = Start-WfTarget
        try {
            $pages = 32768
            $r = New-WfRegion $t $pages
            $null = Send-WfTarget $t "hot $($r.Hex) 0 $pages 0"
            kill -STOP $t.Id
            Wait-Until { (Get-ProcessState $t.Id) -eq 'T' } | Should -BeTrue -Because 'SIGSTOP takes effect'
            # SIGCONT as soon as the save has begun writing (its private folder appears next to the image): the freeze was
            # taken before that, and the save reads the 128 MiB after it.
            $folder = New-Item -ItemType Directory (New-ImagePath 'f')
            $image = Join-Path $folder 'image'
            $continuer = Start-Bash "while [ -z `"`$(ls -A '$folder')`" ]; do :; done; kill -CONT $($t.Id)"
            try {
                $info = Save-MemoryImage -Id $t.Id -Path $image -Freeze -Method Hash
                $continuer.WaitForExit($HangBoundMs) | Should -BeTrue -Because 'the continuer saw the save begin'
            } finally { if (-not $continuer.HasExited) { $continuer.Kill() } }
            $info.Frozen | Should -BeTrue
            Test-HotMoment (Get-RestoredRegionWords $image $r $t.PageSize $Root) | Should -BeNullOrEmpty -Because 'an image that says Frozen holds one moment'
            Wait-Until { (Get-ProcessState $t.Id) -ne 'T' } | Should -BeTrue -Because 'the SIGCONT sent during the save stands: the target runs after it'
            Get-TracerPid $t.Id | Where-Object { $_ -ne 0 } | Should -BeNullOrEmpty
        } finally { Stop-WfTarget $t }
    }
    It 'SIGSTOP from another process during a -Freeze -Method <Method> save of a target whose threads come and go: the target is stopped after, untraced, and SIGCONT resumes it' -ForEach @(
        @{ Method = 'Hash'; Skip = $null }
        @{ Method = 'WriteProtect'; Skip = $WtDescendantSkip }
    ) {
        # Pester evaluates -Skip once, before the -ForEach data are bound: each case says why it cannot run here.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip }
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 32768
            $null = Send-WfTarget $t 'churn 2'
            $folder = New-Item -ItemType Directory (New-ImagePath 'f')
            $image = Join-Path $folder 'image'
            $stopper = Start-Bash "while [ -z `"`$(ls -A '$folder')`" ]; do :; done; kill -STOP $($t.Id)"
            try {
                $null = Save-MemoryImage -Id $t.Id -Path $image -Freeze -Method $Method
                $stopper.WaitForExit($HangBoundMs) | Should -BeTrue -Because 'the stopper saw the save begin'
            } finally { if (-not $stopper.HasExited) { $stopper.Kill() } }
            Test-MemoryImage -Path $image | Should -BeTrue
            Wait-Until { (Get-ProcessState $t.Id) -eq 'T' } | Should -BeTrue -Because 'the SIGSTOP sent during the save stands'
            Get-TracerPid $t.Id | Where-Object { $_ -ne 0 } | Should -BeNullOrEmpty
            kill -CONT $t.Id
            $null = Send-WfTarget $t 'churn 0' # it answers: it runs again
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-WfTarget $t
        }
    }

    It 'a target stopped (SIGSTOP) before a -Freeze -Method WriteProtect chain (the freeze attaches it, the injection uses that stop): it stays stopped, untraced, and the increment restores what a full image does' -Skip:([bool]$WtDescendantSkip) {
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 64
            kill -STOP $t.Id
            Wait-Until { (Get-ProcessState $t.Id) -eq 'T' } | Should -BeTrue
            $base = New-ImagePath 'c'
            $null = Save-MemoryImage -Id $t.Id -Path "$base-0" -Freeze -Method WriteProtect
            Get-ProcessState $t.Id | Should -Be 'T'
            kill -CONT $t.Id
            $null = Send-WfTarget $t "write $($r.Hex) 5 3"
            kill -STOP $t.Id
            Wait-Until { (Get-ProcessState $t.Id) -eq 'T' } | Should -BeTrue
            $null = Save-MemoryImage -Id $t.Id -Path "$base-1" -Parent "$base-0" -Freeze -Method WriteProtect
            $null = Save-MemoryImage -Id $t.Id -Path "$base-full" -Freeze -Method Hash
            Get-ProcessState $t.Id | Should -Be 'T' -Because 'a process stopped before stays stopped'
            Get-TracerPid $t.Id | Where-Object { $_ -ne 0 } | Should -BeNullOrEmpty
            Compare-RestoredImage "$base-1" "$base-full" $Root | Should -BeNullOrEmpty
        } finally {
            kill -CONT $t.Id
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-WfTarget $t
        }
    }
}

Describe 'Round 17: a target killed (SIGKILL) while another PowerShell holds it stopped' -Tag 'Security', 'Round17Threads' -Skip:([bool]$SiblingSkip) {
    It '<Command>: the target''s parent (this PowerShell) reaps it while the other PowerShell runs on, untraced' -ForEach @(
        @{ Command = 'Save-MemoryImage -Freeze'; Run = 'Save-MemoryImage -Id {0} -Path (Join-Path {1} $k) -Freeze -Method Hash'; Skip = $null }
        @{ Command = 'Invoke-PreCopyMigration (its last round)'; Run = 'Invoke-PreCopyMigration -Id {0} -Destination (Join-Path {1} $k) -Method Hash -Bandwidth 1GB -MaxIterations 1 -StopThreshold 0 -Confirm:$false'; Skip = $null }
        # Three kills of an injection: each lands at a step of its own (before: 13 of 40 unprivileged said ProcIOError, the
        # failing step's errno, ESRCH from PTRACE_GETREGSET, EACCES opening the thread's memory, or "no room on its stack").
        @(1..3 | ForEach-Object { @{ Command = "Enable-WriteTracking (syscall injection), kill $_"; Run = 'Enable-WriteTracking -Id {0}; Disable-WriteTracking -Id {0}'; Skip = $WtSkip } })
    ) {
        # Pester evaluates -Skip once, before the -ForEach data are bound: each case says why it cannot run here.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip }
        # Before: the module never reaped a traced thread group leader, its exit being its parent's; but a zombie that another
        # process traces is seen by that tracer only, and handed on to its parent when the tracer waits for it or ends: this
        # PowerShell's wait for its child did not end for as long as the freezing (injecting) PowerShell ran.
        $t = Start-WfTarget
        $child = $killer = $null
        try {
            $r = New-WfRegion $t 32768
            $null = Send-WfTarget $t "hot $($r.Hex) 0 16 0"
            # Killed the moment its leader is in a ptrace stop (state t): held by the other PowerShell.
            $killer = Start-Bash "while :; do read -r s < /proc/$($t.Id)/stat || exit; case `"`$s`" in *') t '*) kill -KILL $($t.Id); exit;; esac; done"
            $run = $Run -f $t.Id, "'$(New-ImagePath)'"
            $child = Start-ChildPwsh "`$ErrorActionPreference = 'Stop'; `$o = 'OUTCOME none'; for (`$k = 0; `$k -lt 100; `$k++) { try { $run | Out-Null } catch { `$o = 'OUTCOME ' + `$_.FullyQualifiedErrorId + ' ' + `$_.Exception.Message; break } }; `$o; [Console]::Out.Flush(); `$null = [Console]::In.ReadLine()"
            $errors = $child.StandardError.ReadToEndAsync()
            $line = $child.StandardOutput.ReadLineAsync()
            $line.Wait($HangBoundMs) | Should -BeTrue -Because 'the command ends'
            $line.Result | Should -Match '^OUTCOME (ProcessExited|ProcessNotFound),' -Because 'the target was killed while stopped'
            $t.Process.WaitForExit($HangBoundMs) | Should -BeTrue -Because 'the parent reaps its killed child while the other PowerShell still runs'
            $child.HasExited | Should -BeFalse
            $child.StandardInput.WriteLine()
            $child.WaitForExit($HangBoundMs) | Should -BeTrue
            if ($errors.Result) { Write-Host "    child stderr: $($errors.Result)" }
        } finally {
            foreach ($p in $killer, $child) { if ($p -and -not $p.HasExited) { $p.Kill(); $p.WaitForExit() } }
            Stop-WfTarget $t
        }
    }
}
