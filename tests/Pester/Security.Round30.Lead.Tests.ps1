#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, thirtieth attack round, the lead's cases: what round 29's audit of the injection and freeze code left open.
# Found: the state letter of a thread (/proc/PID/task/TID/stat), the thread listing (/proc/PID/task) and the count of live
# threads were read as "gone" whatever the failure. Out of descriptors, Enable-WriteTracking said ProcessExited of a process that
# ran on, and a -Freeze save met System.IO.IOException or ProcessExited; within a freeze the same read let go of a thread it had
# stopped (held stopped for as long as the PowerShell ran) or seized a thread waiting in vfork. And the housekeeping after a
# write-tracking state is saved (the removal of states of processes that are gone) failed the Enable where it could not tell
# whether such a process was gone: the userfaultfd just recorded was closed and Enable failed. A PTRACE_SETSIGMASK that failed
# to put the target's signal mask back was ignored: the thread ran on with every signal blocked. Each failure is injected with
# strace into one file of a child PowerShell, or with gdb into one call. Every case below failed before.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $R30LeadStraceSkip = Get-StraceSkipReason 'the failed call is injected with strace'
    # The commands run in a child PowerShell under strace: a sibling of the target.
    $R30LeadWtSkip = if ($R30LeadStraceSkip) { $R30LeadStraceSkip } else { Get-WriteTrackingSkipReason -Relation Sibling }
    $R30LeadFreezeSkip = if ($R30LeadStraceSkip) { $R30LeadStraceSkip } else { Get-PtraceSkipReason }
    # The failed call of the signal-mask case is made by gdb, which runs the child PowerShell (its own child: no ptrace_scope limit).
    $R30LeadGdbSkip = if ($R30LeadWtSkip) { $R30LeadWtSkip }
    elseif (-not (Get-Command gdb -CommandType Application -ErrorAction Ignore)) { 'gdb is not installed: the failed PTRACE_SETSIGMASK is made with a breakpoint of gdb' }
    else {
        $said = gdb -q -batch -ex run --args /bin/true 2>&1
        if ($LASTEXITCODE -ne 0) { "gdb cannot run a program here: $($said | Select-Object -Last 1)" }
    }
    if (-not $R30LeadFreezeSkip) {
        $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
        if ($yama -eq 1 -and (id -u) -ne '0') { $R30LeadFreezeSkip = 'Yama''s ptrace_scope 1 lets a user trace only descendants, and the save runs in a sibling of the target' }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r30lead')).FullName
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    # A write-tracking state folder of this test's own (0700): the user's, which other commands use, is left alone.
    $script:stateDir = (New-Item -ItemType Directory (Join-Path $root 'state')).FullName
    chmod 0700 $stateDir
    $script:savedState = $env:SOFTDIRTY_STATE_DIR
    $env:SOFTDIRTY_STATE_DIR = $stateDir
    # $Command in a child PowerShell under strace with $Strace: the first "said=" line (said), all it printed (all) and how
    # many calls strace failed (injected).
    function script:Invoke-R30Injected([string] $Command, [string[]] $Strace) { Invoke-StraceChild -Module $module -Strace $Strace -Script $Command }
    function script:Get-R30UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" -ErrorAction Ignore | Where-Object { $_.LinkTarget -eq 'anon_inode:[userfaultfd]' }).Count }
    $script:EmfileAt = { param([string] $Path) '-P', $Path, '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE' }
}

AfterAll { $env:SOFTDIRTY_STATE_DIR = $savedState }

Describe 'Round 30: the state of the thread injection stops, unread for want of descriptors' -Tag 'Security', 'Round30Lead', 'WriteTracking' -Skip:([bool]$R30LeadWtSkip) {
    It 'read, Enable-WriteTracking and Disable-WriteTracking succeed (the setting is what the case needs)' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = $t.Send('map 8')
            $r = Invoke-R30Injected "Said { Enable-WriteTracking -Id $($t.Id); Disable-WriteTracking -Id $($t.Id) }" -Strace '-e', 'trace=none'
            $r.said | Should -BeExactly 'ok' -Because $r.all
        } finally { Stop-TestTarget $t }
    }

    It 'Enable-WriteTracking says ResourceLimit naming the file, not ProcessExited, and leaves the target as it was' {
        # Before: ProcessExited ("has no live thread") of a process that ran on.
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = $t.Send('map 8')
            $stat = "/proc/$($t.Id)/task/$($t.Id)/stat"
            $r = Invoke-R30Injected "Said { Enable-WriteTracking -Id $($t.Id) }" -Strace (& $EmfileAt $stat)
            $r.injected | Should -BeGreaterThan 0 -Because $r.all
            $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
            $r.said | Should -BeLike "*$stat*" -Because 'the error names what could not be read'
            $t.Process.HasExited | Should -BeFalse
            Get-R30UffdCount $t.Id | Should -Be 0
            Test-Path -LiteralPath (Join-Path $stateDir "$($t.Id).json") | Should -BeFalse
            $t.Send('sum') | Should -Not -BeNullOrEmpty -Because 'the target answers: nothing was left stopped'
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 30: the threads of a process a -Freeze save stops, unlisted for want of descriptors' -Tag 'Security', 'Round30Lead' -Skip:([bool]$R30LeadFreezeSkip) {
    It 'read, a -Freeze save succeeds (the setting is what the case needs)' {
        $t = Start-TestTarget
        try {
            $r = Invoke-R30Injected "Said { Save-MemoryImage -Id $($t.Id) -Freeze -Path '$root/read-$($t.Id)' -WarningAction SilentlyContinue }" -Strace '-e', 'trace=none'
            $r.said | Should -BeExactly 'ok' -Because $r.all
        } finally { Stop-TestTarget $t }
    }

    It 'the save says ResourceLimit naming the listing, writes nothing, and the target runs on' {
        # Before: ProcessExited, or System.IO.IOException from the freeze's listing of the threads.
        $t = Start-TestTarget
        try {
            $listing = "/proc/$($t.Id)/task"
            $r = Invoke-R30Injected "Said { Save-MemoryImage -Id $($t.Id) -Freeze -Path '$root/emfile-$($t.Id)' -WarningAction SilentlyContinue }" -Strace (& $EmfileAt $listing)
            $r.injected | Should -BeGreaterThan 0 -Because $r.all
            $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
            $r.said | Should -BeLike "*$listing*" -Because 'the error names what could not be read'
            Test-Path -LiteralPath "$root/emfile-$($t.Id)" | Should -BeFalse
            (Get-ProcessState $t.Id) | Should -Not -BeIn 'T', 't' -Because 'nothing of the freeze holds the target'
            $t.Process.HasExited | Should -BeFalse
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 30: the housekeeping after a write-tracking state is saved' -Tag 'Security', 'Round30Lead', 'WriteTracking' -Skip:([bool]$R30LeadWtSkip) {
    It 'a state of a process it cannot tell gone (out of descriptors) is kept, and Enable-WriteTracking succeeds' {
        # Before: ResourceLimit from the removal of stale states, after this state was written: Enable closed the userfaultfd
        # it had just recorded and failed.
        $gone = Get-UnusedProcessId
        $planted = Join-Path $stateDir "$gone.json"
        Set-Content -LiteralPath $planted -Value '{}'
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = $t.Send('map 8')
            $r = Invoke-R30Injected "Said { Enable-WriteTracking -Id $($t.Id) }" -Strace (& $EmfileAt "/proc/$gone/stat")
            $r.injected | Should -BeGreaterThan 0 -Because $r.all
            $r.said | Should -BeExactly 'ok' -Because $r.all
            Get-R30UffdCount $t.Id | Should -Be 1 -Because 'the tracking is on'
            Test-Path -LiteralPath $planted | Should -BeTrue -Because 'whether its process is gone was not known'
            Disable-WriteTracking -Id $t.Id
            Get-R30UffdCount $t.Id | Should -Be 0
            Enable-WriteTracking -Id $t.Id
            Disable-WriteTracking -Id $t.Id
            Test-Path -LiteralPath $planted | Should -BeFalse -Because 'with descriptors to spare the next save of a state removed it'
        } finally { Stop-TestTarget $t; Remove-Item -LiteralPath $planted -ErrorAction Ignore }
    }
}

Describe 'Round 30: a signal mask injection cannot put back' -Tag 'Security', 'Round30Lead', 'WriteTracking' -Skip:([bool]$R30LeadGdbSkip) {
    BeforeAll {
        # gdb runs the child PowerShell and fails each PTRACE_SETSIGMASK that puts a mask back (every one but the one that blocks
        # every signal) with EIO: libc's ptrace returns -1 at once. .NET calls ptrace through a handle of libc of its own, so a
        # preloaded library cannot stand in for it.
        $script:gdbScript = Join-Path $root 'setsigmask.gdb'
        @'
set pagination off
set confirm off
handle all nostop noprint pass
set breakpoint pending on
break ptrace if $rdi == 0x420b && *(unsigned long*)$rcx != 0xffffffffffffffff
commands
silent
printf "INJECTED PTRACE_SETSIGMASK EIO\n"
print *(int*)__errno_location() = 5
return (long)-1
continue
end
run
'@ | Set-Content -LiteralPath $gdbScript
    }

    It 'Enable- and Disable-WriteTracking leave the target''s signal mask as it was, and the target answers' {
        # Before: the registers were put back after the failed call, and the thread ran on with every signal blocked for good
        # (SigBlk fffffffffffbfeff: all but SIGKILL and SIGSTOP). Now it is left on the trampoline, whose code restores the mask.
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = $t.Send('map 8')
            $blocked = { (Get-Content "/proc/$($t.Id)/task/$($t.Id)/status" | Where-Object { $_ -like 'SigBlk:*' }) -replace '^SigBlk:\s*' }
            $before = & $blocked
            $pwsh = Get-PwshCommandLine
            $command = "Import-Module '$module'; try { `$null = Enable-WriteTracking -Id $($t.Id); Disable-WriteTracking -Id $($t.Id); 'said=ok' } catch { 'said=' + `$_.FullyQualifiedErrorId }"
            $lines = @(gdb -q -batch -x $gdbScript --args @pwsh -NoProfile -NonInteractive -Command $command 2>&1 | ForEach-Object { "$_" })
            $all = $lines -join "`n"
            @($lines | Where-Object { $_ -like 'INJECTED*' }).Count | Should -BeGreaterThan 0 -Because $all
            ($lines | Where-Object { $_ -like 'said=*' } | Select-Object -First 1) | Should -BeExactly 'said=ok' -Because $all
            # The thread restores its mask itself once it runs again: it is let run (a command it answers) before the look.
            $t.Send('sum') | Should -Not -BeNullOrEmpty -Because 'the target answers'
            & $blocked | Should -BeExactly $before -Because 'the signal mask is as it was before the injections'
            $t.Process.HasExited | Should -BeFalse
        } finally { Stop-TestTarget $t }
    }
}
