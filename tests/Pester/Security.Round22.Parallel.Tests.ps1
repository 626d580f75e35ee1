#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 22 (Parallel): commands sharing state at once (runspaces of one PowerShell, and other processes), and the
# module's state folders. New cases only (rounds 6-21: Security.Round*.Tests.ps1, the engine's Epoch*/State* tests; the
# engine's ParallelRound22Tests cover the prune of a gone pid namespace's records and the error classes at the engine).

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    $UnprivilegedSkip = if ($WtSkip) { $WtSkip } elseif ($IsRoot) { 'root writes into a folder of mode 0500: runs as an unprivileged user (build.ps1 Test runs both)' }
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
