#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 32 (Self): targets that track their own writes, as a garbage collector or an emulator does, under the
# module's write tracking. tests/native/fighttarget.c (round 31's, with round 32's commands) makes a userfaultfd of its own
# in async write-protect mode, registers a range with it and collects (and resets) its written pages with PAGEMAP_SCAN of
# /proc/self/pagemap.
# Found: a range the process registers with a userfaultfd of its own after Enable-WriteTracking, the userfaultfd then kept
# where /proc/PID/fd does not show it (in flight on a socketpair of the process, or held by a child). The module looked for
# such registrations only where the process named another userfaultfd, so every save re-protected the process's own range:
# the process's record of its writes was lost (a write it made before the module's save was not in its next collection: a
# target harmed), and its own resets hid its writes from the module: the next increment left them out, restored the page's
# old bytes and Test-MemoryImage called it good (silent data loss). The registrations of the tracked spans (smaps "uw") are
# now compared with those the enabling or the last check found to be the tracking's own, and a change is checked. Both
# hidden cases failed before (each way: the process's collection found 0 pages, not 1; with that assertion left out, the
# increment's page 5 was wrong); the userfaultfd kept open, which the module already saw, is the guard case.
# Held, as the README says (the process re-protecting memory the tracking registered, through its own PAGEMAP_SCAN or
# through the tracking's descriptor, which it finds in /proc/self/fd, is not seen): an increment with -Verify restores
# exactly. Held too, without -Verify: the process unregistering a tracked range through that descriptor (the range is
# registered again and counted whole), and a fork after the enabling that lives on (the pages it shares are compared by
# content); and Disable-WriteTracking leaves the process's own hidden registration in place (Linux 6.18). Held: the process
# takes close-on-exec off the tracking's descriptor and execs: the state still matches (same pid, start time, number and
# inode) but the registrations went with the old memory, so every span counts whole (an over-count) and each increment is
# exact; Disable-WriteTracking closes the descriptor.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:R32SelfExe = Join-Path $PSScriptRoot '../native/bin/fighttarget'
    $script:R32SelfRoot = New-Item -ItemType Directory (Join-Path $TestDrive 'r32self')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state32self'
    $script:R32SelfWtSkip = Get-WriteTrackingSkipReason
    $script:R32SelfPages = 16

    function Start-R32SelfTarget {
        if (-not (Test-Path $R32SelfExe)) { throw "fighttarget is not built: run ./build.ps1 Native ($R32SelfExe)" }
        $psi = [System.Diagnostics.ProcessStartInfo]::new($R32SelfExe)
        $psi.RedirectStandardInput = $true
        $psi.RedirectStandardOutput = $true
        $p = [System.Diagnostics.Process]::Start($psi)
        if ($p.StandardOutput.ReadLine() -notmatch '^READY (\d+) (\d+)$') { throw 'fighttarget did not start' }
        [pscustomobject]@{ Process = $p; Id = [int]$Matches[1]; PageSize = [int]$Matches[2] }
    }
    function Send-R32SelfTarget($Target, [string] $Command) {
        $Target.Process.StandardInput.WriteLine($Command)
        $Target.Process.StandardOutput.ReadLine()
    }
    function Stop-R32SelfTarget($Target) { if ($Target -and -not $Target.Process.HasExited) { $Target.Process.Kill(); $Target.Process.WaitForExit(5000) | Out-Null } }

    # The indexes of the region's pages whose bytes in the restore of $Image differ from the file $Expected.
    function Get-R32SelfWrongPages([string] $Image, [uint64] $Address, [int] $Pages, [int] $PageSize, [string] $Expected) {
        $out = Join-Path $R32SelfRoot "r-$([guid]::NewGuid().ToString('n'))"
        $mapping = Restore-MemoryImage -Path $Image -Destination $out | Where-Object { $_.Start -le $Address -and $Address -lt $_.End }
        if (-not $mapping) { throw "the image $Image holds no mapping at 0x$($Address.ToString('x'))" }
        $restored = [IO.File]::ReadAllBytes($mapping.File)
        $want = [IO.File]::ReadAllBytes($Expected)
        $first = [int](($Address - $mapping.Start) / $PageSize)
        $sha = [System.Security.Cryptography.SHA256]::Create()
        @(for ($i = 0; $i -lt $Pages; $i++) {
            $got = [Convert]::ToHexString($sha.ComputeHash($restored, ($first + $i) * $PageSize, $PageSize))
            if ($got -ne [Convert]::ToHexString($sha.ComputeHash($want, $i * $PageSize, $PageSize))) { $i }
        })
    }
}

Describe 'Round 32: a range the target registers after Enable-WriteTracking with a userfaultfd of its own' -Tag 'Security', 'Round32Self' {
    AfterEach { Stop-R32SelfTarget $t }

    It 'the userfaultfd <Where>: the module never re-protects the range, and each increment holds every write' -ForEach @(
        @{ How = 0; Where = 'in flight on a socket' }
        @{ How = 1; Where = 'held by a child only' }
        @{ How = 2; Where = 'kept open' }
    ) {
        if ($R32SelfWtSkip) { Set-ItResult -Skipped -Because $R32SelfWtSkip; return }
        $t = Start-R32SelfTarget
        $null = Enable-WriteTracking -Id $t.Id
        $answer = Send-R32SelfTarget $t "map $R32SelfPages $(Join-Path $R32SelfRoot "m-$([guid]::NewGuid().ToString('n'))")"
        if ($answer -notlike 'OK *') { throw "fighttarget: map -> $answer" }
        $address = [Convert]::ToUInt64($answer.Substring(3), 16)
        $range = '{0:x} {1}' -f $address, $R32SelfPages
        $answer = Send-R32SelfTarget $t "hide $range $How 2"
        if ($answer -notlike 'OK *') { Set-ItResult -Skipped -Because "the target could not register a write-protect userfaultfd of its own here ($answer)"; return }
        $answer = Send-R32SelfTarget $t "written $range"
        $answer | Should -Match '^OK \d+$' -Because 'the target collects its own written pages'
        (Send-R32SelfTarget $t ('fill {0:x} 3 90' -f $address)) | Should -Be 'OK'
        $c = Join-Path $R32SelfRoot "c-$([guid]::NewGuid().ToString('n'))"
        $null = Save-MemoryImage -Id $t.Id -Path "$c/0" -Method WriteProtect -WarningAction SilentlyContinue
        (Send-R32SelfTarget $t "written $range") | Should -Be 'OK 1' -Because 'a save never re-protects a range of the process''s own tracking: its write of page 3 is still its own to collect'
        (Send-R32SelfTarget $t ('fill {0:x} 5 165' -f $address)) | Should -Be 'OK'
        (Send-R32SelfTarget $t "written $range") | Should -Be 'OK 1'
        $null = Save-MemoryImage -Id $t.Id -Path "$c/1" -Parent "$c/0" -Method WriteProtect -WarningAction SilentlyContinue
        $expected = Join-Path $R32SelfRoot "e-$([guid]::NewGuid().ToString('n'))"
        (Send-R32SelfTarget $t "dump $range $expected") | Should -Be 'OK'
        Test-MemoryImage "$c/1" | Should -BeTrue
        Get-R32SelfWrongPages "$c/1" $address $R32SelfPages $t.PageSize $expected | Should -BeNullOrEmpty -Because 'the increment holds the page the target wrote and then collected itself'
        Disable-WriteTracking -Id $t.Id
        (Send-R32SelfTarget $t "written $range") | Should -Be 'OK 0' -Because 'Disable-WriteTracking leaves the process''s own registration as it was'
    }
}

Describe 'Round 32: a target that uses the tracking''s registrations or descriptor' -Tag 'Security', 'Round32Self' {
    AfterEach { Stop-R32SelfTarget $t }

    It '<Through>: an increment<With> restores exactly' -ForEach @(
        @{ Through = 'its own PAGEMAP_SCAN of /proc/self/pagemap re-protects a tracked page'; Kind = 'scan'; Verify = $true; With = ' with -Verify' }
        @{ Through = 'UFFDIO_WRITEPROTECT of the tracking''s descriptor (found in /proc/self/fd) re-protects it'; Kind = 'wp'; Verify = $true; With = ' with -Verify' }
        @{ Through = 'UFFDIO_UNREGISTER of the tracking''s descriptor'; Kind = 'unreg'; Verify = $false; With = '' }
        @{ Through = 'a fork that lives on'; Kind = 'fork'; Verify = $false; With = '' }
    ) {
        if ($R32SelfWtSkip) { Set-ItResult -Skipped -Because $R32SelfWtSkip; return }
        $t = Start-R32SelfTarget
        $answer = Send-R32SelfTarget $t "map $R32SelfPages $(Join-Path $R32SelfRoot "m-$([guid]::NewGuid().ToString('n'))")"
        if ($answer -notlike 'OK *') { throw "fighttarget: map -> $answer" }
        $address = [Convert]::ToUInt64($answer.Substring(3), 16)
        $range = '{0:x} {1}' -f $address, $R32SelfPages
        $null = Enable-WriteTracking -Id $t.Id
        $c = Join-Path $R32SelfRoot "c-$([guid]::NewGuid().ToString('n'))"
        $null = Save-MemoryImage -Id $t.Id -Path "$c/0" -Method WriteProtect -WarningAction SilentlyContinue
        $fd = (Send-R32SelfTarget $t 'uffds')
        $fd | Should -Match '^OK \d+$' -Because 'the process holds one userfaultfd, the tracking''s'
        $fd = $fd.Substring(3)
        if ($Kind -eq 'unreg') { (Send-R32SelfTarget $t "uffd unreg $fd $range") | Should -Be 'OK' }
        if ($Kind -eq 'fork') { (Send-R32SelfTarget $t 'fork') | Should -Match '^OK \d+$' }
        (Send-R32SelfTarget $t ('fill {0:x} 4 77' -f $address)) | Should -Be 'OK'
        if ($Kind -eq 'scan') { (Send-R32SelfTarget $t "written $range") | Should -Be 'OK 1' }
        if ($Kind -eq 'wp') { (Send-R32SelfTarget $t "uffd wp $fd $range") | Should -Be 'OK' }
        $null = Save-MemoryImage -Id $t.Id -Path "$c/1" -Parent "$c/0" -Method WriteProtect -Verify:$Verify -WarningAction SilentlyContinue
        $expected = Join-Path $R32SelfRoot "e-$([guid]::NewGuid().ToString('n'))"
        (Send-R32SelfTarget $t "dump $range $expected") | Should -Be 'OK'
        Test-MemoryImage "$c/1" | Should -BeTrue
        Get-R32SelfWrongPages "$c/1" $address $R32SelfPages $t.PageSize $expected | Should -BeNullOrEmpty
        Disable-WriteTracking -Id $t.Id
    }
}

Describe 'Round 32: a target that keeps the tracking''s descriptor across an exec of its own' -Tag 'Security', 'Round32Self' {
    AfterEach { Stop-R32SelfTarget $t }

    It 'close-on-exec taken off the userfaultfd, then exec: each increment after it restores the new program''s memory exactly' {
        if ($R32SelfWtSkip) { Set-ItResult -Skipped -Because $R32SelfWtSkip; return }
        $t = Start-R32SelfTarget
        $null = Enable-WriteTracking -Id $t.Id
        $c = Join-Path $R32SelfRoot "c-$([guid]::NewGuid().ToString('n'))"
        $null = Save-MemoryImage -Id $t.Id -Path "$c/0" -Method WriteProtect -WarningAction SilentlyContinue
        $fd = Send-R32SelfTarget $t 'uffds'
        $fd | Should -Match '^OK \d+$' -Because 'the process holds one userfaultfd, the tracking''s'
        # The descriptor outlives the exec, still under its number and inode; its registrations went with the old memory.
        (Send-R32SelfTarget $t "keepexec $($fd.Substring(3))") | Should -Be "READY $($t.Id) $($t.PageSize)"
        (Send-R32SelfTarget $t 'uffds') | Should -Be $fd
        $answer = Send-R32SelfTarget $t "map $R32SelfPages $(Join-Path $R32SelfRoot "m-$([guid]::NewGuid().ToString('n'))")"
        if ($answer -notlike 'OK *') { throw "fighttarget: map -> $answer" }
        $address = [Convert]::ToUInt64($answer.Substring(3), 16)
        $range = '{0:x} {1}' -f $address, $R32SelfPages
        $expected = Join-Path $R32SelfRoot "e-$([guid]::NewGuid().ToString('n'))"
        for ($i = 1; $i -le 2; $i++) {
            (Send-R32SelfTarget $t ('fill {0:x} {1} {2}' -f $address, $i, (40 + $i))) | Should -Be 'OK'
            $null = Save-MemoryImage -Id $t.Id -Path "$c/$i" -Parent "$c/$($i - 1)" -Method WriteProtect -WarningAction SilentlyContinue
            (Send-R32SelfTarget $t "dump $range $expected") | Should -Be 'OK'
            Test-MemoryImage "$c/$i" | Should -BeTrue
            Get-R32SelfWrongPages "$c/$i" $address $R32SelfPages $t.PageSize $expected | Should -BeNullOrEmpty
        }
        Disable-WriteTracking -Id $t.Id
        (Send-R32SelfTarget $t 'uffds') | Should -Be 'OK' -Because 'Disable-WriteTracking closes the descriptor it made'
    }
}
