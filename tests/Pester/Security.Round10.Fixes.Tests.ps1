#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, tenth attack round, on the code round 9 added (new cases only; rounds 2-9 are in Security.Round*.Tests.ps1,
# Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1): the selection cache of the workflow cmdlets (one selector
# object per selection, so that an emulated process's kept WriteProtect tracker is continued) and the users list of a
# write tracking no one kept (WriteTrackingStore.Join/Leave).

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $SiblingSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Sibling } else { 'Linux only' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r10')
    chmod 0700 $root
    $script:n = 0
    function script:New-Dest { $script:n++; Join-Path $root "img$n" }
    # The selection cache (internal): WorkflowSelector.Made and WorkflowSelector.Create.
    $script:Selector = (Get-Module SoftDirty).ImplementingAssembly.GetType('SoftDirty.Commands.WorkflowSelector', $true)
    $script:Made = $Selector.GetField('Made', [Reflection.BindingFlags] 'Static, NonPublic')
    $script:CreateSelector = $Selector.GetMethod('Create', [Reflection.BindingFlags] 'Static, Public, NonPublic')
}

Describe 'Round 10: the selection cache of the workflow cmdlets' -Tag Round10Fixes {
    It 'a -Mapping array the user changes after a command does not change that selection for later commands' {
        # A selector kept under the key of 'a.bin' held the caller's array: changing the variable afterwards made every
        # later -Mapping 'a.bin' of the session select b.bin too (a literal match on the changed name), silently.
        $e = New-EmulatedProcess -Name r10sel
        $a = $e | Add-EmulatedMapping -Length 16KB -Path /r10/a.bin
        $b = $e | Add-EmulatedMapping -Length 16KB -Path /r10/b.bin
        foreach ($m in $a, $b) { $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size }
        [string[]] $names = 'a.bin'
        $first = $e | Save-MemoryImage -Path (New-Dest) -Mapping $names -Confirm:$false
        $first.MappingCount | Should -Be 1
        $names[0] = 'b.bin'
        $again = $e | Save-MemoryImage -Path (New-Dest) -Mapping 'a.bin' -Confirm:$false
        $again.MappingCount | Should -Be 1
        $again.DataPages | Should -Be $first.DataPages
    }

    It 'a session selecting a new address each time does not keep every selection it made' {
        # Each selection was kept for the life of the process: a loop over addresses grew it without bound.
        $before = $Made.GetValue($null).Count
        for ($i = 0; $i -lt 3000; $i++) {
            $null = $CreateSelector.Invoke($null, @($null, [Nullable[uint64]] (0x10000000 + 4096 * $i), [Nullable[uint64]] 4096))
            if ($i % 200 -eq 199) { [GC]::Collect(); [GC]::WaitForPendingFinalizers() }
        }
        $Made.GetValue($null).Count - $before | Should -BeLessThan 1000
    }

    It 'the same selection still gives the same selector while one is held, and a changed one gives another' {
        $x = $CreateSelector.Invoke($null, @([string[]] @('[heap]'), $null, $null))
        $y = $CreateSelector.Invoke($null, @([string[]] @('[heap]'), $null, $null))
        [object]::ReferenceEquals($x, $y) | Should -BeTrue
        $z = $CreateSelector.Invoke($null, @([string[]] @('[heap]', 'x'), $null, $null))
        [object]::ReferenceEquals($x, $z) | Should -BeFalse
    }
}

Describe 'Round 10: the users of a write tracking no one kept' -Tag Round10Fixes -Skip:([bool]$SiblingSkip) {
    BeforeAll {
        $script:savedStateDir = $env:SOFTDIRTY_STATE_DIR
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
        $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
        function script:Get-UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count }
        function script:Get-StateFile([int] $Id) { Join-Path $env:SOFTDIRTY_STATE_DIR "$Id.json" }
        function script:Wait-Until([scriptblock] $Condition, [string] $What) {
            $deadline = [DateTime]::UtcNow.AddSeconds(120) # a hang guard only
            while (-not (& $Condition)) {
                if ([DateTime]::UtcNow -gt $deadline) { throw "timed out waiting for $What" }
                Start-Sleep -Milliseconds 20
            }
        }
    }
    AfterAll { $env:SOFTDIRTY_STATE_DIR = $savedStateDir }

    # Before: a command joining the users of a tracking added itself without dropping the commands whose PowerShell is
    # gone (only a command that ended did). Watches killed outright again and again (timeout -s KILL in a loop) grew the
    # state file past the 64 KiB a state may have; the next look took it for malformed and deleted it, the tracking stayed
    # in the process with no state (WriteTrackingNotEnabled in the running watch, WriteTrackingInUse for every later one).
    It 'a watch joining a tracking whose state lists hundreds of killed watches drops them, counts on and disables it at its end' {
        $t = Start-TestTarget -Path $wtExe
        $child = $null
        try {
            $hex = Send-TestTarget $t 'map 8'
            $null = Send-TestTarget $t "write $hex 0 8"
            $child = Start-ChildPwsh "Watch-DirtyPage -Id $($t.Id) -Method WriteProtect -Count 1 -Interval 600 | Out-Null"
            Wait-Until { (Test-Path (Get-StateFile $t.Id)) -and (Get-UffdCount $t.Id) -eq 1 } 'the killed watch''s tracking'
            $child.Kill()
            $child.WaitForExit()
            # The killed watches: each one a PowerShell gone (a pid no process has). The file is edited as text, so that
            # what the module wrote stays byte for byte, and filled to just under the 64 KiB a state file may have: this
            # command's own entry (pid, start time and token: more than 60 bytes) takes it past that.
            $file = Get-StateFile $t.Id
            $text = Get-Content -Raw $file
            $text | Should -Match '"Counted":true'
            $users = [regex]::Match($text, '"Users":\[([^\]]*)\]')
            $users.Success | Should -BeTrue
            $gone = Get-UnusedProcessId
            $entries = [Collections.Generic.List[string]]::new()
            $entry = { param([string] $Start) ',{"ProcessId":' + $gone + ',"StartTime":' + $Start + ',"Token":"' + [guid]::NewGuid() + '"}' }
            $low = 64KB - 50
            $length = $text.Length
            while ($length + (& $entry '1').Length -le $low) { $e = & $entry '1'; $entries.Add($e); $length += $e.Length }
            for ($i = 0; $length -lt $low; $i++) {
                # Longer start times in the entries made so far, up to 18 digits more each.
                $more = [Math]::Min(18, $low - $length)
                $entries[$i] = $entries[$i].Replace('"StartTime":1,', '"StartTime":1' + ('0' * $more) + ',')
                $length += $more
            }
            $text = $text.Substring(0, $users.Groups[1].Index + $users.Groups[1].Length) + [string]::Concat($entries) + $text.Substring($users.Groups[1].Index + $users.Groups[1].Length)
            [IO.File]::WriteAllText($file, $text)
            (Get-Item $file).Length | Should -Be $low
            $s = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.1 -ErrorVariable err -ErrorAction SilentlyContinue -WarningAction SilentlyContinue)
            $err | Should -BeNullOrEmpty
            $s.Count | Should -Be 2
            Get-UffdCount $t.Id | Should -Be 0 -Because 'no live command used or kept the tracking any more'
            Test-Path $file | Should -BeFalse
        } finally {
            if ($child -and -not $child.HasExited) { $child.Kill() }
            if (Test-Path (Get-StateFile $t.Id)) { Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }
}

Describe 'Round 10: a target that registers a mapping with a MISSING-mode userfaultfd of its own after enabling' -Tag Round10Fixes -Skip:([bool]$WtSkip) {
    BeforeAll {
        $script:savedStateDir = $env:SOFTDIRTY_STATE_DIR
        $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state-missing'
        $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    }
    AfterAll { $env:SOFTDIRTY_STATE_DIR = $savedStateDir }

    # The watch's tracking cannot register a mapping another userfaultfd holds (EBUSY), whatever its mode: its present
    # pages count at every look; once the target unregisters it, the tracking registers it and counts it whole once.
    It 'every sample of a watch has the pages written in that mapping, before and after the target unregisters it' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r1 = Send-TestTarget $t 'map 8'
            $null = Send-TestTarget $t "write $r1 0 8"
            $script:r2 = $null; $script:own = $null
            $samples = [Collections.Generic.List[object]]::new()
            Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 4 -Interval 0.1 -WarningAction SilentlyContinue | ForEach-Object {
                $samples.Add($_)
                switch ($samples.Count) {
                    1 {
                        $script:r2 = Send-TestTarget $t 'map 8'
                        $null = Send-TestTarget $t "write $r2 0 8"
                        $script:own = Send-TestTarget $t "missinguffd $r2 8"
                    }
                    2 { $null = Send-TestTarget $t "write $r2 2 1" }
                    3 {
                        Send-TestTarget $t "uffdunreg $r2 8 $own" | Should -Be '0 0'
                        $null = Send-TestTarget $t "write $r2 5 1"
                    }
                }
            }
            $samples.Count | Should -Be 4
            $own | Should -Match '^\d+$' -Because 'the target made its MISSING-mode userfaultfd'
            $base = [Convert]::ToUInt64($r2, 16)
            $pages = foreach ($s in $samples) {
                , @(foreach ($r in $s.Ranges) {
                        for ($a = [Math]::Max([uint64]$r.Start, $base); $a -lt [Math]::Min([uint64]$r.End, $base + 8 * $t.PageSize); $a += $t.PageSize) { [int](($a - $base) / $t.PageSize) }
                    })
            }
            foreach ($p in 0..7) { $pages[1] | Should -Contain $p -Because "page $p of the new mapping was written before sample 2" }
            $pages[2] | Should -Contain 2 -Because 'page 2 was written between samples 2 and 3'
            $pages[3] | Should -Contain 5 -Because 'page 5 was written between samples 3 and 4, after the target unregistered the mapping'
        } finally {
            Stop-TestTarget $t
        }
    }
}
