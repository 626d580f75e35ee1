#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, sixth attack round, on write tracking and the workflows (new cases only; rounds 1-5 are in
# Workflows.Security.Tests.ps1, Security.Round2-5*.Tests.ps1 and WriteTracking.Tests.ps1): several commands and
# sessions sharing the write tracking of one process (a watch while another session saves, Disable-WriteTracking
# under a running watch), a tracking of another user or state folder, a target that tracks itself, -Id $PID for
# every cmdlet that takes -Id, and loop parameters at their extremes. The engine-level cases (the lock, two
# commands enabling at once) are the xunit TrackingRound6Tests.

BeforeDiscovery {
    # Why write tracking of another process cannot be tried here ($null where it can).
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r6t')
    $script:stateA = Join-Path $TestDrive 'state-a'
    $env:SOFTDIRTY_STATE_DIR = $stateA
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    function Get-UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count }
    function Get-UwCount([int] $Id) { @(Get-Content "/proc/$Id/smaps" | Select-String -Pattern '^VmFlags:.* uw\b').Count }
    # The reset the process's write tracking counts from now (its state file), '' where none.
    function Get-ResetId([int] $Id) {
        $file = Join-Path $env:SOFTDIRTY_STATE_DIR "$Id.json"
        if (Test-Path $file) { (Get-Content -Raw $file | ConvertFrom-Json).ResetId } else { '' }
    }
    function Wait-ResetChange([int] $Id, [string] $From) {
        $deadline = [DateTime]::UtcNow.AddSeconds(60)
        while ((Get-ResetId $Id) -eq $From) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "the tracking of $Id was not reset within 60 s" }
            Start-Sleep -Milliseconds 20
        }
    }
    # $Length bytes of process $Id's memory at $Address (/proc/PID/mem; ReadExactly throws on a short read).
    function Read-ProcMem([int] $Id, [uint64] $Address, [int] $Length) {
        $mem = [System.IO.FileStream]::new("/proc/$Id/mem", 'Open', 'Read', 'ReadWrite', 1, $false)
        try { $mem.Position = [int64]$Address; $bytes = [byte[]]::new($Length); $mem.ReadExactly($bytes, 0, $Length); , $bytes } finally { $mem.Dispose() }
    }
    # Runs $Script with $Arguments in a new runspace that imports the module under test; @{ PowerShell; Handle }.
    function Start-Session([string] $Script, [object[]] $Arguments) {
        $ps = [powershell]::Create()
        $null = $ps.AddScript("param([object[]] `$Arguments) `$env:SOFTDIRTY_STATE_DIR = '$stateA'; Import-Module '$((Get-Module SoftDirty).Path)'; `$body = { $Script }; & `$body @Arguments").AddParameter('Arguments', $Arguments)
        @{ PowerShell = $ps; Handle = $ps.BeginInvoke() }
    }
    # Waits for a session's command; returns its output, warnings and errors (terminating ones included).
    function Wait-Session($Session) {
        $out = $null; $thrown = $null
        try { $out = $Session.PowerShell.EndInvoke($Session.Handle) } catch { $thrown = $_.Exception.InnerException ?? $_.Exception }
        $r = [pscustomobject]@{
            Output   = @($out)
            Warnings = @($Session.PowerShell.Streams.Warning | ForEach-Object Message)
            Errors   = @(@($Session.PowerShell.Streams.Error | ForEach-Object FullyQualifiedErrorId) + @(if ($thrown -is [System.Management.Automation.IContainsErrorRecord]) { $thrown.ErrorRecord.FullyQualifiedErrorId } elseif ($thrown) { $thrown.GetType().FullName }))
        }
        $Session.PowerShell.Dispose()
        $r
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Write tracking shared by several commands and sessions' -Tag 'WriteTracking', 'Security', 'Round6Tracking' -Skip:([bool]$WtSkip) {
    BeforeEach {
        $script:t = Start-TestTarget -Path $wtExe
        $script:a = $t.Map(32)
    }
    AfterEach {
        if (Get-ResetId $t.Id) { Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue }
        Stop-TestTarget $t
    }

    It 'a Watch-DirtyPage -Method WriteProtect in another session still counts the pages written before an increment saved meanwhile, and warns' {
        # Before: the save's reset re-protected the page the watch was waiting to see; the sample said 0 pages, silently.
        $null = $t.Send("write $(Hex $a) 0 32")
        $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
        $full = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path $full -Method WriteProtect -Mapping '[anon]' -Confirm:$false
        $parentReset = Get-ResetId $t.Id
        $watch = Start-Session 'param($Id, $Address, $Length) Watch-DirtyPage -Id $Id -Method WriteProtect -Count 1 -Interval 4 -Address $Address -Length $Length' @($t.Id, $a, (32 * $t.PageSize))
        Wait-ResetChange $t.Id $parentReset # the watch has reset the tracking: its interval runs
        $null = $t.Send("write $(Hex $a) 5 2")
        $null = Save-MemoryImage -Id $t.Id -Path (New-Dest) -Parent $full -Method WriteProtect -Mapping '[anon]' -Confirm:$false -WarningAction SilentlyContinue
        $savedReset = Get-ResetId $t.Id
        $r = Wait-Session $watch
        if ((Get-ResetId $t.Id) -eq $savedReset) {
            Set-ItResult -Skipped -Because 'the watch took its sample before the save reset the tracking (a machine too busy for its 4 s interval): the case was not reached'
            return
        }
        $r.Errors | Should -BeNullOrEmpty
        $r.Output.Count | Should -Be 1
        $pages = foreach ($range in $r.Output[0].Ranges) { for ($p = $range.Start; $p -lt $range.End; $p += $t.PageSize) { $p } }
        $pages | Should -Contain $t.Page($a, 5)
        $pages | Should -Contain $t.Page($a, 6)
        "$($r.Warnings)" | Should -BeLike '*was reset by another command or session*every present page*'
    }

    It 'Disable-WriteTracking in another session under a running watch: the watch says WriteTrackingNotEnabled and registers nothing with the userfaultfd the target made under that number' {
        # Before: the watch registered the new mapping with whatever descriptor had the number: the target's own userfaultfd.
        $state = Enable-WriteTracking -Id $t.Id -Confirm:$false
        $before = Get-ResetId $t.Id
        $watch = Start-Session 'param($Id) Watch-DirtyPage -Id $Id -Method WriteProtect -Count 1 -Interval 4' @($t.Id)
        Wait-ResetChange $t.Id $before
        $reset = Get-ResetId $t.Id
        Disable-WriteTracking -Id $t.Id -Confirm:$false
        $own = $t.Map(4)
        $t.Send("ownuffd $(Hex $own) 4") | Should -Be ([string]$state.Descriptor) -Because 'the lowest free number is the one the tracking had'
        $null = $t.Map(8) # mapped since the watch's reset: the watch would register it
        $uw = Get-UwCount $t.Id
        $r = Wait-Session $watch
        if ($r.Output.Count -gt 0 -and (Get-UwCount $t.Id) -eq $uw) {
            # A sample after the Disable would have registered the new mapping somewhere (the defect); none did: it came before.
            Set-ItResult -Skipped -Because "the watch took its sample before Disable-WriteTracking ran (reset $reset; a machine too busy for its 4 s interval): the case was not reached"
            return
        }
        $r.Errors | Should -Be @('WriteTrackingNotEnabled,SoftDirty.Commands.WatchDirtyPageCommand')
        Get-UwCount $t.Id | Should -Be $uw -Because 'nothing was registered with the target''s own userfaultfd'
        Get-UffdCount $t.Id | Should -Be 1
    }

    It 'Enable-WriteTracking while a watch in another session holds the tracking it enabled for itself: the tracking stays enabled after the watch' {
        # Before: the watch's end disabled the tracking the user had just enabled (Enable-WriteTracking had said "already enabled").
        $watch = Start-Session 'param($Id) Watch-DirtyPage -Id $Id -Method WriteProtect -Count 1 -Interval 4' @($t.Id)
        Wait-ResetChange $t.Id ''
        $watchInode = (Get-Content -Raw (Join-Path $env:SOFTDIRTY_STATE_DIR "$($t.Id).json") | ConvertFrom-Json).Inode
        $state = Enable-WriteTracking -Id $t.Id -Confirm:$false
        $running = -not $watch.Handle.IsCompleted
        $r = Wait-Session $watch
        if (-not $running) {
            Set-ItResult -Skipped -Because 'the watch ended before Enable-WriteTracking ran (a machine too busy for its 4 s interval): the case was not reached'
            return
        }
        $state.Inode | Should -Be $watchInode -Because 'Enable-WriteTracking found the watch''s tracking'
        $r.Errors | Should -BeNullOrEmpty
        (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeTrue
        Get-UffdCount $t.Id | Should -Be 1
        $state.Kept | Should -BeTrue
    }

    It 'Enable-WriteTracking with another state folder (another user''s, or $SOFTDIRTY_STATE_DIR set otherwise) is WriteTrackingInUse, and the first tracking''s next increment restores exactly' {
        # Before: a second userfaultfd was injected; its resets hid writes from the first tracking's chain, silently.
        $null = $t.Send("write $(Hex $a) 0 32")
        $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
        $full = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path $full -Method WriteProtect -Mapping '[anon]' -Confirm:$false
        $null = $t.Send("write $(Hex $a) 9 3")
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive "state-b-$([guid]::NewGuid().ToString('n'))"
        try {
            Get-ErrorId { Enable-WriteTracking -Id $t.Id -Confirm:$false } | Should -Be 'WriteTrackingInUse,SoftDirty.Commands.EnableWriteTrackingCommand'
            Get-ErrorId { Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 1 -Interval 0.05 } | Should -Be 'WriteTrackingInUse,SoftDirty.Commands.WatchDirtyPageCommand'
            Get-ErrorId { Save-MemoryImage -Id $t.Id -Path (New-Dest) -Method WriteProtect -Mapping '[anon]' -Confirm:$false } | Should -Be 'WriteTrackingInUse,SoftDirty.Commands.SaveMemoryImageCommand'
            $s = Get-SoftDirtySupport -Id $t.Id
            $s.WriteProtect | Should -BeFalse
            $s.ErrorId | Should -Be 'WriteTrackingInUse'
        } finally { $env:SOFTDIRTY_STATE_DIR = $stateA }
        Get-UffdCount $t.Id | Should -Be 1
        kill -STOP $t.Id
        try {
            $inc = New-Dest
            $w = $null
            $null = Save-MemoryImage -Id $t.Id -Path $inc -Parent $full -Method WriteProtect -Mapping '[anon]' -Confirm:$false -WarningVariable w
            $w | Should -BeNullOrEmpty -Because 'nothing else reset the tracking: the written pages are trusted'
            $restored = Restore-MemoryImage -Path $inc -Destination (New-Dest) | Where-Object Start -EQ $a
            [System.Linq.Enumerable]::SequenceEqual([IO.File]::ReadAllBytes($restored.File), (Read-ProcMem $t.Id $a (32 * $t.PageSize))) | Should -BeTrue
        } finally { kill -CONT $t.Id }
    }

    It 'a target that write-protects its own memory with a userfaultfd of its own is WriteTrackingInUse: the module neither registers with it nor re-protects its pages' {
        # Before: Enable-WriteTracking went ahead; each of its resets re-protected the target's own range, so the
        # target's own PAGEMAP_SCAN missed its writes.
        $own = $t.Map(4)
        $null = $t.Send("ownuffd $(Hex $own) 4")
        Get-ErrorId { Enable-WriteTracking -Id $t.Id -Confirm:$false } | Should -Be 'WriteTrackingInUse,SoftDirty.Commands.EnableWriteTrackingCommand'
        Get-ErrorId { Invoke-PreCopyMigration -Id $t.Id -Method WriteProtect -MaxIterations 1 -Bandwidth 1e12 } | Should -Be 'WriteTrackingInUse,SoftDirty.Commands.InvokePreCopyMigrationCommand'
        Get-UffdCount $t.Id | Should -Be 1
        Get-UwCount $t.Id | Should -Be 1
        Get-ResetId $t.Id | Should -Be ''
    }
}

Describe 'Every cmdlet that takes -Id, given this PowerShell ($PID)' -Tag 'WriteTracking', 'Security', 'Round6Tracking' -Skip:([bool]$WtSkip) {
    It '<Name> answers <Expected>' -ForEach @(
        @{ Name = 'Enable-WriteTracking'; Expected = 'InvalidArgument,SoftDirty.Commands.EnableWriteTrackingCommand'; Command = { Enable-WriteTracking -Id $PID -Confirm:$false } }
        @{ Name = 'Disable-WriteTracking'; Expected = 'WriteTrackingNotEnabled,SoftDirty.Commands.DisableWriteTrackingCommand'; Command = { Disable-WriteTracking -Id $PID -Confirm:$false } }
        @{ Name = 'Save-MemoryImage -Method WriteProtect'; Expected = 'WriteProtectNotSupported,SoftDirty.Commands.SaveMemoryImageCommand'; Command = { Save-MemoryImage -Id $PID -Path (New-Dest) -Method WriteProtect -Mapping '[heap]' -Confirm:$false } }
        @{ Name = 'Save-MemoryImage -Freeze'; Expected = 'InvalidArgument,SoftDirty.Commands.SaveMemoryImageCommand'; Command = { Save-MemoryImage -Id $PID -Path (New-Dest) -Method Hash -Freeze -Mapping '[heap]' -Confirm:$false } }
        @{ Name = 'Watch-DirtyPage -Method WriteProtect (its own userfaultfd)'; Expected = 'none'; Command = { $s = Watch-DirtyPage -Id $PID -Method WriteProtect -Count 2 -Interval 0.01; if (@($s).Count -ne 2) { throw "$(@($s).Count) samples" } } }
        @{ Name = 'Invoke-PreCopyMigration -Method WriteProtect (not frozen)'; Expected = 'none'; Command = { $r = Invoke-PreCopyMigration -Id $PID -Method WriteProtect -MaxIterations 1 -Bandwidth 1e12 -Mapping '[heap]'; if (-not ($r | Where-Object { $_.PSObject.Properties['StopReason'] })) { throw 'no summary' } } }
    ) {
        Get-ErrorId $Command | Should -Be $Expected
        Get-UffdCount $PID | Should -Be 0 -Because 'nothing of the command is left in this process'
    }

    BeforeAll {
        # Runs $Second while a WriteProtect watch of this process (4 s, [heap]) runs in another runspace with its mappings
        # registered; $Second's ErrorId, whether the watch still ran when $Second ended, and the watch's result (Wait-Session).
        function Invoke-BesideSelfWatch([scriptblock] $Second) {
            $first = Start-Session 'param($Id) Watch-DirtyPage -Id $Id -Method WriteProtect -Count 1 -Interval 4 -Mapping ''[heap]''' @($PID)
            $deadline = [DateTime]::UtcNow.AddSeconds(60)
            while ((Get-UwCount $PID) -eq 0 -and -not $first.Handle.IsCompleted -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 10 }
            $answer = Get-ErrorId $Second
            $running = -not $first.Handle.IsCompleted
            [pscustomobject]@{ Answer = $answer; Running = $running; Watch = (Wait-Session $first) }
        }
    }

    It '<Name> while a WriteProtect watch of $PID runs in another runspace: WriteTrackingInUse, the watch keeps its writes' -ForEach @(
        # Before: every mapping was already registered with the first watch's userfaultfd (EBUSY), the second skipped
        # them all and reported 0 dirty pages of 0 scanned, with no word of it.
        @{ Name = 'a second Watch-DirtyPage -Id $PID -Method WriteProtect'; Second = { Watch-DirtyPage -Id $PID -Method WriteProtect -Count 1 -Interval 0.01 -Mapping '[heap]' }; Command = 'WatchDirtyPageCommand' }
        # Noticed in round 13: the scan re-protected the pages the watch counted on, and the watch missed the writes
        # made before it without a word (another process has a state file that records such resets; this one had nothing).
        @{ Name = 'Search-PageMap -WriteProtect -Id $PID'; Second = { Search-PageMap -Id $PID -Category Written -WriteProtect -Mapping '[heap]' }; Command = 'SearchPageMapCommand' }
    ) {
        $r = Invoke-BesideSelfWatch $Second
        if (-not $r.Running) {
            Set-ItResult -Skipped -Because 'the watch ended before the second command began (a machine too busy for its 4 s interval): the case was not reached'
            return
        }
        $r.Answer | Should -Be "WriteTrackingInUse,SoftDirty.Commands.$Command"
        $r.Watch.Errors | Should -BeNullOrEmpty
        $r.Watch.Output.Count | Should -Be 1
        Get-UffdCount $PID | Should -Be 0
        # Once the watch has ended nothing of the module is registered here: the scan is refused for that reason, not this one.
        if ($Command -eq 'SearchPageMapCommand') { Get-ErrorId $Second | Should -Be 'WriteProtectNotSupported,SoftDirty.Commands.SearchPageMapCommand' }
    }

    It 'Get-SoftDirtySupport -Id $PID says WriteProtect from outside is not for this process, in words' {
        $s = Get-SoftDirtySupport -Id $PID
        $s.WriteProtect | Should -BeFalse
        $s.ErrorId | Should -Be 'InvalidArgument'
        $s.Reason | Should -BeLike '*itself*'
    }
}

Describe 'Loop parameters at their extremes' -Tag 'Workflows', 'Security', 'Round6Tracking' {
    It '<Name> is refused by parameter validation, before any process is touched' -ForEach @(
        @{ Name = 'Watch-DirtyPage -Interval NaN'; Command = { Watch-DirtyPage -Id $PID -Method Hash -Interval ([double]::NaN) -Count 1 } }
        @{ Name = 'Watch-DirtyPage -Interval -Infinity'; Command = { Watch-DirtyPage -Id $PID -Method Hash -Interval ([double]::NegativeInfinity) -Count 1 } }
        @{ Name = 'Watch-DirtyPage -Interval +Infinity'; Command = { Watch-DirtyPage -Id $PID -Method Hash -Interval ([double]::PositiveInfinity) -Count 1 } }
        @{ Name = 'Watch-DirtyPage -Interval 0'; Command = { Watch-DirtyPage -Id $PID -Method Hash -Interval 0 -Count 1 } }
        @{ Name = 'Watch-DirtyPage -Duration NaN'; Command = { Watch-DirtyPage -Id $PID -Method Hash -Interval 0.01 -Duration ([double]::NaN) } }
        @{ Name = 'Watch-DirtyPage -Duration 1e300'; Command = { Watch-DirtyPage -Id $PID -Method Hash -Interval 0.01 -Duration 1e300 } }
        @{ Name = 'Watch-DirtyPage -Count 0'; Command = { Watch-DirtyPage -Id $PID -Method Hash -Interval 0.01 -Count 0 } }
        @{ Name = 'Watch-DirtyPage -Count -1'; Command = { Watch-DirtyPage -Id $PID -Method Hash -Interval 0.01 -Count -1 } }
        @{ Name = 'Invoke-PreCopyMigration -Bandwidth NaN'; Command = { Invoke-PreCopyMigration -Id $PID -Method Hash -Bandwidth ([double]::NaN) } }
        @{ Name = 'Invoke-PreCopyMigration -Bandwidth +Infinity'; Command = { Invoke-PreCopyMigration -Id $PID -Method Hash -Bandwidth ([double]::PositiveInfinity) } }
        @{ Name = 'Invoke-PreCopyMigration -MaxIterations 0'; Command = { Invoke-PreCopyMigration -Id $PID -Method Hash -MaxIterations 0 } }
    ) {
        Get-ErrorId $Command | Should -BeLike 'ParameterArgumentValidationError,SoftDirty.Commands.*'
    }
}
