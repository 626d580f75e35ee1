#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 35 (Stops): others who stop or hold the target while a command works on it. Job control from another
# process (kill(2) of SIGSTOP or SIGCONT, sent from the module's step hook, InjectionSteps.OnStep, so it lands exactly at
# each step; no sleeps), and a debugger-like process (tests/native/stopholder.c: PTRACE_SEIZE + PTRACE_INTERRUPT, or
# PTRACE_ATTACH) holding the target before a command, or taking it at each step of one.
# Found (other: wrong ErrorId): a debugger that attached after Enable-WriteTracking's (or Disable's) check for a tracer and
# before its own PTRACE_SEIZE (the steps "checks, state lookup" to "pick a thread") made the command fail with
# PtraceNotPermitted, "PTRACE_SEIZE ... failed: EPERM: Operation not permitted", which tells the user to look at
# permissions; it now says ProcessAlreadyTraced and names the debugger, as the check does. Failed before: 3 of Enable's
# steps and 2 of Disable's said PtraceNotPermitted.
# Held (host, Linux 6.18, root): SIGSTOP at every step of Enable-WriteTracking (16 steps), Disable-WriteTracking (5),
# Save-MemoryImage -Freeze (Hash: 1 step inside; WriteProtect: 17): the target ends in its group stop (state T), untraced,
# its own signal mask, and once continued it answers; SIGCONT at every step of the same commands to a target stopped
# before: it runs after the command (answers). A debugger holding the target (seize and attach) before Enable, Disable,
# Save -Freeze, Save -Method WriteProtect and Save -Freeze -Method WriteProtect: ProcessAlreadyTraced at once, the
# debugger's tracee left in its stop with no new wait status, and runs after the debugger detaches; a plain Save reads it.
# A debugger seizing at each step: refused (EPERM) while the module holds the thread, and where it gets the thread the
# command ends with ProcessAlreadyTraced or has finished with it; the debugger's hold is never changed.
# Found (TARGET HARMED: another process): the module run in a pid namespace entered without a /proc of its own (unshare -p
# -f, no --mount-proc), where /proc shows the parent namespace's ids while ptrace, kill and waitpid take the namespace's own.
# Save-MemoryImage -Freeze of a process by its /proc id attached to and stopped whichever process of the namespace had that
# id (made so here with ns_last_pid: a child of this PowerShell), waited 10 s for the /proc process to stop and failed with
# ProcIOError; .NET took the other process's ptrace stop for its exit (HasExited, code 0, while it ran on). Enable said
# "opening /proc/18/pagemap: ESRCH". ProcPageSource.Open now refuses where /proc/self is not this process's id (ProcIOError
# naming the pid namespace), before anything is read or attached. Failed before (the test's inner PowerShell is pid 1 there):
# PermissionDenied "opening /proc/1/pagemap of process 1", a process it was never given; run by hand (dotnet pwsh, pid 18) the
# freeze attached to the namespace's process as above.
# Held: the module in a user namespace (unshare -U -r: root there, no capability over a target outside): PermissionDenied
# (Enable, Save, Save -Freeze after its PTRACE_SEIZE's EPERM), Disable WriteTrackingNotEnabled, the target untouched; a target
# that is pid 1 of a child pid namespace (unshare -p -f --mount-proc), the module outside: Enable, Save -Freeze -Method
# WriteProtect and the state file (under its /proc id) work.
# Note for tests: /bin/kill started from the step hook deadlocks while an injection holds .NET's child reaping
# (ChildReapingHold) and the target is a child: the hook sends signals with kill(2) instead.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $R35StopsWtSkip = Get-WriteTrackingSkipReason -Relation Sibling
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    # -Freeze, and the debugger (a sibling of the target), need the right to ptrace it.
    $R35StopsPtraceSkip = if (-not $IsLinux) { 'Linux only' } elseif ($yama -ge 3 -or ($yama -ge 1 -and (id -u) -ne '0')) { "Yama's ptrace_scope $yama forbids ptrace of a sibling here" }
    $R35StopsJobCases = foreach ($c in 'Enable', 'Disable', 'SaveFreeze', 'SaveFreezeWriteProtect') {
        foreach ($s in 'STOP', 'CONT') {
            @{ Command = $c; Signal = $s; Skip = if ($c -eq 'SaveFreeze') { $R35StopsPtraceSkip } else { $R35StopsWtSkip } }
        }
    }
    $R35StopsHoldCases = foreach ($m in 'seize', 'attach') {
        foreach ($c in 'Enable', 'Disable', 'Save', 'SaveFreeze', 'SaveWriteProtect', 'SaveFreezeWriteProtect') {
            @{ Mode = $m; Command = $c; Skip = if ($c -in 'Save', 'SaveFreeze') { $R35StopsPtraceSkip } else { $R35StopsWtSkip } }
        }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state35stops'
    $script:R35StopsRoot = (New-Item -ItemType Directory (Join-Path $TestDrive 'r35stops')).FullName
    $script:R35StopsHolderExe = Join-Path $PSScriptRoot '../native/bin/stopholder'
    $asm = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
    $script:R35StopsSteps = $asm.GetType('SoftDirty.Injection.InjectionSteps', $true)
    $script:R35StopsStatic = [Reflection.BindingFlags]'NonPublic,Public,Static'
    if (-not ('R35Stops.Signal' -as [type])) {
        Add-Type -Namespace R35Stops -Name Signal -MemberDefinition '[System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] public static extern int kill(int pid, int sig);'
    }
    $script:R35StopsSignals = @{ STOP = 19; CONT = 18 }

    # A new imgtarget with a filled region (write tracking enabled first for Disable): { Target, Address }.
    function New-R35StopsTarget([string] $Command) {
        $t = Start-ImgTarget
        $a = Send-ImgTarget $t 'map 16'
        $null = Send-ImgTarget $t "fill $a 16 3"
        if ($Command -eq 'Disable') { $null = Enable-WriteTracking -Id $t.Id -ErrorAction Stop }
        [pscustomobject]@{ Target = $t; Address = $a }
    }
    # The command under test, on target $Id.
    function Invoke-R35StopsCommand([string] $Command, [int] $Id) {
        $path = Join-Path $R35StopsRoot ([guid]::NewGuid().ToString('n'))
        switch ($Command) {
            'Enable' { $null = Enable-WriteTracking -Id $Id -ErrorAction Stop }
            'Disable' { Disable-WriteTracking -Id $Id -ErrorAction Stop }
            'Save' { $null = Save-MemoryImage -Id $Id -Path $path -Method Hash -Confirm:$false -ErrorAction Stop }
            'SaveFreeze' { $null = Save-MemoryImage -Id $Id -Path $path -Method Hash -Freeze -Confirm:$false -ErrorAction Stop }
            'SaveWriteProtect' { $null = Save-MemoryImage -Id $Id -Path $path -Method WriteProtect -Confirm:$false -ErrorAction Stop }
            'SaveFreezeWriteProtect' { $null = Save-MemoryImage -Id $Id -Path $path -Method WriteProtect -Freeze -Confirm:$false -ErrorAction Stop }
        }
    }
    # Runs $Run with a hook that runs $At when the command passes its $Step-th step; returns { Seen (steps), Error }.
    function Invoke-R35StopsAt([int] $Step, [scriptblock] $Run, [scriptblock] $At) {
        $seen = [Collections.Generic.List[string]]::new()
        $rec = [Activator]::CreateInstance($R35StopsSteps)
        $R35StopsSteps.GetProperty('OnStep').SetValue($rec, [Action[string]] {
                param($s)
                $seen.Add($s)
                if ($seen.Count -eq $Step) { & $At }
            }.GetNewClosure())
        $R35StopsSteps.GetProperty('Current', $R35StopsStatic).SetValue($null, $rec)
        $err = $null
        try { & $Run } catch { $err = $_ } finally { $R35StopsSteps.GetProperty('Current', $R35StopsStatic).SetValue($null, $null) }
        [pscustomobject]@{ Seen = $seen; Error = $err }
    }
    function Get-R35StopsState([int] $Id) { ([IO.File]::ReadAllText("/proc/$Id/stat") -replace '^.*\) ', '').Split(' ')[0] }
    function Get-R35StopsStatus([int] $Id, [string] $Name) {
        ((Get-Content "/proc/$Id/status") | Where-Object { $_ -like "${Name}:*" }) -replace "^${Name}:\s*", ''
    }
    # Whether the target answers a write command (bounded: a target left stopped never answers, and the test must fail, not hang).
    function Test-R35StopsAnswers($T) {
        $T.Target.Process.StandardInput.WriteLine("write $($T.Address) 1")
        $line = $T.Target.Process.StandardOutput.ReadLineAsync()
        $line.Wait(60000) -and $line.Result -eq 'OK'
    }
    # Looked at until the target is in its group stop (state T) or the bound passes: it re-enters the stop itself after a detach.
    function Wait-R35StopsStopped([int] $Id) {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        while ((Get-R35StopsState $Id) -ne 'T' -and $clock.Elapsed.TotalSeconds -lt 30) { Start-Sleep -Milliseconds 1 }
        Get-R35StopsState $Id
    }
    # A stopholder on $Id: 'seize' or 'attach' hold it now, 'later' on a line "seize" or "attach".
    function Start-R35StopsHolder([int] $Id, [string] $Mode) {
        if (-not (Test-Path $R35StopsHolderExe)) { throw "stopholder is not built: run ./build.ps1 Native ($R35StopsHolderExe)" }
        $psi = [Diagnostics.ProcessStartInfo]::new($R35StopsHolderExe)
        $psi.ArgumentList.Add("$Id"); $psi.ArgumentList.Add($Mode)
        $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
        $p = [Diagnostics.Process]::Start($psi)
        $first = if ($Mode -ne 'later') { $p.StandardOutput.ReadLine() }
        [pscustomobject]@{ Process = $p; First = $first }
    }
    function Send-R35StopsHolder($Holder, [string] $Line) { $Holder.Process.StandardInput.WriteLine($Line); $Holder.Process.StandardOutput.ReadLine() }
    function Stop-R35StopsHolder($Holder) {
        if (-not $Holder) { return }
        $Holder.Process.StandardInput.Close()
        if (-not $Holder.Process.WaitForExit(10000)) { $Holder.Process.Kill() }
    }
    function Remove-R35StopsTarget($T) {
        if (-not $T) { return }
        $null = [R35Stops.Signal]::kill($T.Target.Id, $R35StopsSignals.CONT)
        Stop-ImgTarget $T.Target
    }
}

Describe 'Round 35: job control from another process at each step of a command' -Tag 'Security', 'Round35Stops', 'WriteTracking' {
    It '<Command>: SIG<Signal> at each step; the target is stopped after exactly when someone else stopped it' -ForEach $R35StopsJobCases {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $steps = 0
        for ($k = 1; ; $k++) {
            $t = New-R35StopsTarget $Command
            try {
                $id = $t.Target.Id
                if ($Signal -eq 'CONT') {
                    $null = [R35Stops.Signal]::kill($id, $R35StopsSignals.STOP)
                    Wait-R35StopsStopped $id | Should -Be 'T'
                }
                $number = $R35StopsSignals[$Signal]
                $r = Invoke-R35StopsAt $k { Invoke-R35StopsCommand $Command $id } { $null = [R35Stops.Signal]::kill($id, $number) }.GetNewClosure()
                if ($r.Seen.Count -lt $k) { break } # the command has fewer steps: every one was tried
                $steps++
                $at = "step $k ($($r.Seen[$k - 1]))"
                $r.Error | Should -BeNullOrEmpty -Because "a stop or continue from elsewhere at $at is no failure"
                if ($Signal -eq 'STOP') {
                    Wait-R35StopsStopped $id | Should -Be 'T' -Because "the SIGSTOP sent at $at stops the process for good, until someone continues it"
                    Get-R35StopsStatus $id 'TracerPid' | Should -Be '0'
                    Get-R35StopsStatus $id 'SigBlk' | Should -Be '0000000000000000'
                    $null = [R35Stops.Signal]::kill($id, $R35StopsSignals.CONT)
                }
                Test-R35StopsAnswers $t | Should -BeTrue -Because "the target runs once continued ($at)"
                Get-R35StopsStatus $id 'TracerPid' | Should -Be '0'
            } finally { Remove-R35StopsTarget $t }
        }
        $steps | Should -BeGreaterThan 0
    }
}

Describe 'Round 35: a debugger holds the target' -Tag 'Security', 'Round35Stops', 'WriteTracking' {
    It '<Mode> before <Command>: ProcessAlreadyTraced (a plain save reads it), and the debugger''s stop is left as it was' -ForEach $R35StopsHoldCases {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = New-R35StopsTarget $Command
        $h = $null
        try {
            $h = Start-R35StopsHolder $t.Target.Id $Mode
            $h.First | Should -Be "HELD $($h.Process.Id)"
            $err = $null
            try { Invoke-R35StopsCommand $Command $t.Target.Id } catch { $err = $_ }
            if ($Command -eq 'Save') { $err | Should -BeNullOrEmpty -Because 'reading memory needs no stop' }
            else { $err.FullyQualifiedErrorId | Should -BeLike 'ProcessAlreadyTraced,*' }
            # Still in the debugger's stop, which reported nothing new (the module neither resumed nor stopped it).
            Send-R35StopsHolder $h 'state' | Should -Be 'STATE t -'
            Get-R35StopsStatus $t.Target.Id 'TracerPid' | Should -Be "$($h.Process.Id)"
            Send-R35StopsHolder $h 'detach' | Should -Be 'DETACHED 0'
            Test-R35StopsAnswers $t | Should -BeTrue
        } finally { Stop-R35StopsHolder $h; Remove-R35StopsTarget $t }
    }

    It 'a debugger seizes the target at each step of <Command>: refused while the command holds it, else ProcessAlreadyTraced or done' -ForEach @(
        @{ Command = 'Enable' }, @{ Command = 'Disable' }
    ) {
        if ($R35StopsWtSkip) { Set-ItResult -Skipped -Because $R35StopsWtSkip; return }
        $steps = 0
        for ($k = 1; ; $k++) {
            $t = New-R35StopsTarget $Command
            $h = $null
            try {
                $id = $t.Target.Id
                $h = Start-R35StopsHolder $id 'later'
                $reply = [Collections.Generic.List[string]]::new()
                $send = ${function:Send-R35StopsHolder} # a closure sees no function of this file
                $r = Invoke-R35StopsAt $k { Invoke-R35StopsCommand $Command $id } { $reply.Add((& $send $h 'seize')) }.GetNewClosure()
                if ($r.Seen.Count -lt $k) { break }
                $steps++
                $at = "step $k ($($r.Seen[$k - 1]))"
                $held = $reply[0] -eq "HELD $($h.Process.Id)"
                if (-not $held) { $reply[0] | Should -Be 'ERR 1' -Because "the module holds the thread at $at (EPERM)" }
                if ($r.Error) { $r.Error.FullyQualifiedErrorId | Should -BeLike 'ProcessAlreadyTraced,*' -Because "a debugger took the target at $at" }
                if ($held) {
                    Send-R35StopsHolder $h 'state' | Should -Be 'STATE t -' -Because "the debugger's stop is its own ($at)"
                    Get-R35StopsStatus $id 'TracerPid' | Should -Be "$($h.Process.Id)"
                    Send-R35StopsHolder $h 'detach' | Should -Be 'DETACHED 0'
                }
                Test-R35StopsAnswers $t | Should -BeTrue -Because "the target runs after the command ($at)"
                Get-R35StopsStatus $id 'TracerPid' | Should -Be '0'
                Get-R35StopsStatus $id 'SigBlk' | Should -Be '0000000000000000'
            } finally { Stop-R35StopsHolder $h; Remove-R35StopsTarget $t }
        }
        $steps | Should -BeGreaterThan 0
    }
}

Describe 'Round 35: the module in a pid namespace whose /proc is its parent''s' -Tag 'Security', 'Round35Stops' {
    It 'Save-MemoryImage -Freeze of a /proc id that a process of the namespace has as its own: refused, that process left alone' {
        $why = if (-not $IsLinux) { 'Linux only' }
        elseif ((id -u) -ne '0') { 'a pid namespace of its own (unshare -p) and ns_last_pid need root' }
        elseif (-not (Get-Command unshare -CommandType Application -ErrorAction SilentlyContinue)) { 'needs unshare (util-linux)' }
        if ($why) { Set-ItResult -Skipped -Because $why; return }
        $t = New-R35StopsTarget 'Save'
        try {
            # Inside: /proc is still the host's; a child of the inner PowerShell gets, in its namespace, the target's /proc id.
            $script = Join-Path $TestDrive 'r35stops-inner.ps1'
            Set-Content $script @'
param([string] $Module, [string] $Support, [int] $Outer, [string] $Path)
Import-Module $Support -Force
Import-Module $Module
$env:SOFTDIRTY_STATE_DIR = Join-Path $Path state
[IO.File]::WriteAllText('/proc/sys/kernel/ns_last_pid', "$($Outer - 1)")
$v = Start-ImgTarget
$a = Send-ImgTarget $v 'map 4'
"INNER $($v.Id)"
try { $null = Save-MemoryImage -Id $Outer -Path (Join-Path $Path img) -Method Hash -Freeze -Confirm:$false -ErrorAction Stop; 'SAVED' }
catch { "ERROR $($_.FullyQualifiedErrorId) $($_.Exception.Message)" }
$v.Process.StandardInput.WriteLine("write $a 1")
$line = $v.Process.StandardOutput.ReadLineAsync()
"ANSWER $($line.Wait(60000) -and $line.Result -eq 'OK')"
"EXITED $($v.Process.HasExited)"
Stop-ImgTarget $v
'@
            $pwsh = Get-PwshCommandLine
            $out = & unshare -p -f @pwsh -NoProfile -File $script -Module (Get-Module SoftDirty).Path -Support (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Outer $t.Target.Id -Path (Join-Path $R35StopsRoot 'pidns') 2>&1
            $text = $out -join "`n"
            $text | Should -Match "INNER $($t.Target.Id)\b" -Because "the namespace's child has the target's /proc id ($text)"
            $text | Should -Match 'EXITED False' -Because 'the process of the namespace with that id was never attached: .NET took its ptrace stop for an exit'
            $text | Should -Match 'ANSWER True'
            $text | Should -Match 'ERROR ProcIOError,\S+ /proc here is another pid namespace''s'
            Get-R35StopsStatus $t.Target.Id 'TracerPid' | Should -Be '0'
            Test-R35StopsAnswers $t | Should -BeTrue
        } finally { Remove-R35StopsTarget $t }
    }
}
