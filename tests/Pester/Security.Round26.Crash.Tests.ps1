#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 26 (Crash): what a power loss (or a kernel crash) at any moment leaves of an image, a chain and a
# restore. The file-system calls of a child pwsh that saves (full; increments with -Method SoftDirty, WriteProtect and
# Hash), restores and receives are recorded with strace; CrashStates.psm1 builds from them the states a POSIX file system
# may hold after a crash at each call (unsynced data and folder entries lost, in part or whole, or sizes without data), and
# each state is read as a user would after the reboot: Test-, Get- and Restore-MemoryImage on every image folder (hidden
# partial ones included), the files of a restore destination. The rule: absent, refused with an Image* error id, or whole
# and restoring the same memory; and whole once its command returned. Nothing found: the protocol (files fsynced, their
# folder fsynced, renamed, the parent fsynced) held at every point. The second case checks that the checker would see it
# if a sync were missing (a copy of the trace without it).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $StraceSkip = Get-StraceSkipReason 'the file-system calls are recorded with strace'
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'CrashStates.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:work = (New-Item -ItemType Directory (Join-Path $TestDrive 'r26c')).FullName
    $script:root = "$work/out"; $script:marks = "$work/marks"; $script:before = "$work/before"
    $null = New-Item -ItemType Directory $root, $marks
    # Made before the trace: the image the restores and receives read, and two empty folders the results replace.
    $f = New-FilledEmulator
    $null = Save-MemoryImage -Emulator $f.Emulator -Path "$root/full"
    $f.Emulator | Write-EmulatedMemory -Address $f.Mapping.Start -Length 8KB
    $null = Save-MemoryImage -Emulator $f.Emulator -Path "$root/base-inc" -Parent "$root/full"
    $null = New-Item -ItemType Directory "$root/img2", "$root/rest2"
    Copy-Item -Recurse -LiteralPath $root -Destination $before
    # Each command, then a mark (a file made in $marks: the moment it returned).
    $child = @"
`$ErrorActionPreference = 'Stop'; `$WarningPreference = 'SilentlyContinue'; Import-Module '$module'
function Mark([string] `$n) { [IO.File]::WriteAllText('$marks/' + `$n, '') }
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 256KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
`$null = Save-MemoryImage -Emulator `$e -Path '$root/img'; Mark img
`$null = Save-MemoryImage -Emulator `$e -Path '$root/img2'; Mark img2
foreach (`$method in 'SoftDirty', 'WriteProtect', 'Hash') {
    `$e | Write-EmulatedMemory -Address (`$m.Start + 8KB) -Length 12KB
    `$null = Save-MemoryImage -Emulator `$e -Path "$root/inc-`$method" -Parent '$root/img' -Method `$method; Mark "inc-`$method"
}
`$null = Restore-MemoryImage -Path '$root/base-inc' -Destination '$root/rest'; Mark rest
`$null = Restore-MemoryImage -Path '$root/base-inc' -Destination '$root/rest2'; Mark rest2
`$null = Get-ChildItem '$root/base-inc' | Receive-MemoryImage -Path '$root/recv' -Confirm:`$false; Mark recv
'done'
"@
    $pwsh = Get-PwshCommandLine
    $log = "$work/trace.log"
    $script:said = strace -f -qq -yy -s 0 -o $log --seccomp-bpf -e trace=openat,mkdirat,write,pwrite64,ftruncate,fsync,fdatasync,renameat,renameat2,unlinkat @pwsh -NoProfile -NonInteractive -Command $child 2>&1
    $script:steps = @(Read-CrashTrace (Get-Content -LiteralPath $log) $root $marks)
    $script:model = New-CrashModel $steps $root $before
    $script:kinds = @{ img = 'image'; img2 = 'image'; 'inc-SoftDirty' = 'image'; 'inc-WriteProtect' = 'image'; 'inc-Hash' = 'image'; rest = 'restore'; rest2 = 'restore'; recv = 'image' }
    $script:parents = @{ 'inc-SoftDirty' = 'img'; 'inc-WriteProtect' = 'img'; 'inc-Hash' = 'img' }
    # What each result is (the real one, after the trace): an image's restored memory, a restore's files.
    $script:expect = @{}
    $ref = (New-Item -ItemType Directory "$work/expect").FullName
    foreach ($k in $kinds.Keys) {
        $expect[$k] = if ($kinds[$k] -eq 'image') { Get-ImageOutcome "$root/$k" $ref } else { "restored:$(Get-TreeSignature (Read-CrashTree "$root/$k"))" }
    }
    $script:returned = @{}
    foreach ($k in $kinds.Keys) { $returned[$k] = $k }
    function Invoke-Check($Model, [int[]] $Points) {
        $scratch = (New-Item -ItemType Directory (Join-Path $work "scratch-$([guid]::NewGuid().ToString('n'))")).FullName
        Test-CrashState -Model $Model -Kinds $kinds -Expect $expect -Returned $returned -Static "$before/full", "$before/base-inc" -Parents $parents -Random 0 -Seed 26 -Scratch $scratch -Points $Points
    }
}

Describe 'Round 26: a crash at any point of a save, an increment, a restore and a receive' -Tag 'Security', 'Round26Crash' -Skip:([bool]$StraceSkip) {
    It 'leaves each result absent, refused with an Image* error, or whole with the same memory; whole once its command returned' {
        "$said" | Should -Match 'done'
        $model.Marks.Count | Should -Be 8 -Because "every command ran and returned ($said)"
        foreach ($k in $kinds.Keys) { $expect[$k] | Should -Match '^(valid|restored):' -Because "the real $k is whole" }
        # Every barrier the protocol has is in the trace: a sync of each partial folder, a rename and a sync of the parent.
        @($steps | Where-Object { $_.Kind -eq 'rename' }).Count | Should -Be 8
        $r = Invoke-Check $model
        $r.Violations | Should -BeNullOrEmpty
        # The states reached every outcome: absent or empty, refused (an image cut short), and whole.
        $r.States | Should -BeGreaterThan 400
        $r.Outcomes['whole'] | Should -BeGreaterThan 0
        $r.Outcomes['empty'] | Should -BeGreaterThan 0
        @($r.Outcomes.Keys | Where-Object { $_ -like 'refused:Image*' }).Count | Should -BeGreaterThan 0 -Because ($r.Outcomes.Keys -join ', ')
    }

    It 'finds it where a folder''s sync is missing (the trace without the syncs of the partial folders or of the destination''s folder)' {
        # The checker's own check: the same trace, the partial folders' fsync left out, then the parent's after the rename.
        foreach ($drop in '/.img.partial-', $root) {
            $cut = @($steps | Where-Object { -not ($_.Kind -eq 'sync' -and ($(if ($drop -eq $root) { $_.Path -eq $root } else { $_.Path -like "*$drop*" }))) })
            $cut.Count | Should -BeLessThan $steps.Count
            $m = New-CrashModel $cut $root $before
            # At each mark: the command returned.
            $r = Invoke-Check $m @($m.Marks.Values | ForEach-Object { $_ - 1 })
            @($r.Violations | Where-Object { $_ -like '*returned*' }).Count | Should -BeGreaterThan 0 -Because "without the syncs of $drop"
        }
    }
}

Describe 'Round 26: what a failed commit leaves, and a read-back of what was committed' -Tag 'Security', 'Round26Crash' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        # Runs $Script in a child pwsh under strace with $Strace (trace and inject options); its output lines.
        function Invoke-Injected([string[]] $Strace, [string] $Script) { (Invoke-StraceChild -Module $module -Strace $Strace -Script $Script).Out }
        function Said([string[]] $Out, [string] $Name) { ($Out | Where-Object { $_ -like "$Name=*" } | Select-Object -First 1) -replace '^[^=]*=' }
        $script:source = "$before/base-inc"
    }

    It 'the fsync of the destination''s folder failing after the rename onto an empty folder: the empty folder is back, with its mode' {
        # Before: each said ImageWriteError (right) and the empty folder the user had made was gone (round 25 left it open).
        $out = (New-Item -ItemType Directory (Join-Path $work "empty-$([guid]::NewGuid().ToString('n'))")).FullName
        foreach ($d in 'img', 'rest', 'recv') { $null = New-Item -ItemType Directory "$out/$d"; chmod 0750 "$out/$d" }
        $o = Invoke-Injected -Strace '-P', $out, '-e', 'trace=fsync', '-e', 'inject=fsync:error=ENOSPC' -Script @"
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 64KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
'save=' + (Id { Save-MemoryImage -Emulator `$e -Path '$out/img' })
'restore=' + (Id { Restore-MemoryImage -Path '$source' -Destination '$out/rest' })
'receive=' + (Id { Get-ChildItem '$before/full' | Receive-MemoryImage -Path '$out/recv' -Confirm:`$false })
"@
        foreach ($c in 'save', 'restore', 'receive') { Said $o $c | Should -Be 'ImageWriteError' -Because "$c ($($o -join "`n"))" }
        @(Get-ChildItem -Force -Name -LiteralPath $out | Sort-Object) | Should -Be @('img', 'recv', 'rest')
        foreach ($d in 'img', 'rest', 'recv') {
            @(Get-ChildItem -Force -LiteralPath "$out/$d").Count | Should -Be 0
            (Get-Item -LiteralPath "$out/$d").UnixFileMode | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite, UserExecute, GroupRead, GroupExecute')
        }
    }

    It 'an EIO reading back the manifest just committed: the save and the receive succeed, the images in place and valid' {
        # Before: both said ImageReadError (the save read its manifest back by path after the commit) of images in place.
        $out = (New-Item -ItemType Directory (Join-Path $work "readback-$([guid]::NewGuid().ToString('n'))")).FullName
        $o = Invoke-Injected -Strace '-P', "$out/img/manifest.json", '-P', "$out/recv/manifest.json", '-e', 'trace=pread64', '-e', 'inject=pread64:error=EIO' -Script @"
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 64KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
'save=' + (Id { `$i = Save-MemoryImage -Emulator `$e -Path '$out/img'; 'saved=' + `$i.Path + ' ' + `$i.DataPages + ' ' + `$i.FileBytes | Write-Host })
'receive=' + (Id { `$i = Get-ChildItem '$before/full' | Receive-MemoryImage -Path '$out/recv' -Confirm:`$false; 'received=' + `$i.Path + ' ' + `$i.Kind + ' ' + `$i.DataPages | Write-Host })
'test=' + (Id { Test-MemoryImage '$out/img' -Detailed }) # the injection still reaches a read of the image: so it is read
"@
        Said $o 'save' | Should -Be 'none' -Because ($o -join "`n")
        Said $o 'receive' | Should -Be 'none' -Because ($o -join "`n")
        Said $o 'test' | Should -Be 'none' -Because ($o -join "`n")
        $bytes = (Get-ChildItem -LiteralPath "$out/img" | Measure-Object -Property Length -Sum).Sum
        Said $o 'saved' | Should -Be "$out/img 16 $bytes"
        Said $o 'received' | Should -Be "$out/recv Full 16"
        Test-MemoryImage "$out/img" | Should -BeTrue
        Test-MemoryImage "$out/recv" | Should -BeTrue
    }
}
