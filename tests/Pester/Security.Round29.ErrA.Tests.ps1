#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-ninth attack round (errA): a failed system call read as an answer in the injection, /proc and tracking code.
# Found: the seccomp mode of the thread that injection stops is read from its /proc status; unread (this process out of
# descriptors), it counted as "no filter", and the injected userfaultfd ran into a filter that kills: the target of
# Enable-WriteTracking was killed. The links of /proc were read with .NET's FileSystemInfo.LinkTarget or readlink whose failure
# was "no link": out of memory (ENOMEM), Enable saved a state without its descriptor's inode (the next command deleted it as
# stale, the userfaultfd left in the process for good), a later command deleted a live tracking's state the same way, a clear
# recorded no soft-dirty epoch (the record's name needs the pid namespace, /proc/self/ns/pid) so the chain trusted the bits it
# took, and the search for io_uring descriptors (whose buffers the kernel writes past soft-dirty) passed an unread one over.
# Each failure is injected with strace into one call of a child PowerShell. Every case below failed before.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $StraceSkip = Get-StraceSkipReason 'the failed call is injected with strace'
    # The commands run in a child PowerShell under strace: a sibling of the target.
    $WtSkip = if ($StraceSkip) { $StraceSkip } else { Get-WriteTrackingSkipReason -Relation Sibling }
    # A process that is not dumpable hides its descriptors from its own user, not from root (CAP_SYS_PTRACE).
    # A time namespace (a boot-time offset): root makes one outright, another user in a user namespace of its own (unshare -U -r).
    $TimeOptions = @(if ((id -u) -eq '0') { '-T' } else { '-U', '-r', '-T' })
    $TimeSkip = if ($StraceSkip) { $StraceSkip }
    elseif (-not (Test-Path /proc/self/timens_offsets)) { 'no time namespaces on this kernel (before 5.6, or CONFIG_TIME_NS off)' }
    elseif (-not (Get-Command unshare -CommandType Application -ErrorAction SilentlyContinue)) { 'needs unshare (util-linux) for a time namespace' }   # round 34
    else {
        & unshare @TimeOptions --boottime 1000 -f true 2>$null
        if ($LASTEXITCODE -ne 0) { "unshare $TimeOptions --boottime fails here ($LASTEXITCODE): no time namespace can be made" }
    }
    $HiddenSkip = if ($WtSkip) { $WtSkip } elseif ((id -u) -eq '0') { 'root reads the descriptors of a process that is not dumpable: the case is its own user''s' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r29erra')).FullName
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    # A write-tracking state folder of this test's own (0700): the user's, which other commands use, is left alone.
    $script:stateDir = (New-Item -ItemType Directory (Join-Path $root 'state')).FullName
    chmod 0700 $stateDir
    $script:savedState = $env:SOFTDIRTY_STATE_DIR
    $env:SOFTDIRTY_STATE_DIR = $stateDir
    # $Command in a child PowerShell under strace with $Strace: the first "said=" line it printed (said) and all it printed (all).
    function script:Invoke-Injected([string] $Command, [string[]] $Strace) { Invoke-StraceChild -Module $module -Strace $Strace -Script $Command }
    # A command's outcome as "ok" or "ERRORID|message".
    $script:SaidCmdlet = 'function Said([scriptblock] $C) { try { $null = & $C; "said=ok" } catch { "said=$($_.FullyQualifiedErrorId -replace '',.*'')|$($_.Exception.Message -replace ''\r?\n'', '' '')" } }; '
    # The same for an engine method called by reflection (its EngineException's error, under .NET's invocation wrapper).
    $script:SaidEngine = @'
$I = [Reflection.BindingFlags] 'Static, Public, NonPublic'
$engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
function Said([scriptblock] $C) {
    try { "said=ok|$(& $C)" }
    catch { $x = $_.Exception; while ($x -isnot [SoftDirty.EngineException] -and $x.InnerException) { $x = $x.InnerException }; "said=$(if ($x -is [SoftDirty.EngineException]) { $x.Error } else { $x.GetType().FullName })|$($x.Message)" }
}

'@
    function script:Get-UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" -ErrorAction Ignore | Where-Object { $_.LinkTarget -eq 'anon_inode:[userfaultfd]' }).Count }
    # readlink of every descriptor link the target may show (its own 0-2 and what the injection makes) fails with ENOMEM.
    function script:Get-LinkFailure([int] $Id) {
        foreach ($n in 0..15) { '-P', "/proc/$Id/fd/$n" }
        '-e', 'trace=readlink,readlinkat', '-e', 'inject=readlink,readlinkat:error=ENOMEM'
    }
}

AfterAll { $env:SOFTDIRTY_STATE_DIR = $savedState }

Describe 'Round 29: the seccomp mode of the thread injection stops, unread' -Tag 'Security', 'Round29ErrA' -Skip:([bool]$WtSkip) {
    BeforeAll {
        function script:Start-KillingTarget {
            $t = Start-TestTarget -Path $wtExe
            $null = $t.Send('map 8')
            $null = $t.Send('seccompkill 323') # userfaultfd (x86-64): the process is killed by it
            $t
        }
    }

    It 'read, a filter that kills on userfaultfd refuses Enable-WriteTracking (SeccompForbids), the target alive (the setting is what the case needs)' {
        $t = Start-KillingTarget
        try {
            $r = Invoke-Injected ($SaidCmdlet + "Said { Enable-WriteTracking -Id $($t.Id) }") -Strace '-e', 'trace=none'
            $r.said | Should -BeLike 'SeccompForbids|*' -Because $r.all
            $t.Process.HasExited | Should -BeFalse
        } finally { Stop-TestTarget $t }
    }

    It 'out of descriptors at /proc/PID/task/TID/status, Enable-WriteTracking says ResourceLimit and the target lives on, untouched' {
        # Before (a caller that may read filters, CAP_SYS_ADMIN): the mode unread was "no filter", the userfaultfd was injected and
        # the filter killed the target (ProcessExited). A caller that may not is refused before it attaches (the process's
        # status says a filter is there): SeccompForbids, as with descriptors to spare.
        $capEff = [Convert]::ToUInt64(((Get-Content /proc/self/status | Where-Object { $_ -like 'CapEff:*' }) -split '\s+')[1], 16)
        $canRead = ($capEff -band (1UL -shl 21)) -ne 0
        $t = Start-KillingTarget
        try {
            $r = Invoke-Injected ($SaidCmdlet + "Said { Enable-WriteTracking -Id $($t.Id) }") -Strace '-P', "/proc/$($t.Id)/task/$($t.Id)/status", '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE'
            if ($canRead) {
                $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
                $r.said | Should -BeLike "*/proc/$($t.Id)/task/$($t.Id)/status*" -Because 'the error names what could not be read'
            } else {
                $r.said | Should -BeLike 'SeccompForbids|*' -Because $r.all
            }
            $t.Process.HasExited | Should -BeFalse -Because 'the filter never saw an injected call'
            Get-UffdCount $t.Id | Should -Be 0
            $t.Send('sum') | Should -Not -BeNullOrEmpty
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 29: the descriptor links of a tracked process, unread for want of memory' -Tag 'Security', 'Round29ErrA' -Skip:([bool]$WtSkip) {

    It 'Enable-WriteTracking says ResourceLimit and leaves no userfaultfd behind' {
        # Before: the state was saved with inode 0, the command's next step took the state for stale and deleted it, and the
        # userfaultfd stayed registered in the target for good (Disable-WriteTracking: WriteTrackingNotEnabled).
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = $t.Send('map 8')
            $r = Invoke-Injected ($SaidCmdlet + "Said { Enable-WriteTracking -Id $($t.Id) }") -Strace (Get-LinkFailure $t.Id)
            $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
            Get-UffdCount $t.Id | Should -Be 0 -Because 'the userfaultfd made was closed'
            Test-Path -LiteralPath (Join-Path $stateDir "$($t.Id).json") | Should -BeFalse
        } finally { Stop-TestTarget $t }
    }

    It 'Enable-WriteTracking whose descriptor''s fdinfo cannot be read (EIO) says ProcIOError and leaves no userfaultfd behind' {
        # Before: the state was saved with inode 0 (no command could match it to its descriptor), taken for stale at once and
        # deleted, and the userfaultfd stayed registered in the target for good.
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = $t.Send('map 8')
            $fdinfo = foreach ($n in 0..15) { '-P', "/proc/$($t.Id)/fdinfo/$n" }
            $r = Invoke-Injected ($SaidCmdlet + "Said { Enable-WriteTracking -Id $($t.Id) }") -Strace ($fdinfo + @('-e', 'trace=openat', '-e', 'inject=openat:error=EIO'))
            $r.said | Should -BeLike 'ProcIOError|*' -Because $r.all
            Get-UffdCount $t.Id | Should -Be 0 -Because 'the userfaultfd made was closed'
            Test-Path -LiteralPath (Join-Path $stateDir "$($t.Id).json") | Should -BeFalse
        } finally { Stop-TestTarget $t }
    }

    It 'a later Disable-WriteTracking says ResourceLimit and keeps the state: the tracking can be disabled after' {
        # Before: the link unread was "not the userfaultfd", the state was deleted as stale (WriteTrackingNotEnabled) and the
        # tracking lived on in the process with no command able to end it.
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = $t.Send('map 8')
            $null = Enable-WriteTracking -Id $t.Id
            Get-UffdCount $t.Id | Should -Be 1
            $r = Invoke-Injected ($SaidCmdlet + "Said { Disable-WriteTracking -Id $($t.Id) }") -Strace (Get-LinkFailure $t.Id)
            $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
            Test-Path -LiteralPath (Join-Path $stateDir "$($t.Id).json") | Should -BeTrue -Because 'the state of a live tracking stays'
            Disable-WriteTracking -Id $t.Id
            Get-UffdCount $t.Id | Should -Be 0
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 29: /proc links a clear or a save trusts, unread for want of memory' -Tag 'Security', 'Round29ErrA' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        $script:sleeper = Start-Process sleep -ArgumentList '600' -PassThru
        # The epoch folders of this test (TrackingEpoch.SharedTempFolder and RuntimeRoot, internal) in the child: the machine's
        # own, which other commands use, are left alone.
        $script:folders = (New-Item -ItemType Directory (Join-Path $root "epochs-$([guid]::NewGuid().ToString('n'))")).FullName
        foreach ($d in 'tmp', 'run') { $null = New-Item -ItemType Directory (Join-Path $folders $d) }
        $script:epochChild = $SaidEngine + @"
`$epoch = `$engine.GetType('SoftDirty.Tracking.TrackingEpoch', `$true)
`$epoch.GetProperty('SharedTempFolder', `$I).SetValue(`$null, '$folders/tmp')
`$epoch.GetProperty('RuntimeRoot', `$I).SetValue(`$null, '$folders/run')
`$source = `$engine.GetType('SoftDirty.ProcPageSource', `$true).GetMethod('Open', [type[]]@([int])).Invoke(`$null, [object[]]@($($sleeper.Id)))
Said { `$epoch.GetMethod('Record', `$I).Invoke(`$null, [object[]]@(`$source)) }
"@
    }
    AfterAll { if ($sleeper -and -not $sleeper.HasExited) { $sleeper.Kill(); $sleeper.WaitForExit() } }

    It 'with memory to spare, a clear''s epoch record is made (the setting is what the case needs)' {
        $r = Invoke-Injected $epochChild -Strace '-e', 'trace=none'
        $r.said | Should -BeLike "ok|*$folders/*=*" -Because $r.all
    }

    It 'the epoch record of a clear says ResourceLimit where /proc/self/ns/pid cannot be read, never "no record"' {
        # Before: ok with no record (null): the clear went on, and the chain, reading the epoch of before, trusted the bits it took.
        $r = Invoke-Injected $epochChild -Strace '-P', '/proc/self/ns/pid', '-e', 'trace=readlink,readlinkat', '-e', 'inject=readlink,readlinkat:error=ENOMEM'
        $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
        $r.said | Should -BeLike '*/proc/self/ns/pid*' -Because 'the error names what could not be read'
    }

    It 'the search for io_uring descriptors says ResourceLimit where a descriptor''s link cannot be read, never "none"' {
        # Before: False (no io_uring: its buffers, which the kernel writes past soft-dirty, not compared).
        $child = $SaidEngine + "Said { `$engine.GetType('SoftDirty.PinnedBuffers', `$true).GetMethod('HasRingsInOwnMemory', `$I).Invoke(`$null, [object[]]@($($sleeper.Id), [SoftDirty.MemoryMapping[]]@())) }"
        $plain = Invoke-Injected $child -Strace '-e', 'trace=none'
        $plain.said | Should -Be 'ok|False' -Because "a sleep has no io_uring ($($plain.all))"
        $r = Invoke-Injected $child -Strace (Get-LinkFailure $sleeper.Id)
        $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
        $r.said | Should -BeLike "*/proc/$($sleeper.Id)/fd/*" -Because 'the error names what could not be read'
    }
}

Describe 'Round 29: the status of a tracked process that hides its descriptors, unread' -Tag 'Security', 'Round29ErrA' -Skip:([bool]$HiddenSkip) {
    It 'Disable-WriteTracking says ResourceLimit and keeps the state: once the process shows its descriptors again, the tracking is disabled' {
        # Before: /proc/PID/status unread was "the process exited": the state of the hidden (not dumpable) process was deleted as
        # stale (ProcessExited), and once it was dumpable again no command could end its tracking.
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = $t.Send('map 8')
            $null = Enable-WriteTracking -Id $t.Id
            $null = $t.Send('dumpable 0')
            $r = Invoke-Injected ($SaidCmdlet + "Said { Disable-WriteTracking -Id $($t.Id) }") -Strace '-P', "/proc/$($t.Id)/status", '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE'
            $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
            Test-Path -LiteralPath (Join-Path $stateDir "$($t.Id).json") | Should -BeTrue -Because 'the state of a live tracking stays'
            $null = $t.Send('dumpable 1')
            Get-UffdCount $t.Id | Should -Be 1
            Disable-WriteTracking -Id $t.Id
            Get-UffdCount $t.Id | Should -Be 0
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 29: the offset of this process''s time namespace, unread' -Tag 'Security', 'Round29ErrA' -Skip:([bool]$TimeSkip) {
    BeforeAll {
        $script:sleeper = Start-Process sleep -ArgumentList '600' -PassThru
        $script:TimeOptions = @(if ((id -u) -eq '0') { '-T' } else { '-U', '-r', '-T' })
        $I = [Reflection.BindingFlags] 'Static, Public, NonPublic'
        $engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
        # The start time as this PowerShell (no time namespace of its own) names it: the name every command must agree on.
        $script:hostTicks = $engine.GetType('SoftDirty.ProcessStart', $true).GetMethod('Ticks', $I).Invoke($null, [object[]]@($sleeper.Id))
        $script:ticksChild = $SaidEngine + "Said { `$engine.GetType('SoftDirty.ProcessStart', `$true).GetMethod('Ticks', `$I).Invoke(`$null, [object[]]@($($sleeper.Id))) }"
        # The child in a time namespace 1000 s ahead (unshare writes the offset itself, so strace runs inside it).
        function script:Invoke-InTimeNamespace([string[]] $Strace) {
            $pwsh = Get-PwshCommandLine
            $full = "`$ErrorActionPreference = 'Stop'; Import-Module '$module'; $ticksChild"
            $run = @(@('unshare') + $TimeOptions + @('--boottime', '1000', '-f', '--', 'strace', '-f', '-qq', '-o', '/dev/null') + $Strace + $pwsh)
            $lines = @(& $run[0] @($run | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $full 2>&1 | ForEach-Object { "$_" })
            @{ said = ($lines | Where-Object { $_ -like 'said=*' } | Select-Object -First 1) -replace '^said='; all = $lines -join "`n" }
        }
    }
    AfterAll { if ($sleeper -and -not $sleeper.HasExited) { $sleeper.Kill(); $sleeper.WaitForExit() } }

    It 'read, the start time in the namespace is the one outside it (the setting is what the case needs)' {
        $r = Invoke-InTimeNamespace '-e', 'trace=none'
        $r.said | Should -Be "ok|$hostTicks" -Because $r.all
    }

    It 'out of descriptors at /proc/self/timens_offsets, the start time says ResourceLimit, never one off by the offset' {
        # Before: ok with the start time 1000 s (100,000 ticks) later than outside, for the rest of the session (the offset was
        # kept as 0): the epoch records of its clears went under other names than other commands' records of the process.
        $r = Invoke-InTimeNamespace '-P', '/proc/self/timens_offsets', '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE'
        $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
        $r.said | Should -BeLike '*/proc/self/timens_offsets*' -Because 'the error names what could not be read'
    }
}

Describe 'Round 29: whether an id is a thread''s, unread' -Tag 'Security', 'Round29ErrA' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        # The child opens one of its own threads (one that is not its main thread: the runtime's threads live as long as it).
        $script:threadChild = $SaidEngine + @'
$tid = [int](Get-ChildItem /proc/self/task -Name | Where-Object { $_ -ne "$PID" } | Select-Object -First 1)
Said { $engine.GetType('SoftDirty.ProcPageSource', $true).GetMethod('Open', [type[]]@([int])).Invoke($null, [object[]]@($tid)).ProcessId }
'@
    }

    It 'read, a thread''s id is refused as no process (ProcessNotFound: the setting is what the case needs)' {
        $r = Invoke-Injected $threadChild -Strace '-e', 'trace=none'
        $r.said | Should -BeLike 'ProcessNotFound|*is a thread*' -Because $r.all
    }

    It 'out of descriptors at its status, a thread''s id says ResourceLimit, never opened as a process' {
        # Before: opened as a process: its results, soft-dirty epoch and write-tracking state went under the thread's id, and a
        # clear made through it went unseen by the process's own chain. strace matches the name as the module opens it
        # (openat of 'status' relative to the /proc/TID descriptor).
        $r = Invoke-Injected $threadChild -Strace '-P', 'status', '-e', 'trace=openat', '-e', 'inject=openat:error=EMFILE'
        $r.said | Should -BeLike 'ResourceLimit|*' -Because $r.all
        $r.said | Should -BeLike '*/status*' -Because 'the error names what could not be read'
    }
}
