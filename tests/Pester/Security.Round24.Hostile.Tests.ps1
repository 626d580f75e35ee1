#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-fourth attack round (hostile): targets that restrict themselves with process attributes no earlier
# round tried, under every command that injects syscalls (Enable-WriteTracking, and -Method WriteProtect saves, watches,
# -Freeze saves and migrations, each of which enables the tracking for itself). New cases only (rounds 2-23:
# Security.Round*.Tests.ps1; seccomp filters, descriptor limits and vfork were rounds 7, 13 and 15). Target:
# tests/native/wttarget.c (sud, sudsel, sudcall, attrs, hostile). Each kernel feature is probed.
#
# Found: syscall user dispatch (PR_SET_SYSCALL_USER_DISPATCH). The injected calls run at restore code outside the
# target's exempt range, so where its selector byte said block (or it had none) the kernel forced SIGSYS on a thread
# whose every signal injection had blocked: that reset the process's SIGSYS handler to the default, silently (the
# command said ProcIOError), and the target's next dispatch of its own killed it; a selector byte the kernel does not
# know killed the target at the first injected call, as one in a page it cannot read did (SIGSEGV) (measured before the
# fix: block and none ProcIOError and the handler gone, 10 of 10; bad and unreadable: the target killed, 10 of 10, and
# Disable of a tracking enabled while the selector allowed alike, 2 of 2). Now every call is judged first
# (PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG and the selector byte): SyscallDispatchForbids, nothing issued.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $Wt = Join-Path $PSScriptRoot '../native/bin/wttarget'
    # What this kernel lets a process do to itself: each attribute is tried once in a target of its own.
    $Probe = @{}
    $SudSkip = $WtSkip
    if (-not $WtSkip) {
        foreach ($what in 'mdwe', 'landlock') {
            $p = Start-TestTarget -Path $Wt
            try { $reply = $p.TrySend("hostile $what"); if ($reply -notmatch '^OK') { $Probe[$what] = "this kernel refuses it ($reply)" } } finally { Stop-TestTarget $p }
        }
        $p = Start-TestTarget -Path $Wt
        try {
            $reply = $p.TrySend('sud allow')
            if ($reply -notmatch '^OK') { $SudSkip = "no syscall user dispatch here (Linux 5.11, CONFIG_GENERIC_ENTRY: $reply)" }
            else {
                # The refusal is judged from PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG (Linux 6.2): without it, the module can only
                # tell of the SIGSYS afterwards, and the handler is gone by then. Asked of the kernel (a traced child of a target),
                # not read from its version: a backport has it, a kernel built without generic entry code has not.
                $probe = $p.TrySend('sudprobe')
                if ($probe -notmatch '^OK 1') { $SudSkip = "this kernel cannot tell a tracer of a thread's syscall user dispatch (PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, Linux 6.2: $probe)" }
            }
        } finally { Stop-TestTarget $p }
    }
    $Commands = 'Enable-WriteTracking', 'Save-MemoryImage -Method WriteProtect', 'Watch-DirtyPage -Method WriteProtect',
        'Save-MemoryImage -Method WriteProtect -Freeze', 'Invoke-PreCopyMigration -Method WriteProtect'
    $SudCases = @(foreach ($s in 'block', 'none', 'bad', 'unreadable') { foreach ($c in $Commands) { @{ Selector = $s; Command = $c } } })
    # Attributes that hold (measured: each command worked, increments and migrations restored what a full image restores, the
    # target unchanged; root and unprivileged). 'rlimit AS/DATA NOW' is set to what the target uses at that moment.
    $Held = @(
        @{ Name = 'memory-deny-write-execute (PR_SET_MDWE, REFUSE_EXEC_GAIN)'; Setup = 'hostile mdwe'; Skip = $Probe['mdwe'] }
        @{ Name = 'personality READ_IMPLIES_EXEC (before its region is mapped)'; Setup = 'hostile personality 0400000'; Skip = $null; First = $true }
        @{ Name = 'personality ADDR_NO_RANDOMIZE'; Setup = 'hostile personality 0040000'; Skip = $null }
        @{ Name = 'mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)'; Setup = 'hostile mlockall 7'; Skip = $null }
        @{ Name = 'mlockall(MCL_CURRENT | MCL_FUTURE)'; Setup = 'hostile mlockall 3'; Skip = $null }
        @{ Name = 'SIGSEGV, SIGTRAP, SIGSYS, SIGBUS and SIGUSR1 handlers on a sigaltstack'; Setup = 'hostile handlers'; Skip = $null }
        @{ Name = 'every signal blocked'; Setup = 'hostile blockall'; Skip = $null }
        @{ Name = 'PR_SET_CHILD_SUBREAPER and PR_SET_PDEATHSIG'; Setup = 'hostile reaper'; Skip = $null }
        @{ Name = 'landlock (no file access, signal and abstract socket scopes)'; Setup = 'hostile landlock'; Skip = $Probe['landlock'] }
        @{ Name = 'RLIMIT_AS at what it uses'; Setup = 'hostile rlimit 9 AS'; Skip = $null }
        @{ Name = 'RLIMIT_DATA at what it uses'; Setup = 'hostile rlimit 2 DATA'; Skip = $null }
        @{ Name = 'syscall user dispatch, selector allow'; Setup = 'sud allow'; Skip = $SudSkip }
    )
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:Wt = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r24h')
    function New-ImagePath([string] $Prefix = 'i') { Join-Path $root "$Prefix-$([guid]::NewGuid().ToString('n'))" }
    function Get-StatusField([int] $Id, [string] $Key) { ((Get-Content "/proc/$Id/status" | Where-Object { $_ -like "${Key}:*" }) -split '\s+')[1] }
    # What must be as before once a command is done: the target's own view of itself (signal dispositions, mask, sigaltstack,
    # rlimits, personality, prctl attributes, descriptors, handled signals), its mappings, no tracer, not stopped.
    function Get-TargetState($Target) {
        [pscustomobject]@{
            Attrs  = $Target.Send('attrs')
            Maps   = (Get-Content "/proc/$($Target.Id)/maps") -join "`n"
            Tracer = Get-StatusField $Target.Id 'TracerPid'
            State  = Get-ProcessState $Target.Id
        }
    }
    function Assert-Unchanged($Target, $Before) {
        $Target.Process.HasExited | Should -BeFalse -Because 'the target must live on'
        $after = Get-TargetState $Target
        $after.Attrs | Should -Be $Before.Attrs -Because 'signal dispositions, mask, rlimits, attributes and descriptors stay as they were'
        $after.Maps | Should -Be $Before.Maps -Because 'no mapping is left behind'
        $after.Tracer | Should -Be '0'
        $after.State | Should -BeIn 'S', 'R'
    }
    # Runs one of the injecting commands against the target; returns the error record, or $null where it succeeded.
    function Invoke-Injecting([string] $Command, $Target) {
        try {
            switch ($Command) {
                'Enable-WriteTracking' { $null = Enable-WriteTracking -Id $Target.Id -ErrorAction Stop }
                'Save-MemoryImage -Method WriteProtect' { $null = Save-MemoryImage -Id $Target.Id -Path (New-ImagePath) -Method WriteProtect -ErrorAction Stop }
                'Watch-DirtyPage -Method WriteProtect' { $null = Watch-DirtyPage -Id $Target.Id -Method WriteProtect -Count 2 -Interval 0.2 -ErrorAction Stop }
                'Save-MemoryImage -Method WriteProtect -Freeze' { $null = Save-MemoryImage -Id $Target.Id -Path (New-ImagePath) -Method WriteProtect -Freeze -ErrorAction Stop }
                'Invoke-PreCopyMigration -Method WriteProtect' { $null = Invoke-PreCopyMigration -Id $Target.Id -Method WriteProtect -Destination (New-ImagePath 'm') -Bandwidth 1GB -MaxIterations 2 -Confirm:$false -WarningAction SilentlyContinue -ErrorAction Stop }
            }
            $null
        } catch { $_ }
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 24: a target whose syscall user dispatch would take the injected calls' -Tag 'WriteTracking', 'Security', 'Round24Hostile' -Skip:([bool]$SudSkip) {
    It '<Command> of a target whose selector says <Selector> is SyscallDispatchForbids, and the target keeps its SIGSYS handler' -ForEach $SudCases {
        $t = Start-TestTarget -Path $Wt
        try {
            $hex = $t.Send('map 8'); $null = $t.Send("write $hex 0 8")
            $null = $t.Send("sud $Selector")
            $before = Get-TargetState $t
            $caught = Get-StatusField $t.Id 'SigCgt'
            $e = Invoke-Injecting $Command $t
            $e | Should -Not -BeNullOrEmpty
            $e.FullyQualifiedErrorId | Should -BeLike 'SyscallDispatchForbids,*'
            $e.CategoryInfo.Category | Should -Be 'PermissionDenied'
            Get-StatusField $t.Id 'SigCgt' | Should -Be $caught -Because 'a SIGSYS forced while blocked resets the handler to the default'
            Assert-Unchanged $t $before
            # Its own dispatch still reaches its handler, and nothing was dispatched before.
            if ($Selector -eq 'block') { $t.Send('sudcall') | Should -Be '1' }
        } finally { Stop-TestTarget $t }
    }

    It 'tracking enabled while the selector allows: Disable while it says <Selector> is refused and the tracking stays; once it allows again Disable ends it' -ForEach @(@{ Selector = 'block' }, @{ Selector = 'bad' }) {
        $t = Start-TestTarget -Path $Wt
        try {
            $null = $t.Map(4)
            $null = $t.Send('sud allow')
            $fds = $t.Send('fds')
            $null = Enable-WriteTracking -Id $t.Id
            $null = $t.Send("sudsel $Selector")
            $before = Get-TargetState $t
            $e = Get-ErrorId { Disable-WriteTracking -Id $t.Id -ErrorAction Stop }
            $e | Should -BeLike 'SyscallDispatchForbids*'
            Assert-Unchanged $t $before
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeTrue
            $null = $t.Send('sudsel allow')
            Disable-WriteTracking -Id $t.Id
            $t.Send('fds') | Should -Be $fds
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }
}

Describe 'Round 24: targets that restrict themselves, under every injecting command' -Tag 'WriteTracking', 'Security', 'Round24Hostile' -Skip:([bool]$WtSkip) {
    It '<Name>: tracking, increments, a watch, a -Freeze save and a migration are exact, and the target is as it was' -ForEach $Held {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $Wt
        try {
            if ($First) { $r = $t.TrySend($Setup); $r | Should -Match '^OK' }
            $hex = $t.Send('map 8'); $null = $t.Send("write $hex 0 8")
            $base = [Convert]::ToUInt64($hex, 16)
            if (-not $First) {
                $kb = { param($k) [long](Get-StatusField $t.Id $k) * 1024 }
                $cmd = $Setup -replace ' AS$', " $(& $kb 'VmSize')" -replace ' DATA$', " $(& $kb 'VmData')"
                $r = $t.TrySend($cmd); $r | Should -Match '^OK'
            }
            $before = Get-TargetState $t
            $null = Enable-WriteTracking -Id $t.Id
            $chain = New-ImagePath 'c'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method WriteProtect
            $null = $t.Send("write $hex 3 2")
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect
            $full = New-ImagePath 'f'
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
            Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty
            $done = $false
            $samples = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.5 | ForEach-Object {
                    if (-not $done) { $done = $true; $null = $t.Send("write $hex 6 1") }
                    $_
                })
            $pages = @(foreach ($r in $samples[1].Ranges) { for ($a = [Math]::Max($r.Start, $base); $a -lt [Math]::Min($r.End, $base + 8 * $t.PageSize); $a += $t.PageSize) { ($a - $base) / $t.PageSize } })
            $pages | Should -Contain 6
            $frozen = New-ImagePath 'z'
            $null = Save-MemoryImage -Id $t.Id -Path $frozen -Method WriteProtect -Freeze
            Test-MemoryImage -Path $frozen | Should -BeTrue
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Method WriteProtect -Destination (New-ImagePath 'm') -Bandwidth 1GB -MaxIterations 2 -Confirm:$false -WarningAction SilentlyContinue)
            $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
            Test-MemoryImage -Path $final | Should -BeTrue
            # The region only: the kernel writes the rseq area of a thread that resumes on another CPU after the final stop.
            $region = [pscustomobject]@{ Address = $base; Pages = 8; Hex = $hex }
            Get-RestoredRegionWords $final $region $t.PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $region $t.PageSize)
            Get-RestoredRegionWords $frozen $region $t.PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $region $t.PageSize)
            Disable-WriteTracking -Id $t.Id
            Assert-Unchanged $t $before
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }
}

Describe 'Round 24: seccomp answers no earlier round ran live on the injected calls' -Tag 'WriteTracking', 'Security', 'Round24Hostile' -Skip:([bool]$WtSkip) {
    # Rounds 7, 13 and 15 ran filters that kill, fail rt_sigprocmask or userfaultfd with EPERM, or look at the return address.
    # Here: SIGSYS to the target's handler (TRAP), a tracer's verdict (TRACE: this tracer does not ask for it, so ENOSYS),
    # a failed ioctl, a killed thread, and a supervisor that never answers (USER_NOTIF: the call would wait for good). Each
    # is SeccompForbids (without CAP_SYS_ADMIN before anything, the filter unread), nothing delivered or left behind, no hang.
    It 'a filter answering <Syscall> with <Action> is SeccompForbids, and the target is as it was' -ForEach @(
        @{ Syscall = 'userfaultfd'; Nr = 323; Action = 'TRAP'; Ret = '30000' }
        @{ Syscall = 'ioctl'; Nr = 16; Action = 'TRAP'; Ret = '30000' }
        @{ Syscall = 'userfaultfd'; Nr = 323; Action = 'TRACE'; Ret = '7ff00000' }
        @{ Syscall = 'ioctl'; Nr = 16; Action = 'TRACE'; Ret = '7ff00000' }
        @{ Syscall = 'ioctl'; Nr = 16; Action = 'ERRNO(EPERM)'; Ret = '50001' }
        @{ Syscall = 'ioctl'; Nr = 16; Action = 'KILL_THREAD'; Ret = '0' }
        @{ Syscall = 'userfaultfd'; Nr = 323; Action = 'USER_NOTIF, nobody answering'; Ret = '7fc00000 notify' }
        @{ Syscall = 'ioctl'; Nr = 16; Action = 'USER_NOTIF, nobody answering'; Ret = '7fc00000 notify' }
    ) {
        $t = Start-TestTarget -Path $Wt
        try {
            $null = $t.Map(4)
            $null = $t.Send('hostile handlers')
            $null = $t.Send("seccompret $Nr $Ret")
            $before = Get-TargetState $t
            # A hang guard only (a minute): a call issued to a supervisor that never answers would wait for good.
            $job = Start-ThreadJob -ArgumentList (Get-Module SoftDirty).Path, $t.Id, $env:SOFTDIRTY_STATE_DIR {
                param($Module, $Id, $State)
                $env:SOFTDIRTY_STATE_DIR = $State
                Import-Module $Module
                try { $null = Enable-WriteTracking -Id $Id -ErrorAction Stop; 'none' } catch { "$($_.FullyQualifiedErrorId)|$($_.CategoryInfo.Category)" }
            }
            try {
                Wait-Job $job -Timeout 60 | Should -Not -BeNullOrEmpty -Because 'Enable-WriteTracking must end'
                $id, $category = (Receive-Job $job) -split '\|'
            } finally { Stop-Job $job; Remove-Job $job -Force }
            $id | Should -BeLike 'SeccompForbids,*'
            $category | Should -Be 'PermissionDenied'
            Assert-Unchanged $t $before
        } finally { Stop-TestTarget $t }
    }
}
