#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 22 (Parallel): commands sharing state at once (runspaces of one PowerShell, and other processes), and the
# module's state folders. New cases only (rounds 6-21: Security.Round*.Tests.ps1, the engine's Epoch*/State* tests; the
# engine's ParallelRound22Tests cover the prune of a gone pid namespace's records and the error classes at the engine).

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    $UnprivilegedSkip = if ($WtSkip) { $WtSkip } elseif ($IsRoot) { 'root writes into a folder of mode 0500: runs as an unprivileged user (build.ps1 Test runs both)' }
    # A proc mount of the test's own with hidepid=1, in a mount namespace of its own: root's (a user namespace's / belongs to
    # nobody, and the module keeps no state under a folder of another user).
    $HideSkip = if ($WtSkip) { $WtSkip } elseif (-not $IsRoot) { 'needs root: mounts a proc file system of its own with hidepid=1 (in a user namespace / is nobody''s, where the module keeps no state)' }
    elseif (-not (Get-Command unshare -ErrorAction SilentlyContinue) -or -not (Get-Command setpriv -ErrorAction SilentlyContinue)) { 'needs unshare and setpriv (util-linux)' }
    else {
        & unshare -m --propagation private sh -c 'mount -t proc -o hidepid=1 proc /proc' 2>$null
        if ($LASTEXITCODE -ne 0) { "a proc file system with hidepid=1 cannot be mounted here ($LASTEXITCODE)" }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "r22parallel-$(New-Guid)"
    $null = New-Item -ItemType Directory $root
    chmod 0700 $root
    # A write-tracking state folder of this test ($env:SOFTDIRTY_STATE_DIR, 0700), put back after each test.
    function script:Use-StateFolder {
        $dir = Join-Path $root "state-$(New-Guid)"
        $null = New-Item -ItemType Directory $dir
        chmod 0700 $dir
        $env:SOFTDIRTY_STATE_DIR = $dir
        $dir
    }
    $script:savedStateDir = $env:SOFTDIRTY_STATE_DIR
}

AfterAll {
    $env:SOFTDIRTY_STATE_DIR = $savedStateDir
    if ($root) { chmod -R u+rwx $root 2>$null; Remove-Item -Recurse -Force $root -ErrorAction SilentlyContinue }
}

Describe 'Round 22: a failure of the write-tracking state folder says one ErrorId however it is met' -Tag 'Security', 'Round22Parallel', 'WriteTracking' -Skip:([bool]$WtSkip) {
    AfterEach { $env:SOFTDIRTY_STATE_DIR = $savedStateDir }

    It 'something at the lock''s name that is not a regular file (<Kind>) is UnsafeDestination, as a FIFO there is' -ForEach @(
        @{ Kind = 'directory' }, @{ Kind = 'FIFO' }, @{ Kind = 'socket' }
    ) {
        # Round 21: a directory there was ProcIOError (a read error, EISDIR), a FIFO UnsafeDestination; a socket was ProcIOError (ENXIO).
        $state = Use-StateFolder
        $t = Start-TestTarget -Path $wtExe
        $socket = $null
        try {
            $lock = Join-Path $state "$($t.Id).lock"
            switch ($Kind) {
                'directory' { $null = New-Item -ItemType Directory $lock }
                'FIFO' { mkfifo $lock }
                'socket' {
                    $socket = [Net.Sockets.Socket]::new([Net.Sockets.AddressFamily]::Unix, [Net.Sockets.SocketType]::Stream, [Net.Sockets.ProtocolType]::Unspecified)
                    # Bound by a name relative to the process's directory: a socket's path has at most 108 bytes, and TMPDIR may be long.
                    $cwd = [Environment]::CurrentDirectory
                    [Environment]::CurrentDirectory = $state
                    try { $socket.Bind([Net.Sockets.UnixDomainSocketEndPoint]::new((Split-Path -Leaf $lock))) }
                    finally { [Environment]::CurrentDirectory = $cwd }
                    (Get-Item $lock).UnixFileMode | Should -Not -BeNullOrEmpty
                }
            }
            Get-ErrorId { Enable-WriteTracking -Id $t.Id } | Should -Be 'UnsafeDestination,SoftDirty.Commands.EnableWriteTrackingCommand'
            Get-ErrorId { Save-MemoryImage -Id $t.Id -Path (Join-Path $root "img-$(New-Guid)") -Method WriteProtect } |
                Should -Be 'UnsafeDestination,SoftDirty.Commands.SaveMemoryImageCommand'
            Test-Path (Join-Path $state "$($t.Id).json") | Should -BeFalse
        } finally {
            if ($socket) { $socket.Dispose() }
            Stop-TestTarget $t
        }
    }

    It 'a directory at the state file''s name is UnsafeDestination, as one at the lock''s name' {
        # Round 21: ImageWriteError ("is a directory"), where the same directory at the lock's name was ProcIOError.
        $state = Use-StateFolder
        $t = Start-TestTarget -Path $wtExe
        try {
            $null = New-Item -ItemType Directory (Join-Path $state "$($t.Id).json")
            Get-ErrorId { Enable-WriteTracking -Id $t.Id } | Should -Be 'UnsafeDestination,SoftDirty.Commands.EnableWriteTrackingCommand'
            (Get-Content "/proc/$($t.Id)/maps" -Raw) | Should -Not -Match 'userfaultfd' # nothing left in the target
            @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { (readlink $_.FullName) -eq 'anon_inode:[userfaultfd]' }).Count | Should -Be 0 -Because 'the userfaultfd made for a tracking whose state cannot be kept is closed again'
        } finally {
            Stop-TestTarget $t
        }
    }

    It 'a state folder the user may not write is PermissionDenied for the lock and for the state file alike' -Skip:([bool]$UnprivilegedSkip) {
        # Round 21: ProcIOError (a read error) where the lock was made first (Enable-WriteTracking, a WriteProtect save),
        # PermissionDenied where the state file was (the reset of a kept tracking); a full folder likewise ProcIOError and ImageWriteError.
        $state = Use-StateFolder
        $t = Start-TestTarget -Path $wtExe
        $a = $t.Map(16)
        try {
            $first = Join-Path $root "img-$(New-Guid)"
            $null = Save-MemoryImage -Id $t.Id -Path $first -Method WriteProtect # a kept tracking: its state and lock exist
            Remove-Item (Join-Path $state "$($t.Id).lock")
            chmod 0500 $state
            $null = Send-TestTarget $t ('write {0:x} 0 4' -f $a)
            $other = Start-TestTarget -Path $wtExe
            try { Get-ErrorId { Enable-WriteTracking -Id $other.Id } | Should -Be 'PermissionDenied,SoftDirty.Commands.EnableWriteTrackingCommand' }
            finally { Stop-TestTarget $other }
            Get-ErrorId { Save-MemoryImage -Id $t.Id -Path (Join-Path $root "img-$(New-Guid)") -Parent $first -Method WriteProtect } |
                Should -Be 'PermissionDenied,SoftDirty.Commands.SaveMemoryImageCommand'
            chmod 0700 $state
            New-Item -ItemType File (Join-Path $state "$($t.Id).lock") | Out-Null
            chmod 0500 $state
            Get-ErrorId { Save-MemoryImage -Id $t.Id -Path (Join-Path $root "img-$(New-Guid)") -Parent $first -Method WriteProtect } |
                Should -Be 'PermissionDenied,SoftDirty.Commands.SaveMemoryImageCommand' -Because 'the state file cannot be written either'
        } finally {
            chmod 0700 $state
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }
}

Describe 'Round 22: the prunes of the state folders under a /proc that hides processes (hidepid=1)' -Tag 'Security', 'Round22Parallel', 'WriteTracking' -Skip:([bool]$HideSkip) {
    It 'a tracked process that is not dumpable for a moment keeps its write-tracking state and soft-dirty record when others are saved' {
        # Round 22: the prune that follows every state save took a process whose stat it could not read for gone: under hidepid=1
        # a process that is not dumpable (PR_SET_DUMPABLE 0, as programs holding secrets set for a moment) hides its stat from its
        # own user. Its state was deleted, its tracking left in it for good: Disable-WriteTracking said WriteTrackingNotEnabled,
        # Enable-WriteTracking WriteTrackingInUse; its soft-dirty record and lock went the same way. The commands run as root without capabilities or group 0 (hidepid lets group 0
        # and CAP_SYS_PTRACE see everything), in a mount namespace whose /proc has hidepid=1.
        $state = Join-Path $root "hide-$(New-Guid)"
        $null = New-Item -ItemType Directory $state
        chmod 0700 $state
        $script = Join-Path $root 'hidden.ps1'
        Set-Content -LiteralPath $script -Value @'
param($Mod, $Wt, $State)
$ErrorActionPreference = 'Stop'
Import-Module $Mod
$env:SOFTDIRTY_STATE_DIR = $State
function Start-Wt { $psi = [Diagnostics.ProcessStartInfo]::new($Wt); $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true; $p = [Diagnostics.Process]::Start($psi); $null = $p.StandardOutput.ReadLine(); $p }
function Send($p, $c) { $p.StandardInput.WriteLine($c); $p.StandardInput.Flush(); $p.StandardOutput.ReadLine() }
$a = Start-Wt; $b = Start-Wt
try {
    $null = Send $a 'map 4'; $null = Send $b 'map 4'
    # The soft-dirty epoch folder pointed at one of this test (TrackingEpoch, internal: what every clear calls).
    $engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
    $epoch = $engine.GetType('SoftDirty.Tracking.TrackingEpoch', $true)
    $flags = [Reflection.BindingFlags] 'Static, Public, NonPublic'
    $epoch.GetProperty('SharedTempFolder', $flags).SetValue($null, $State)
    $epoch.GetProperty('RuntimeRoot', $flags).SetValue($null, (Join-Path $State 'no-runtime'))
    $open = $engine.GetType('SoftDirty.ProcPageSource', $true).GetMethod('Open', [type[]]@([int]))
    $sourceA = $open.Invoke($null, [object[]]@($a.Id)); $sourceB = $open.Invoke($null, [object[]]@($b.Id))
    $null = $epoch.GetMethod('Record', $flags).Invoke($null, [object[]]@($sourceA))
    $record = Join-Path $epoch.GetMethod('StateDirectory', $flags).Invoke($null, @()) $epoch.GetMethod('FileKey', $flags).Invoke($null, [object[]]@($a.Id))
    Enable-WriteTracking -Id $a.Id | Out-Null
    $null = Send $a 'dumpable 0'
    $hidden = try { $null = [IO.File]::ReadAllText("/proc/$($a.Id)/stat"); $false } catch { $true }
    Enable-WriteTracking -Id $b.Id | Out-Null # saves a state, then prunes the folder
    $kept = Test-Path (Join-Path $State "$($a.Id).json") -PathType Leaf
    $null = $epoch.GetMethod('Record', $flags).Invoke($null, [object[]]@($sourceB)) # records, then prunes the epoch folder
    $recordKept = Test-Path $record -PathType Leaf
    # A command that loads A's state meanwhile (a watch of A ending, WriteTrackingStore.Leave): refused, the state kept; it took the
    # hidden process for a stale one and deleted its state.
    $store = $engine.GetType('SoftDirty.Injection.WriteTrackingStore', $true)
    $hiddenDisable = try { $null = $store.GetMethod('Load', $flags).Invoke($null, [object[]]@($a.Id)); 'none' } catch { $_.Exception.InnerException.Error.ToString() }
    $keptAfterLoad = Test-Path (Join-Path $State "$($a.Id).json") -PathType Leaf
    $null = Send $a 'dumpable 1'
    $disable = try { Disable-WriteTracking -Id $a.Id; 'none' } catch { $_.FullyQualifiedErrorId }
    $left = @(Get-ChildItem "/proc/$($a.Id)/fd" | Where-Object { $_.LinkTarget -eq 'anon_inode:[userfaultfd]' }).Count
    [pscustomobject]@{ Hidden = $hidden; Kept = $kept; RecordKept = $recordKept; HiddenLoad = $hiddenDisable; KeptAfterLoad = $keptAfterLoad; Disable = $disable; Left = $left } | ConvertTo-Json -Compress
} finally { Disable-WriteTracking -Id $b.Id -ErrorAction SilentlyContinue; $a.Kill(); $b.Kill() }
'@
        $pwshLine = Get-PwshCommandLine
        $pwsh = ($pwshLine | ForEach-Object { "'$_'" }) -join ' '
        $inner = "mount -t proc -o hidepid=1 proc /proc && exec setpriv --regid 65534 --clear-groups --bounding-set=-all --inh-caps=-all -- $pwsh -NoProfile -NonInteractive -File '$script' -Mod '$env:SOFTDIRTY_MODULE' -Wt '$wtExe' -State '$state'"
        $out = & unshare -m --propagation private sh -c $inner 2>&1
        $json = $out | Where-Object { $_ -like '{*' } | Select-Object -Last 1
        $json | Should -Not -BeNullOrEmpty -Because "the child said: $($out -join ' ')"
        $r = $json | ConvertFrom-Json
        $r.Hidden | Should -BeTrue -Because 'hidepid=1 hides the stat of a process that is not dumpable (else this test shows nothing)'
        $r.Kept | Should -BeTrue -Because 'a process whose stat cannot be read is not gone'
        $r.RecordKept | Should -BeTrue -Because 'the soft-dirty record of a process whose stat cannot be read is kept too'
        $r.HiddenLoad | Should -Be 'PermissionDenied' -Because 'the tracking of a process that hides its start time cannot be checked now'
        $r.KeptAfterLoad | Should -BeTrue -Because 'a state that cannot be checked is no stale one'
        $r.Disable | Should -Be 'none'
        $r.Left | Should -Be 0 -Because 'Disable-WriteTracking closed the tracking''s userfaultfd in the process'
    }
}
