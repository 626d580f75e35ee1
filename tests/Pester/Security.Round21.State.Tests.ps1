#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 21: the state the module keeps about processes (soft-dirty epochs, their locks) under a hostile or
# broken environment. New cases only (rounds 10-20: Security.Round*.Tests.ps1, the engine's Epoch*/State* tests).
# This kernel has no soft-dirty (clear_refs 4 is refused by Clear-SoftDirty), so the epoch is driven directly
# (TrackingEpoch.Record and Current, internal: what every soft-dirty clear and increment calls), with the epoch folders
# pointed at folders of this test (TrackingEpoch.SharedTempFolder, RuntimeRoot): the machine's own are left alone.

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $RootSkip = if (-not $IsRoot) { 'needs root: a process of another user (65534), and root''s clear recorded for its owner' }
    elseif (-not (Get-Command setpriv -ErrorAction SilentlyContinue)) { 'needs setpriv (util-linux) to act as another user' }
    $NsSkip = if ($RootSkip) { $RootSkip }
    elseif (-not (Get-Command unshare -ErrorAction SilentlyContinue) -or -not (Get-Command nsenter -ErrorAction SilentlyContinue)) { 'needs unshare and nsenter (util-linux) for a pid namespace' }
    else {
        & unshare -p -f --mount-proc true 2>$null
        if ($LASTEXITCODE -ne 0) { "unshare -p -f --mount-proc fails here ($LASTEXITCODE): no pid namespace can be made" }
    }
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    # Root makes a time namespace outright; another user in a user namespace of its own (unshare -U -r).
    $TimeOptions = @(if ($IsRoot) { '-T' } else { '-U', '-r', '-T' })
    $TimeSkip = if (-not (Test-Path /proc/self/timens_offsets)) { 'no time namespaces on this kernel (before 5.6, or CONFIG_TIME_NS off)' }
    elseif (-not (Get-Command unshare -CommandType Application -ErrorAction SilentlyContinue)) { 'needs unshare (util-linux) for a time namespace' }   # round 34: discovery failed without it
    else {
        & unshare @TimeOptions --boottime 1000 -f true 2>$null
        if ($LASTEXITCODE -ne 0) { "unshare $TimeOptions --boottime fails here ($LASTEXITCODE): no time namespace can be made" }
    }
    $TimeWtSkip = if (-not $IsRoot) { 'write tracking from a user namespace of its own is another case: root only' } else { $WtSkip }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:Internal = [Reflection.BindingFlags] 'Static, Public, NonPublic'
    $script:Engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
    $script:Epoch = $Engine.GetType('SoftDirty.Tracking.TrackingEpoch', $true)
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    # The epoch folders of this test, in a folder every user may enter (the owner's folder in it is theirs, 0700).
    $script:folders = Join-Path ([IO.Path]::GetTempPath()) "r21state-$(New-Guid)"
    foreach ($d in 'tmp', 'run') { $null = New-Item -ItemType Directory (Join-Path $folders $d) }
    chmod -R 0755 $folders
    $script:saved = foreach ($p in 'SharedTempFolder', 'RuntimeRoot') { $Epoch.GetProperty($p, $Internal).GetValue($null) }
    $Epoch.GetProperty('SharedTempFolder', $Internal).SetValue($null, (Join-Path $folders tmp))
    $Epoch.GetProperty('RuntimeRoot', $Internal).SetValue($null, (Join-Path $folders run))
    # The folder of user 65534 in the shared temp folder, as their own commands make it.
    $script:owners = Join-Path $folders 'tmp/softdirty-epochs-65534'
    if ((id -u) -eq '0') {
        $null = New-Item -ItemType Directory $owners
        chown 65534 $owners; chmod 0700 $owners
    }
    function script:Open-Source([int] $Id) { $Engine.GetType('SoftDirty.ProcPageSource', $true).GetMethod('Open', [type[]]@([int])).Invoke($null, [object[]]@($Id)) }
    function script:Invoke-Epoch([string] $Name, $Source) { $Epoch.GetMethod($Name, $Internal).Invoke($null, [object[]]@($Source)) }
    # A write-tracking state folder of its own ($env:SOFTDIRTY_STATE_DIR, 0700) and a sleep to track; returns the folder, the variable's value before, the sleep.
    function script:Start-TrackedSleep([string] $Folder) {
        $null = New-Item -ItemType Directory $Folder
        chmod 0700 $Folder
        $before = $env:SOFTDIRTY_STATE_DIR
        $env:SOFTDIRTY_STATE_DIR = $Folder
        $Folder, $before, (Start-Process sleep -ArgumentList 600 -PassThru)
    }
    function script:Stop-TrackedSleep($Process, [string] $Before) {
        if ($Process -and -not $Process.HasExited) { Disable-WriteTracking -Id $Process.Id -ErrorAction SilentlyContinue; $Process.Kill(); $Process.WaitForExit() }
        $env:SOFTDIRTY_STATE_DIR = $Before
    }
    # Runs a command (a sleep) as pid 1 of a new pid namespace with its own /proc; returns unshare's process and the command's pid here.
    function script:Start-PidNamespace([string[]] $Command) {
        $unshare = Start-Process unshare -ArgumentList (@('-p', '-f', '--mount-proc') + $Command) -PassThru
        $deadline = [DateTime]::UtcNow.AddMinutes(1) # hang guard only
        while ([DateTime]::UtcNow -lt $deadline) {
            $child = Get-ChildProcessId $unshare.Id | Select-Object -First 1
            if ($child -and (Get-Content "/proc/$child/comm" -ErrorAction SilentlyContinue) -eq 'sleep') { return $unshare, [int]$child }
            Start-Sleep -Milliseconds 10
        }
        throw "unshare $Command started no sleep within a minute"
    }
}

AfterAll {
    if ($saved) {
        $Epoch.GetProperty('SharedTempFolder', $Internal).SetValue($null, $saved[0])
        $Epoch.GetProperty('RuntimeRoot', $Internal).SetValue($null, $saved[1])
    }
    if ($folders) { Remove-Item -Recurse -Force $folders -ErrorAction SilentlyContinue }
}

Describe 'Round 21: root clears a process of another user that is not dumpable at that moment' -Tag 'Security', 'Round21State' -Skip:([bool]$RootSkip) {
    It 'the clear is recorded in the owner''s folder, where the owner''s chain (armed while it was dumpable) reads it' {
        # Held before this round (tried: /proc/PID itself stays the process's euid while it is not dumpable, PR_SET_DUMPABLE 0,
        # as programs holding secrets set for a moment; its files become root's): root takes the owner from /proc/PID. A guard
        # that the owner's chain, armed before and continued once the process is dumpable again, sees root's clear.
        $t = Start-TestTarget -Launcher setpriv, '--reuid=65534', '--regid=65534', '--clear-groups' -Path $wtExe
        $source = $null
        try {
            $source = Open-Source $t.Id
            $name = $Epoch.GetMethod('FileKey', $Internal).Invoke($null, [object[]]@($t.Id))
            $name | Should -Not -BeNullOrEmpty
            Invoke-Epoch Record $source | Should -Not -BeNullOrEmpty # the owner's chain armed (root records for them while dumpable)
            $armed = Get-Content -Raw (Join-Path $owners $name)
            $armed | Should -Match '^[0-9a-f]{32}$'
            (Send-TestTarget $t 'dumpable 0') | Should -Be '0'
            (stat -c '%u' "/proc/$($t.Id)/environ") | Should -Be '0' -Because 'the kernel gives the files of a process that is not dumpable to root'
            Invoke-Epoch Record $source | Should -Not -BeNullOrEmpty # root's Clear-SoftDirty now
            $null = Send-TestTarget $t 'dumpable 1'
            Get-Content -Raw (Join-Path $owners $name) | Should -Not -Be $armed -Because 'the owner''s next increment must not trust its armed epoch'
        } finally {
            if ($source) { $source.Dispose() }
            Stop-TestTarget $t
        }
    }
}

Describe 'Round 21: a process in a pid namespace of its own (a container sharing /tmp), cleared by root from the host' -Tag 'Security', 'Round21State' -Skip:([bool]$NsSkip) {
    BeforeAll {
        # The target: pid 1 of a new pid namespace (with its own /proc), user 65534; its pid here is unshare's child's.
        $script:unshare, $script:hostPid = Start-PidNamespace 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sleep', '600'
        # Records as a command in the target's namespaces does (root there: into the owner's folder too); prints the record's name.
        $script:inNamespace = {
            $pwsh = Get-PwshCommandLine
            $script = @"
Import-Module '$env:SOFTDIRTY_MODULE'
`$i = [Reflection.BindingFlags] 'Static, Public, NonPublic'
`$e = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { `$_.GetName().Name -eq 'SoftDirty.Engine' }
`$epoch = `$e.GetType('SoftDirty.Tracking.TrackingEpoch', `$true)
`$epoch.GetProperty('SharedTempFolder', `$i).SetValue(`$null, '$(Join-Path $folders tmp)')
`$epoch.GetProperty('RuntimeRoot', `$i).SetValue(`$null, '$(Join-Path $folders run)')
`$s = `$e.GetType('SoftDirty.ProcPageSource', `$true).GetMethod('Open', [type[]]@([int])).Invoke(`$null, [object[]]@(1))
if (-not `$epoch.GetMethod('Record', `$i).Invoke(`$null, [object[]]@(`$s))) { throw 'no record' }
'NAME=' + `$epoch.GetMethod('FileKey', `$i).Invoke(`$null, [object[]]@(1))
"@
            & nsenter -t $hostPid -p -m $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $script 2>&1
        }
    }
    AfterAll {
        if ($hostPid) { kill -KILL $hostPid 2>$null }
        if ($unshare -and -not $unshare.HasExited) { $unshare.WaitForExit(10000) | Out-Null }
    }

    It 'root''s clear from the host goes into the record the owner''s chain in the namespace reads' {
        # Before the fix each side named the record by the pid it sees (1 there, another here): root's clear from the host was
        # recorded in the owner's folder under a name the owner's commands in the container never read, and their chain
        # trusted soft-dirty bits root had taken. Seen before the fix: the namespace's record unchanged by root's (1 of 1).
        $out = @(& $inNamespace)
        $line = $out | Where-Object { "$_" -like 'NAME=*' } | Select-Object -First 1
        $line | Should -Not -BeNullOrEmpty -Because "the command in the namespace said: $($out -join ' | ')"
        $name = "$line".Substring(5)
        $armed = Get-Content -Raw (Join-Path $owners $name)
        $armed | Should -Match '^[0-9a-f]{32}$'
        $source = Open-Source $hostPid
        try { Invoke-Epoch Record $source | Should -Not -BeNullOrEmpty } # root's Clear-SoftDirty from the host
        finally { $source.Dispose() }
        Get-Content -Raw (Join-Path $owners $name) | Should -Not -Be $armed -Because 'the owner''s next increment in the namespace must not trust its armed epoch'
        $Epoch.GetMethod('FileKey', $Internal).Invoke($null, [object[]]@($hostPid)) | Should -Be $name -Because 'the host and the namespace name the process''s records (and lock) alike'
    }
}

Describe 'Round 21: the write-tracking state folder shared with a pid namespace (a container) where the same pid is another process' -Tag 'Security', 'Round21State', 'WriteTracking' -Skip:([bool]$NsSkip -or [bool]$WtSkip) {
    BeforeAll {
        $script:stateDir, $script:savedState, $script:tracked = Start-TrackedSleep (Join-Path $folders 'state')
        # A pid namespace whose next pid is the tracked process's pid here (ns_last_pid: root in the namespace).
        $script:nsInit, $script:nsPid = Start-PidNamespace 'sleep', '600'
    }
    AfterAll {
        Stop-TrackedSleep $tracked $savedState
        if ($nsPid) { kill -KILL $nsPid 2>$null } # the namespace's init: every process in it ends
        if ($nsInit -and -not $nsInit.HasExited) { $nsInit.WaitForExit(10000) | Out-Null }
    }

    It 'Enable-WriteTracking in the namespace of its own process under the host''s tracked pid leaves the host''s tracking and state alone' {
        # Before the fix one folder held both sides' states, named by the pid each sees: the container's Enable took the host's
        # state of pid N for a stale one of its own pid N, deleted it and wrote its own; the host's tracking then stayed in its
        # process with no state: Disable-WriteTracking said WriteTrackingNotEnabled, the userfaultfd left there (1 of 1).
        $id = $tracked.Id
        $null = Enable-WriteTracking -Id $id
        $made = & nsenter -t $nsPid -p -m sh -c "echo $($id - 1) > /proc/sys/kernel/ns_last_pid; sleep 600 >/dev/null 2>&1 & echo `$!"
        "$made".Trim() | Should -Be "$id" -Because 'the namespace''s process has the tracked pid there'
        $pwsh = Get-PwshCommandLine
        $out = & nsenter -t $nsPid -p -m $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command "`$env:SOFTDIRTY_STATE_DIR = '$stateDir'; Import-Module '$env:SOFTDIRTY_MODULE'; `$null = Enable-WriteTracking -Id $id -ErrorAction Stop; 'ENABLED'" 2>&1
        ($out -join ' ') | Should -Match 'ENABLED' -Because "the namespace tracks its own process $id (said: $($out -join ' | '))"
        { Disable-WriteTracking -Id $id -ErrorAction Stop } | Should -Not -Throw
        @(Get-ChildItem "/proc/$id/fd" | Where-Object { $_.LinkTarget -eq 'anon_inode:[userfaultfd]' }).Count | Should -Be 0 -Because 'the host''s tracking is disabled, nothing left in its process'
    }
}

Describe 'Round 21: a command in a time namespace whose boot time is offset (unshare -T, a container CRIU restored)' -Tag 'Security', 'Round21State' -Skip:([bool]$TimeSkip) {
    BeforeAll {
        $script:stateDir, $script:savedState, $script:tracked = Start-TrackedSleep (Join-Path $folders 'state-time')
        # Runs -Command in a pwsh in a new time namespace whose boot time is 1000 s on; returns its output.
        function script:Invoke-InTimeNamespace([string] $Command) {
            $pwsh = Get-PwshCommandLine
            $options = @(if ((id -u) -eq '0') { '-T' } else { '-U', '-r', '-T' })
            @(& unshare @options --boottime 1000 -f $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command "Import-Module '$env:SOFTDIRTY_MODULE'; $Command" 2>&1)
        }
    }
    AfterAll {
        Stop-TrackedSleep $tracked $savedState
    }

    It 'names the process''s epoch records (and lock) as the host does' {
        # The kernel adds the reader's boot-time offset to a process's start time (/proc/PID/stat). Before the fix the command
        # in the namespace named the records by another start time: its clears and the host's never met, as with a pid
        # namespace. Seen before the fix: the key 100000 ticks on (1 of 1).
        $out = Invoke-InTimeNamespace @"
`$e = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { `$_.GetName().Name -eq 'SoftDirty.Engine' }
'KEY=' + `$e.GetType('SoftDirty.Tracking.TrackingEpoch', `$true).GetMethod('FileKey', [Reflection.BindingFlags] 'Static, Public, NonPublic').Invoke(`$null, [object[]]@($($tracked.Id)))
"@
        $key = $out | Where-Object { "$_" -like 'KEY=*' } | Select-Object -First 1
        $key | Should -Not -BeNullOrEmpty -Because "the command in the namespace said: $($out -join ' | ')"
        "$key".Substring(4) | Should -Be $Epoch.GetMethod('FileKey', $Internal).Invoke($null, [object[]]@($tracked.Id))
    }

    It 'finds the host''s write-tracking state of the process, not a stale one to delete' -Skip:([bool]$TimeWtSkip) {
        # Before the fix the command in the namespace took the host's state for a stale one (another start time): deleted, the
        # tracking left in the process with no state (Disable-WriteTracking here: WriteTrackingNotEnabled). Seen before: 1 of 1.
        $id = $tracked.Id
        $null = Enable-WriteTracking -Id $id
        $out = Invoke-InTimeNamespace "try { `$null = Enable-WriteTracking -Id $id -ErrorAction Stop; 'ENABLE=ok' } catch { 'ENABLE=' + `$_.FullyQualifiedErrorId }"
        $out | Where-Object { "$_" -like 'ENABLE=*' } | Should -Be 'ENABLE=ok' -Because "the tracking the host enabled is the one it finds (said: $($out -join ' | '))"
        { Disable-WriteTracking -Id $id -ErrorAction Stop } | Should -Not -Throw
        @(Get-ChildItem "/proc/$id/fd" | Where-Object { $_.LinkTarget -eq 'anon_inode:[userfaultfd]' }).Count | Should -Be 0
    }
}
