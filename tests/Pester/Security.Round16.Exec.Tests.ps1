#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, sixteenth attack round: a target whose identity and address space change under the module's feet: exec
# from a thread that is not the leader (the thread takes over the pid and the leader's thread id), over and over,
# while the module freezes it or injects into it. New cases only (exec between saves, during a watch, under write
# tracking and while maps are read: rounds 2, 3, 8, 10; pid reuse: round 9). Target: tests/native/exectarget.c.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $PtraceSkip = if ($yama -ge 3 -or ($yama -eq 2 -and (id -u) -ne '0')) { "Yama's ptrace_scope $yama forbids ptrace of a child here" } else { $null }
    $WtSkip = Get-WriteTrackingSkipReason -Relation Descendant
    $FreezeMethods = @(
        @{ Method = 'Hash'; Skip = $PtraceSkip }
        @{ Method = 'WriteProtect'; Skip = $(if ($PtraceSkip) { $PtraceSkip } else { $WtSkip }) }
    )
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $ExecTarget = (Resolve-Path (Join-Path $PSScriptRoot '../native/bin/exectarget')).Path
    $Root = New-Item -ItemType Directory (Join-Path ([IO.Path]::GetTempPath()) "sd-r16exec-$(New-Guid)")
    # Bound on a child pwsh that runs a loop of commands against an exec'ing target: only a hang comes near it.
    $HangBoundMs = 120000

    # Kills the exectarget a loop named (TARGET line) if it still runs: its pid, while that is still an exectarget.
    function Stop-ExecTarget([string[]] $Lines) {
        foreach ($l in $Lines) {
            if ($l -match '^TARGET (\d+)' -and (Get-Content -Raw "/proc/$($Matches[1])/cmdline" -ErrorAction SilentlyContinue) -like '*exectarget*') { kill -KILL $Matches[1] 2>$null }
        }
    }

    <#
    Runs -Loop (a script using $p, the exectarget process it starts: generation 0 up to 1000000, 4 threads, an exec every
    -Usec microseconds) in a child pwsh; returns its output lines: one per command ("OUTCOME <what>"), then "TRACED <the
    TracerPid of each thread>" and "GEN <generation before> <generation after>" (after a pause, with the loop done).
    A child that does not end within the bound is killed with its target, and the lines so far end with "HUNG".
    #>
    function Invoke-ExecLoop([string] $Loop, [int] $Usec = 3000) {
        $script = Join-Path $Root "loop-$(New-Guid).ps1"
        @"
`$ErrorActionPreference = 'Stop'
`$psi = [System.Diagnostics.ProcessStartInfo]::new('$ExecTarget')
foreach (`$a in '0', '1000000', '4', '$Usec') { `$psi.ArgumentList.Add(`$a) }
`$psi.RedirectStandardInput = `$true; `$psi.RedirectStandardOutput = `$true; `$psi.UseShellExecute = `$false
`$p = [System.Diagnostics.Process]::Start(`$psi)
`$null = `$p.StandardOutput.ReadLine()
[Console]::Out.WriteLine("TARGET `$(`$p.Id)"); [Console]::Out.Flush()
# The generation running: cmdline reads empty while an exec is under way, so until it reads a number.
function Gen { for (`$k = 0; `$k -lt 1000; `$k++) { try { `$g = [int]((Get-Content -Raw "/proc/`$(`$p.Id)/cmdline") -split "``0")[1]; if (`$g -gt 0) { return `$g } } catch { }; Start-Sleep -Milliseconds 1 }; -1 }
try {
$Loop
    `$traced = foreach (`$t in Get-ChildItem "/proc/`$(`$p.Id)/task" -ErrorAction SilentlyContinue) { (Get-Content "`$(`$t.FullName)/status" -ErrorAction SilentlyContinue | Where-Object { `$_ -like 'TracerPid:*' }) -replace '\D', '' }
    [Console]::Out.WriteLine("TRACED `$(@(`$traced) -join ',')")
    `$before = Gen; Start-Sleep -Milliseconds 500
    [Console]::Out.WriteLine("GEN `$before `$(Gen)")
} finally { Stop-Process -Id `$p.Id -Force -ErrorAction SilentlyContinue } # by id: the Process object may think it exited (see below)
"@ | Set-Content -LiteralPath $script
        $child = Start-ChildPwsh "& '$script'"
        $errors = $child.StandardError.ReadToEndAsync()
        $lines = [System.Collections.Generic.List[string]]::new()
        $read = $child.StandardOutput.ReadLineAsync()
        $clock = [Diagnostics.Stopwatch]::StartNew()
        while ($true) {
            $left = [Math]::Max(0, $HangBoundMs - $clock.ElapsedMilliseconds)
            if (-not $read.Wait($left)) {
                Stop-ExecTarget $lines
                $child.Kill(); $child.WaitForExit()
                $lines.Add('HUNG')
                break
            }
            if ($null -eq $read.Result) { break }
            $lines.Add($read.Result)
            $read = $child.StandardOutput.ReadLineAsync()
        }
        $child.WaitForExit()
        # The target outlives its starter where .NET's Process took the traced old leader's exit (an exec under a freeze) for
        # its child's: killed by id.
        Stop-ExecTarget $lines
        if ($errors.Result) { Write-Host "    child stderr: $($errors.Result)" }
        $lines
    }
}

AfterAll {
    if ($Root) { Remove-Item -LiteralPath $Root -Recurse -Force -ErrorAction SilentlyContinue }
}

Describe 'Round 16: a target that exec()s from a thread that is not the leader, over and over' -Tag 'Security', 'Round16Exec' {
    It 'Save-MemoryImage -Freeze -Method <Method>, 40 times: every save ends (a valid image, or a SoftDirty error), no thread is left traced, and the target execs on' -ForEach $FreezeMethods {
        # Pester evaluates -Skip once, before the -ForEach data are bound: each case says why it cannot run here.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip }
        # Before: the freeze held threads that the exec then killed; a traced thread stays a zombie until its tracer reaps
        # it, and the exec waits for it while holding the lock PTRACE_SEIZE of the exec'ing thread waits for: the save and
        # the target both hung for good (the target in D, begin_new_exec; trial 4 and trial 11 of two runs).
        $images = Join-Path $Root "freeze-$Method-$(New-Guid)"
        $lines = Invoke-ExecLoop @"
for (`$i = 0; `$i -lt 40; `$i++) {
    `$d = Join-Path '$images' "`$i"
    try {
        `$null = Save-MemoryImage -Id `$p.Id -Path `$d -Method $Method -Freeze -WarningAction SilentlyContinue
        `$o = if (Test-MemoryImage `$d) { 'valid' } else { 'INVALID' }
    } catch { `$o = `$_.FullyQualifiedErrorId.Split(',')[0] + ' ' + `$_.Exception.Message }
    [Console]::Out.WriteLine("OUTCOME `$o")
}
"@
        $lines | Should -Not -Contain 'HUNG'
        $outcomes = @($lines | Where-Object { $_ -like 'OUTCOME *' } | ForEach-Object { $_.Substring(8) })
        Write-Host "    ${Method}: $(($outcomes | ForEach-Object { ($_ -split ' ')[0] } | Group-Object | ForEach-Object { "$($_.Name) x$($_.Count)" }) -join ', ')"
        $outcomes.Count | Should -Be 40
        # While the exec is under way the leader is a zombie with a thread still live: that reads as pthread_exit (ProcIOError,
        # WriteProtectNotSupported) or as an exit (ProcessExited); and the new memory is not dumpable until the exec sets it up,
        # which a user who is not root reads as PermissionDenied. Wrong diagnoses, not fixed this round: no image is given.
        foreach ($o in $outcomes) { $o | Should -Match '^(valid|ProcessExecuted |ProcessExited |ProcIOError |WriteProtectNotSupported |PermissionDenied )' }
        $traced = ($lines | Where-Object { $_ -like 'TRACED *' }).Substring(7) -split ',' | Where-Object { $_ -ne '' }
        $traced | Where-Object { $_ -ne '0' } | Should -BeNullOrEmpty -Because 'nothing the freeze attached stays attached'
        $gen = ($lines | Where-Object { $_ -like 'GEN *' }) -split ' '
        [int]$gen[2] | Should -BeGreaterThan ([int]$gen[1]) -Because 'the target still execs (it is not stuck in an exec)'
    }
}

Describe 'Round 16, found by CI: a target whose threads start and exit back to back' -Tag 'Security', 'Round16Exec' {
    # Before: a thread that exited between its PTRACE_SEIZE and its stop stays a zombie until its tracer reaps it, and
    # PTRACE_INTERRUPT (which looks at no state) succeeds on it: the freeze took it for a thread of its own to stop again in
    # every pass and gave up after 64 ("it kept starting threads"). Seen in the kernel VM (a soft-dirty chain of a process
    # whose writer threads exited, 4 of 75 saves), and here about 3 freezes in 100 with one thread starting others: so 200.
    It 'Save-MemoryImage -Freeze -Method Hash, 200 times: every freeze ends in a valid image, and no thread stays traced' -Skip:([bool]$PtraceSkip) {
        $w = Start-WfTarget
        try {
            $null = Send-WfTarget $w 'churn 1'
            $failed = [Collections.Generic.List[string]]::new()
            foreach ($i in 1..200) {
                $d = Join-Path $Root "churn-$i"
                try {
                    $null = Save-MemoryImage -Id $w.Id -Path $d -Method Hash -Freeze -ErrorAction Stop
                    if (-not (Test-MemoryImage $d)) { $failed.Add("save $i INVALID") }
                } catch { $failed.Add("save ${i}: $($_.FullyQualifiedErrorId) $($_.Exception.Message)") }
                Remove-Item -LiteralPath $d -Recurse -Force -ErrorAction SilentlyContinue
            }
            $failed | Should -BeNullOrEmpty
            $null = Send-WfTarget $w 'churn 0'
            $traced = foreach ($t in Get-ChildItem "/proc/$($w.Id)/task") { (Get-Content "$($t.FullName)/status" -ErrorAction SilentlyContinue | Where-Object { $_ -like 'TracerPid:*' }) -replace '\D', '' }
            $traced | Where-Object { $_ -ne '0' } | Should -BeNullOrEmpty -Because 'nothing the freeze attached stays attached'
        } finally { Stop-WfTarget $w }
    }
}
