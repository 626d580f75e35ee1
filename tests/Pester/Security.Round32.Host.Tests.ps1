#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 32 (Host): the module inside one PowerShell used as people use it: several runspaces at once (thread
# jobs, ForEach-Object -Parallel, [powershell]::Create), pipelines stopped from downstream or by Ctrl+C at a named step,
# -WhatIf and -Confirm, objects bound by property name, and the error preferences (-ErrorAction SilentlyContinue and
# Ignore must never hide a wrong result). New cases only (rounds 13 Stop, 14 Surface, 15 Binding, 16 Race, 22 Parallel and
# 30 Epoch tried the rest).
# Found: images piped into Restore-MemoryImage of which one could not be read (the newest increment, damaged) restored the
# latest of the others and emitted its files as a whole restore: under -ErrorAction SilentlyContinue or Ignore, older
# memory than asked for, complete-looking, without a word.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
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
