#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 24 (State): write-tracking states that commands in containers (other pid namespaces) keep in the subfolder
# pidns-INODE of the user's state folder (round 21). Nothing removed them once the container was gone: only a command of the
# same namespace pruned that folder, and none came again. A command of the host's pid namespace, which sees every process, now
# removes those of processes no longer on the system.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    # Only a command that sees every process can tell a process is gone: the host's pid namespace, /proc without hidepid.
    $HostSkip = if ($WtSkip) { $WtSkip }
    elseif ((Get-Item /proc/self/ns/pid).LinkTarget -ne 'pid:[4026531836]') { 'this PowerShell runs in a pid namespace other than the host''s: it cannot see every process' }
    elseif ((Get-Content /proc/self/mountinfo | Where-Object { $_ -match ' /proc .* proc ' }) -match 'hidepid=([12]|invisible|noaccess)') { '/proc is mounted with hidepid: processes of other users are hidden' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:savedStateDir = $env:SOFTDIRTY_STATE_DIR
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "r24state-$(New-Guid)"
    $null = New-Item -ItemType Directory $root
    chmod 0700 $root
}

AfterAll {
    $env:SOFTDIRTY_STATE_DIR = $savedStateDir
    if ($root) { Remove-Item -Recurse -Force $root -ErrorAction SilentlyContinue }
}

Describe 'Round 24: the write-tracking states of a pid namespace that is gone' -Tag 'Security', 'Round24State', 'WriteTracking' -Skip:([bool]$HostSkip) {
    AfterEach { $env:SOFTDIRTY_STATE_DIR = $savedStateDir }

    It 'a host command removes the states (and locks) of processes no longer on the system from pidns-INODE, and keeps those of live ones' {
        # Before: both planted states and the lock stayed however many host commands ran.
        $state = Join-Path $root "state-$(New-Guid)"
        $null = New-Item -ItemType Directory $state
        chmod 0700 $state
        $env:SOFTDIRTY_STATE_DIR = $state
        $live = Start-TestTarget -Path $wtExe
        $other = Start-TestTarget -Path $wtExe
        try {
            $null = Enable-WriteTracking -Id $live.Id
            $json = Get-Content -Raw (Join-Path $state "$($live.Id).json") | ConvertFrom-Json
            $json.StartTime | Should -BeGreaterThan 0
            # A namespace's folder as its commands leave it (0700, states named by the pid there, a lock beside each).
            $ns = New-Item -ItemType Directory (Join-Path $state 'pidns-4026599999')
            chmod 0700 $ns.FullName
            $json | ConvertTo-Json | Set-Content (Join-Path $ns '7.json')  # the live target's start time: a process on the system
            $gone = $json.PSObject.Copy()
            # A start time no process of this boot has reached yet (a day past the uptime, in ticks of 1/100 s).
            $gone.StartTime = [uint64](([double]((Get-Content /proc/uptime) -split ' ')[0] + 86400) * 100)
            $gone | ConvertTo-Json | Set-Content (Join-Path $ns '8.json')
            $null = New-Item -ItemType File (Join-Path $ns '8.lock')
            $null = New-Item -ItemType File (Join-Path $ns '7.lock')
            # Any state saved by a host command prunes.
            $null = Enable-WriteTracking -Id $other.Id
            Test-Path (Join-Path $ns '8.json') | Should -BeFalse -Because 'no process started at its start time: it is gone'
            Test-Path (Join-Path $ns '8.lock') | Should -BeFalse
            Test-Path (Join-Path $ns '7.json') | Should -BeTrue -Because 'a process started at its start time runs: it may be the container''s'
            Test-Path (Join-Path $ns '7.lock') | Should -BeTrue
            Test-Path $ns.FullName | Should -BeTrue -Because 'a command of that namespace may be about to write there'
        } finally {
            foreach ($t in $live, $other) { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
        }
    }

    It 'a link named pidns-INODE is not followed' {
        $state = Join-Path $root "state-$(New-Guid)"
        $null = New-Item -ItemType Directory $state
        chmod 0700 $state
        $env:SOFTDIRTY_STATE_DIR = $state
        $elsewhere = New-Item -ItemType Directory (Join-Path $root "elsewhere-$(New-Guid)")
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = Enable-WriteTracking -Id $t.Id
            $json = Get-Content -Raw (Join-Path $state "$($t.Id).json") | ConvertFrom-Json
            $json.StartTime = [uint64](([double]((Get-Content /proc/uptime) -split ' ')[0] + 86400) * 100)
            $json | ConvertTo-Json | Set-Content (Join-Path $elsewhere '8.json')
            $null = New-Item -ItemType SymbolicLink -Path (Join-Path $state 'pidns-4026599998') -Target $elsewhere.FullName
            Disable-WriteTracking -Id $t.Id
            $null = Enable-WriteTracking -Id $t.Id
            Test-Path (Join-Path $elsewhere '8.json') | Should -BeTrue -Because 'what a link shows is not the module''s folder'
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }
}
