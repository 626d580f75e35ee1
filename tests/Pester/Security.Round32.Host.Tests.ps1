#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 32 (Host): the module inside one PowerShell used as people use it: several runspaces at once (thread
# jobs, ForEach-Object -Parallel, [powershell]::Create), pipelines stopped from downstream or by Ctrl+C at a named step,
# -WhatIf and -Confirm, objects bound by property name, and the error preferences (-ErrorAction SilentlyContinue and
# Ignore must never hide a wrong result). New cases only (rounds 13 Stop, 14 Surface, 15 Binding, 16 Race, 22 Parallel and
# 30 Epoch tried the rest).
# Found: images piped into Restore-MemoryImage of which one could not be read (the newest increment, damaged) restored the
# latest of the others and emitted its files as a whole restore: under -ErrorAction SilentlyContinue or Ignore, older
# memory than asked for, complete-looking, without a word. Likewise Invoke-PreCopyMigration -Destination |
# Restore-MemoryImage whose stop-and-copy round failed (its error suppressed) or that Select-Object -First cut short restored
# the last live round, memory of the running process, as the migration's result. Enable-WriteTracking -WhatIf made the write-tracking state
# folder (and so did a -Confirm answered No): it took the lock of the process before it asked.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $R32HostWtSkip = if ($IsLinux) { Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:r32HostRoot = (New-Item -ItemType Directory (Join-Path $TestDrive 'r32host')).FullName
    chmod 0700 $r32HostRoot
    function script:New-R32Name { [guid]::NewGuid().ToString('n') }
}

Describe 'Round 32: images piped into Restore-MemoryImage of which one cannot be read' -Tag 'Security', 'Round32Host' {
    BeforeAll {
        # A chain of three images of an emulated process whose first page holds 1, 2, 3 at each; the newest is then damaged.
        $script:r32e = New-EmulatedProcess
        $script:r32m = $r32e | Add-EmulatedMapping -Length 16KB
        $script:r32chain = Join-Path $r32HostRoot (New-R32Name)
        foreach ($k in 0..2) {
            $r32e | Write-EmulatedMemory -Address $r32m.Start -Length $(if ($k) { 4KB } else { 16KB }) -Value ($k + 1)
            $p = if ($k) { @{ Parent = "$r32chain/$($k - 1)" } } else { @{} }
            $null = Save-MemoryImage -Emulator $r32e -Path "$r32chain/$k" @p
        }
        '{' | Set-Content -LiteralPath "$r32chain/2/manifest.json"
    }

    It 'piped <Order> under -ErrorAction <Preference> into <Into>: nothing is restored, and an error says why' -ForEach @(
        foreach ($pref in 'SilentlyContinue', 'Ignore', 'Continue') {
            foreach ($order in 'oldest first', 'newest first') {
                @{ Preference = $pref; Order = $order; Into = 'a folder' }
                @{ Preference = $pref; Order = $order; Into = 'an emulated process' }
            }
        }
    ) {
        # Before: the newest increment's read error was written and the latest of the two others (image 1, the first page 2)
        # was restored and its files emitted; under SilentlyContinue or Ignore that was all a script saw.
        $images = @(Get-ChildItem -Directory -LiteralPath $r32chain | Sort-Object Name -Descending:($Order -eq 'newest first'))
        $images.Count | Should -Be 3
        $dest = Join-Path $r32HostRoot (New-R32Name)
        $target = @{ Destination = $dest }
        if ($Into -eq 'an emulated process') { $emu = New-EmulatedProcess; $target = @{ Emulator = $emu } }
        $err = $null
        $out = @($images | Restore-MemoryImage @target -ErrorAction $Preference -ErrorVariable err 2>$null)
        $out | Should -BeNullOrEmpty -Because 'no restore of older memory than the newest image piped is made'
        Test-Path -LiteralPath $dest | Should -BeFalse
        if ($emu) { @($emu | Get-MemoryMapping) | Should -BeNullOrEmpty }
        if ($Preference -ne 'Ignore') {
            $err.Count | Should -Be 2
            $err[0].FullyQualifiedErrorId | Should -BeLike 'Image*,SoftDirty.Commands.RestoreMemoryImageCommand'
            $err[1].FullyQualifiedErrorId | Should -Be $err[0].FullyQualifiedErrorId
            $err[1].Exception.Message | Should -BeLike "Nothing was restored*$r32chain/2*"
        }
    }

    It 'an image of another chain piped after a whole one still leaves that one restored (round 11)' {
        $other = Join-Path $r32HostRoot (New-R32Name)
        $null = New-EmulatedProcess | Save-MemoryImage -Path $other
        $dest = Join-Path $r32HostRoot (New-R32Name)
        $out = @((@(Get-MemoryImage "$r32chain/1") + @(Get-MemoryImage $other)) | Restore-MemoryImage -Destination $dest -ErrorAction SilentlyContinue -ErrorVariable err)
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        [IO.File]::ReadAllBytes($out[0].File)[0] | Should -Be 2
    }
}

Describe 'Round 32: the rounds of a migration that ended without its stop-and-copy round, piped into Restore-MemoryImage' -Tag 'Security', 'Round32Host' {
    BeforeAll {
        $script:r32f = New-FilledEmulator 64
        $script:r32w = @{ Address = $r32f.Mapping.Start; Length = $r32f.Mapping.Size; Pattern = 'Random'; AccessesPerSecond = 2000; WriteRatio = 1; Seed = 3 }
        $script:r32mig = @{ Emulator = $r32f.Emulator; Workload = $r32w; Bandwidth = 1MB; MaxIterations = 3; StopThreshold = 0; Confirm = $false }
        # A step hook (InjectionSteps, internal) that fails the Nth image put in place with an engine error, as a full disk
        # would: compiled, since a script block run as the hook would stop with its own error instead.
        if (-not ('R32HostStepFault' -as [type])) {
            Add-Type -TypeDefinition @'
using System;
public static class R32HostStepFault
{
    public static Action<string> At(string step, int nth, Exception fault)
    {
        int seen = 0;
        return s => { if (s == step && ++seen == nth) throw fault; };
    }
}
'@
        }
        $internal = [Reflection.BindingFlags] 'Static, Public, NonPublic'
        $engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
        $script:r32Steps = $engine.GetType('SoftDirty.Injection.InjectionSteps', $true)
        $script:r32Commit = $engine.GetType('SoftDirty.Images.PrivateOutput', $true).GetField('CommitStep', $internal).GetValue($null)
        $script:r32Fault = [SoftDirty.EngineException].GetConstructors([Reflection.BindingFlags] 'NonPublic, Instance')[0].Invoke(
            @([SoftDirty.EngineError]::ImageWriteError, 'No space left on device (a fault of the test)', $null, 0, $null))
    }

    It 'a final round that failed under -ErrorAction <Preference>: nothing is restored, InvalidArgument says why' -ForEach @(
        @{ Preference = 'SilentlyContinue' }, @{ Preference = 'Ignore' }
    ) {
        # Before: the third live round was restored and its files emitted, and nothing said the migration had not finished.
        $d = Join-Path $r32HostRoot (New-R32Name); $r = Join-Path $r32HostRoot (New-R32Name)
        $rec = [Activator]::CreateInstance($r32Steps)
        $r32Steps.GetProperty('OnStep').SetValue($rec, [R32HostStepFault]::At($r32Commit, 4, $r32Fault))
        $r32Steps.GetProperty('Current', [Reflection.BindingFlags] 'Static, Public, NonPublic').SetValue($null, $rec)
        try {
            $err = $null
            $out = @(Invoke-PreCopyMigration @r32mig -Destination $d -ErrorAction $Preference -OutVariable rounds | Restore-MemoryImage -Destination $r -ErrorAction SilentlyContinue -ErrorVariable err)
        } finally { $r32Steps.GetProperty('Current', [Reflection.BindingFlags] 'Static, Public, NonPublic').SetValue($null, $null) }
        @($rounds | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] -and $_.Phase -eq 'Live' }).Count | Should -Be 3
        @($rounds | Where-Object { $_ -isnot [SoftDirty.Workflows.PreCopyRound] -or $_.Phase -ne 'Live' }) | Should -BeNullOrEmpty -Because 'the stop-and-copy round failed'
        $out | Should -BeNullOrEmpty
        Test-Path -LiteralPath $r | Should -BeFalse
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,SoftDirty.Commands.RestoreMemoryImageCommand'
        $err[0].Exception.Message | Should -BeLike '*without its stop-and-copy round*'
    }

    It 'Select-Object -First <First> between them: nothing is restored; the whole migration still restores its final round' -ForEach @(
        @{ First = 1 }, @{ First = 2 }
    ) {
        $d = Join-Path $r32HostRoot (New-R32Name); $r = Join-Path $r32HostRoot (New-R32Name)
        $err = $null
        $out = @(Invoke-PreCopyMigration @r32mig -Destination $d | Select-Object -First $First | Restore-MemoryImage -Destination $r -ErrorAction SilentlyContinue -ErrorVariable err)
        $out | Should -BeNullOrEmpty
        Test-Path -LiteralPath $r | Should -BeFalse
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,SoftDirty.Commands.RestoreMemoryImageCommand'
        $d = Join-Path $r32HostRoot (New-R32Name)
        $out = @(Invoke-PreCopyMigration @r32mig -Destination $d | Restore-MemoryImage -Destination $r)
        $out.Count | Should -BeGreaterThan 0
        $final = @(Get-ChildItem -Directory -LiteralPath $d | Sort-Object Name)[-1].FullName
        $want = Join-Path $r32HostRoot (New-R32Name)
        $null = Restore-MemoryImage -Path $final -Destination $want
        foreach ($file in Get-ChildItem -LiteralPath $want -Filter *.bin) {
            (Get-FileHash -LiteralPath (Join-Path $r $file.Name)).Hash | Should -Be (Get-FileHash -LiteralPath $file.FullName).Hash
        }
    }
}

Describe 'Round 32: -WhatIf on every command that changes a process or writes files changes nothing' -Tag 'Security', 'Round32Host', 'WriteTracking' -Skip:([bool]$R32HostWtSkip) {
    BeforeAll {
        # Everything the commands could make lies under one folder of this test: the state folder (absent), the epoch folders
        # (TrackingEpoch's, internal, pointed here; the machine's own are left alone) and every destination.
        $script:r32wi = Join-Path $r32HostRoot (New-R32Name)
        $null = New-Item -ItemType Directory $r32wi
        $script:r32SavedState = $env:SOFTDIRTY_STATE_DIR
        $env:SOFTDIRTY_STATE_DIR = Join-Path $r32wi 'state'
        $internal = [Reflection.BindingFlags] 'Static, Public, NonPublic'
        $script:r32Epoch = ([AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }).GetType('SoftDirty.Tracking.TrackingEpoch', $true)
        $script:r32EpochSaved = foreach ($p in 'SharedTempFolder', 'RuntimeRoot') { $r32Epoch.GetProperty($p, $internal).GetValue($null) }
        foreach ($d in 'tmp', 'run') { $null = New-Item -ItemType Directory (Join-Path $r32wi "epochs/$d") }
        chmod -R 0755 (Join-Path $r32wi 'epochs')
        $r32Epoch.GetProperty('SharedTempFolder', $internal).SetValue($null, (Join-Path $r32wi 'epochs/tmp'))
        $r32Epoch.GetProperty('RuntimeRoot', $internal).SetValue($null, (Join-Path $r32wi 'epochs/run'))
        $script:r32t = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/wttarget')
        $null = $r32t.Send('map 16')
        $script:r32we = New-EmulatedProcess -Kernel 6.18
        $script:r32wm = $r32we | Add-EmulatedMapping -Length 64KB
        $r32we | Write-EmulatedMemory -Address $r32wm.Start -Length 64KB -Value 7
        $script:r32img = Join-Path $r32HostRoot (New-R32Name)
        $null = Save-MemoryImage -Emulator $r32we -Path $r32img -Method WriteProtect
        $script:r32samples = @($r32we | Watch-DirtyPage -Count 2 -Interval 0.1)
        function script:Get-R32Entries { @(Get-ChildItem -Recurse -Force -LiteralPath $r32wi | ForEach-Object FullName | Sort-Object) }
    }
    AfterAll {
        Stop-TestTarget -All
        $internal = [Reflection.BindingFlags] 'Static, Public, NonPublic'
        $r32Epoch.GetProperty('SharedTempFolder', $internal).SetValue($null, $r32EpochSaved[0])
        $r32Epoch.GetProperty('RuntimeRoot', $internal).SetValue($null, $r32EpochSaved[1])
        $env:SOFTDIRTY_STATE_DIR = $r32SavedState
    }

    It '<Command> -WhatIf: no file or folder made, the process untraced and untracked, the emulated process as it was' -ForEach @(
        @{ Command = 'Enable-WriteTracking'; Run = { Enable-WriteTracking -Id $r32t.Id -WhatIf } }
        @{ Command = 'Save-MemoryImage'; Run = { Save-MemoryImage -Id $r32t.Id -Path (Join-Path $r32wi 'new/a/img') -WhatIf } }
        @{ Command = 'Save-MemoryImage -Method WriteProtect'; Run = { Save-MemoryImage -Id $r32t.Id -Path (Join-Path $r32wi 'new/b/img') -Method WriteProtect -WhatIf } }
        @{ Command = 'Save-MemoryImage -Freeze'; Run = { Save-MemoryImage -Id $r32t.Id -Path (Join-Path $r32wi 'new/c/img') -Freeze -WhatIf } }
        @{ Command = 'Save-MemoryImage -Parent (emulated)'; Run = { Save-MemoryImage -Emulator $r32we -Path (Join-Path $r32wi 'inc') -Parent $r32img -Method WriteProtect -WhatIf } }
        @{ Command = 'Invoke-PreCopyMigration'; Run = { Invoke-PreCopyMigration -Id $r32t.Id -Destination (Join-Path $r32wi 'mig') -Bandwidth 1GB -MaxIterations 1 -Method WriteProtect -WhatIf } }
        @{ Command = 'Invoke-PreCopyMigration (emulated)'; Run = { Invoke-PreCopyMigration -Emulator $r32we -Destination (Join-Path $r32wi 'mige') -Bandwidth 1GB -MaxIterations 1 -WhatIf } }
        @{ Command = 'Restore-MemoryImage'; Run = { Restore-MemoryImage -Path $r32img -Destination (Join-Path $r32wi 'restored') -WhatIf } }
        @{ Command = 'Receive-MemoryImage'; Run = { Get-ChildItem -File -LiteralPath $r32img | Receive-MemoryImage -Path (Join-Path $r32wi 'received') -WhatIf } }
        @{ Command = 'Export-DirtyPageChart'; Run = { $r32samples | Export-DirtyPageChart -Path (Join-Path $r32wi 'chart.svg') -WhatIf } }
        @{ Command = 'Clear-PageReference'; Run = { Clear-PageReference -Id $r32t.Id -Type PeakRss -WhatIf } }
        @{ Command = 'Clear-SoftDirty (emulated)'; Run = { Clear-SoftDirty -Emulator $r32we -WhatIf } }
        @{ Command = 'Search-PageMap -WriteProtect'; Run = { Search-PageMap -Id $r32t.Id -Category Written -WriteProtect -WhatIf } }
        @{ Command = 'Search-PageMap -WriteProtect (emulated)'; Run = { Search-PageMap -Emulator $r32we -Category Written -WriteProtect -WhatIf } }
        # Before (the lead's): Watch-DirtyPage had no ShouldProcess, and -WhatIf watched (a sample emitted, a userfaultfd injected,
        # soft-dirty bits cleared); Clear-SoftDirty and Clear-PageReference -WhatIf -PassThru emitted the process as if cleared.
        @{ Command = 'Watch-DirtyPage -Method WriteProtect'; Run = { Watch-DirtyPage -Id $r32t.Id -Method WriteProtect -Count 1 -Interval 0.01 -WhatIf } }
        @{ Command = 'Watch-DirtyPage -Method SoftDirty (emulated)'; Run = { Watch-DirtyPage -Emulator $r32we -Method SoftDirty -Count 1 -Interval 0.01 -WhatIf } }
        @{ Command = 'Watch-DirtyPage -Method WriteProtect (emulated)'; Run = { Watch-DirtyPage -Emulator $r32we -Method WriteProtect -Count 1 -Interval 0.01 -WhatIf } }
        @{ Command = 'Clear-SoftDirty -PassThru (emulated)'; Run = { Clear-SoftDirty -Emulator $r32we -PassThru -WhatIf } }
        @{ Command = 'Clear-PageReference -PassThru'; Run = { Clear-PageReference -Id $r32t.Id -Type PeakRss -PassThru -WhatIf } }
    ) {
        # Before: Enable-WriteTracking -WhatIf made the state folder (it took the process's lock, which makes it, before it asked).
        $before = Get-R32Entries
        $pages = $r32we | Get-PageMap | ConvertTo-Json -Compress -Depth 3
        $out = @(& $Run 6>$null)
        $out | Should -BeNullOrEmpty
        Get-R32Entries | Should -Be $before
        $r32we | Get-PageMap | ConvertTo-Json -Compress -Depth 3 | Should -Be $pages -Because 'no soft-dirty bit or write-protect of the emulated process changed'
        Get-ProcessState $r32t.Id | Should -Not -BeIn @('t', 'T')
        Get-ThreadTracer $r32t.Id | Should -BeNullOrEmpty
        @(Get-ChildItem "/proc/$($r32t.Id)/fd" | Where-Object { $_.LinkTarget -like '*userfaultfd*' }).Count | Should -Be 0
        @(Get-Content "/proc/$($r32t.Id)/smaps" | Where-Object { $_ -match '^VmFlags:.* uw( |$)' }).Count | Should -Be 0
    }

    It 'Watch-DirtyPage -Method Hash -WhatIf watches: it only reads the process, so it asks nothing' {
        $before = Get-R32Entries
        $out = @(Watch-DirtyPage -Id $r32t.Id -Method Hash -Count 2 -Interval 0.01 -WhatIf 6>$null)
        $out.Count | Should -Be 2
        $out[0].Method | Should -Be 'Hash'
        Get-R32Entries | Should -Be $before
    }
}
