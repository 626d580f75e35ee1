#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 25 (Durable): I/O errors and crash consistency of the files the module writes. Errors are injected under
# strace (-e inject: the kernel's answer replaced, nothing on this machine changed) into a child pwsh that runs the commands.
# Found: every fsync's error was dropped (.NET's FileStream.Flush(true) returns as if fsync succeeded, and the folders'
# fsyncs were "best effort"), so a save, restore, receive, migration or chart whose data or folder never reached the disk
# said success; and an EIO reading an image reached the user as System.IO.IOException (no SoftDirty error id).

BeforeDiscovery {
    $StraceSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Get-Command strace -CommandType Application -ErrorAction Ignore)) { 'strace is not installed: the faults are injected with strace -e inject' }
    else {
        # Measured: an injected fsync error reaches a program (dd's conv=fsync says so), else strace cannot trace or tamper here.
        $probe = Join-Path ([IO.Path]::GetTempPath()) "r25probe-$([guid]::NewGuid().ToString('n'))"
        $said = strace -f -qq -o /dev/null -e trace=fsync -e inject=fsync:error=EIO dd if=/dev/zero "of=$probe" count=1 conv=fsync 2>&1
        Remove-Item -LiteralPath $probe -ErrorAction Ignore
        if ("$said" -notmatch 'Input/output error') { "strace cannot inject an fsync error here: $said" }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r25d')
    # The images the reads and the restores and receives start from, made here with no fault.
    $script:base = Join-Path $root 'base'
    $f = New-FilledEmulator
    $null = Save-MemoryImage -Emulator $f.Emulator -Path "$base/full"
    $f.Emulator | Write-EmulatedMemory -Address $f.Mapping.Start -Length 8KB
    $null = Save-MemoryImage -Emulator $f.Emulator -Path "$base/inc" -Parent "$base/full"

    # $Script in a child pwsh under strace with $Strace: @{ Out = its output lines; Log = strace's lines } (and more: Invoke-StraceChild).
    function Invoke-Injected([string[]] $Strace, [string] $Script) { Invoke-StraceChild -Module $module -Strace $Strace -Script $Script }
    # The value of NAME=VALUE among a child's output lines.
    function Said([string[]] $Out, [string] $Name) { ($Out | Where-Object { $_ -like "$Name=*" } | Select-Object -First 1) -replace '^[^=]*=' }
    # Everything left in a folder, hidden partial folders included, as relative paths.
    function Get-Left([string] $Folder) { @(Get-ChildItem -Force -Recurse -LiteralPath $Folder -ErrorAction Ignore | ForEach-Object { $_.FullName.Substring($Folder.Length + 1) } | Sort-Object) }
    function New-Out { (New-Item -ItemType Directory (Join-Path $root "o-$([guid]::NewGuid().ToString('n'))")).FullName }
    # The commands of a child, each into $out: a full save, a restore, a receive, a migration and a chart over 'OLD'. With
    # -MigrationFolder the migration's -Destination is there (empty) first, so that its rounds are written, not the folder made.
    function Get-Commands([string] $out, [switch] $MigrationFolder) {
        $(if ($MigrationFolder) { "`$null = New-Item -ItemType Directory '$out/mig'`n" }) + @"
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 64KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
'save=' + (Id { Save-MemoryImage -Emulator `$e -Path '$out/img' })
'restore=' + (Id { Restore-MemoryImage -Path '$base/inc' -Destination '$out/rest' })
'receive=' + (Id { Get-ChildItem '$base/full' | Receive-MemoryImage -Path '$out/recv' -Confirm:`$false })
'migrate=' + (Id { Invoke-PreCopyMigration -Emulator `$e -Destination '$out/mig' -Bandwidth 1GB -MaxIterations 2 })
`$s = Watch-DirtyPage -Emulator `$e -Count 2 -Interval 0.01 -Method Hash
[IO.File]::WriteAllText('$out/chart.svg', 'OLD')
'chart=' + (Id { `$s | Export-DirtyPageChart -Path '$out/chart.svg' -WarningAction Ignore })
"@
    }
}

Describe 'Round 25: fsync errors of every file the module writes' -Tag 'Security', 'Round25Durable' -Skip:([bool]$StraceSkip) {
    It 'every fsync failing (EIO): each command fails with its write error and leaves nothing (the old chart kept)' {
        # Before: save, restore, receive, migrate and chart each said success (none), with every fsync answered EIO.
        $out = New-Out
        $r = Invoke-Injected -Strace '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO' -Script (Get-Commands $out -MigrationFolder)
        @($r.Log -match 'INJECTED').Count | Should -BeGreaterOrEqual 5 -Because ($r.Out -join "`n")
        foreach ($c in 'save', 'restore', 'receive', 'migrate') { Said $r.Out $c | Should -Be 'ImageWriteError' -Because "$c ($($r.Out -join "`n"))" }
        Said $r.Out 'chart' | Should -Be 'ChartWriteError'
        Get-Left $out | Should -Be @('chart.svg', 'mig') # the migration's folder was there before it
        Get-Content -Raw "$out/chart.svg" | Should -Be 'OLD'
    }

    It 'the fsync of the destination''s folder after the rename failing (ENOSPC): the result is removed again, the command fails' {
        # Before: each said success (none). The migration fails at its -Destination folder, synced into its parent when made.
        $out = New-Out
        $r = Invoke-Injected -Strace '-P', $out, '-e', 'trace=fsync', '-e', 'inject=fsync:error=ENOSPC' -Script (Get-Commands $out)
        foreach ($c in 'save', 'restore', 'receive', 'migrate') { Said $r.Out $c | Should -Be 'ImageWriteError' -Because "$c ($($r.Out -join "`n"))" }
        Said $r.Out 'chart' | Should -Be 'ChartWriteError'
        # The chart was renamed into place before its folder's fsync: the error says it may not survive a crash.
        Get-Left $out | Should -Be @('chart.svg')
        ($r.Log -match 'INJECTED' | ForEach-Object { ($_ -split '[<>]')[1] } | Select-Object -Unique) | Should -Be @($out)
    }

    It 'listing an existing empty destination failing (EIO): each command says ImageWriteError, the folder kept as it was' {
        # Before: System.IO.IOException (getdents' error, no SoftDirty id) from a save, a restore and a receive.
        $out = New-Out
        $null = New-Item -ItemType Directory "$out/img", "$out/rest", "$out/recv"
        $r = Invoke-Injected -Strace '-P', "$out/img", '-P', "$out/rest", '-P', "$out/recv", '-e', 'trace=getdents64', '-e', 'inject=getdents64:error=EIO' -Script @"
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 64KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
'save=' + (Id { Save-MemoryImage -Emulator `$e -Path '$out/img' })
'restore=' + (Id { Restore-MemoryImage -Path '$base/inc' -Destination '$out/rest' })
'receive=' + (Id { Get-ChildItem '$base/full' | Receive-MemoryImage -Path '$out/recv' -Confirm:`$false })
"@
        foreach ($c in 'save', 'restore', 'receive') { Said $r.Out $c | Should -Be 'ImageWriteError' -Because "$c ($($r.Out -join "`n"))" }
        Get-Left $out | Should -Be @('img', 'recv', 'rest')
    }

    It 'an increment whose folder''s fsync fails is removed; its parent stays valid and takes the next increment' {
        # Before: the increment said success (none).
        $out = New-Out
        $null = New-Item -ItemType Directory "$out/p", "$out/q"
        $r = Invoke-Injected -Strace '-P', "$out/q", '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO' -Script @"
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 64KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
`$null = Save-MemoryImage -Emulator `$e -Path '$out/p/full'
`$e | Write-EmulatedMemory -Address `$m.Start -Length 8KB
'inc=' + (Id { Save-MemoryImage -Emulator `$e -Path '$out/q/inc' -Parent '$out/p/full' })
'again=' + (Id { Save-MemoryImage -Emulator `$e -Path '$out/p/inc' -Parent '$out/p/full' })
"@
        Said $r.Out 'inc' | Should -Be 'ImageWriteError' -Because ($r.Out -join "`n")
        Said $r.Out 'again' | Should -Be 'none'
        Get-Left "$out/q" | Should -BeNullOrEmpty
        Test-MemoryImage "$out/p/inc" | Should -BeTrue
    }

    It 'a -ToSession migration whose round''s fsync fails on the destination fails there, no round left' {
        # Before: the migration said success. The destination is an out-of-process runspace, a child traced with -f.
        $out = New-Out
        $r = Invoke-Injected -Strace '-P', "$out/mig", '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO' -Script @"
`$rs = [runspacefactory]::CreateOutOfProcessRunspace(`$null); `$rs.Open()
`$s = [System.Management.Automation.Runspaces.PSSession]::Create(`$rs, 'Local', `$null)
`$null = Invoke-Command -Session `$s { Import-Module '$module' }
`$e = New-EmulatedProcess; `$m = `$e | Add-EmulatedMapping -Length 64KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
'migrate=' + (Id { `$e | Invoke-PreCopyMigration -ToSession `$s -Destination '$out/mig' -MaxIterations 2 -Confirm:`$false })
Remove-PSSession `$s
"@
        Said $r.Out 'migrate' | Should -Be 'ImageWriteError' -Because ($r.Out -join "`n")
        @(Get-Left "$out/mig" | Where-Object { $_ -like '*round*' }) | Should -BeNullOrEmpty
    }
}

Describe 'Round 25: the order of writes, fsyncs and renames' -Tag 'Security', 'Round25Durable' -Skip:([bool]$StraceSkip) {
    It 'each file is fsynced before its folder, the folder before the rename, the destination''s folder after it; a folder made is synced into its parent' {
        # Before: the migration's -Destination folder was made and never synced into its parent (the rounds renamed into it
        # were synced, the folder that holds them not). The rest held.
        $out = New-Out
        $r = Invoke-Injected -Strace '-e', 'trace=fsync,rename,renameat,renameat2,mkdir,mkdirat' -Script (Get-Commands $out)
        $steps = foreach ($l in $r.Log) {
            if ($l -match '^\d+\s+fsync\(\d+<([^>]*)>\)\s+= 0') { "fsync $($Matches[1])" }
            elseif ($l -match '^\d+\s+renameat2?\(\d+<([^>]*)>, "([^"]+)", \d+<([^>]*)>, "([^"]+)"[^)]*\)\s+= 0') { "rename $($Matches[1])/$($Matches[2]) $($Matches[3])/$($Matches[4])" }
            elseif ($l -match '^\d+\s+mkdirat\(\d+<([^>]*)>, "([^"]+)"[^)]*\)\s+= 0') { "mkdir $($Matches[1])/$($Matches[2])" }
        }
        $steps = @($steps | Where-Object { $_ -like "* $out*" })
        $renames = @($steps | Where-Object { $_ -like 'rename *' })
        $renames.Count | Should -Be 6 -Because ($steps -join "`n") # img, rest, recv, two rounds, the chart
        foreach ($rename in $renames) {
            $from, $to = ($rename -split ' ')[1, 2]
            $at = [array]::IndexOf($steps, $rename)
            $before = @($steps[0..($at - 1)])
            $folder = Split-Path $to
            # Every file written in what is renamed was fsynced before the rename, and so was the folder renamed.
            $made = @($before | Where-Object { $_ -like "fsync $from/*" })
            if ($from -notlike '*.tmp') {
                $made.Count | Should -BeGreaterOrEqual 2 -Because "$rename`n$($steps -join "`n")"
                $before | Should -Contain "fsync $from"
            } else { $before | Should -Contain "fsync $from" }
            # The folder that holds the result is fsynced after the rename, before the next rename or the end.
            $next = @($steps[($at + 1)..($steps.Count - 1)])
            $until = [array]::FindIndex([string[]] $next, [Predicate[string]] { param($s) $s -like 'rename *' })
            $window = @(if ($until -lt 0) { $next } elseif ($until -gt 0) { $next[0..($until - 1)] })
            $window | Should -Contain "fsync $folder" -Because "$rename`n$($steps -join "`n")"
        }
        # Every folder made outside a partial folder is synced into its parent after its mkdir.
        foreach ($mk in @($steps | Where-Object { $_ -like 'mkdir *' -and $_ -notlike '*.partial-*' })) {
            $at = [array]::IndexOf($steps, $mk)
            $steps[($at + 1)..($steps.Count - 1)] | Should -Contain "fsync $(Split-Path ($mk -replace '^mkdir '))" -Because "$mk`n$($steps -join "`n")"
        }
    }
}

Describe 'Round 25: I/O errors reading an image' -Tag 'Security', 'Round25Durable' -Skip:([bool]$StraceSkip) {
    It 'EIO reading <File>: Test-MemoryImage is false with ImageReadError, Get- and Restore-MemoryImage (files and -Emulator) say ImageReadError, nothing restored' -ForEach @(
        @{ File = 'inc/manifest.json' }, @{ File = 'full/index.bin' }, @{ File = 'inc/pages.bin' }
    ) {
        # Before: System.IO.IOException from Test and Get (no SoftDirty id), and ImageWriteError (a write error) from a restore
        # and from a receive of the image's files.
        $out = New-Out
        $r = Invoke-Injected -Strace '-P', "$base/$File", '-e', 'trace=pread64', '-e', 'inject=pread64:error=EIO' -Script @"
'test=' + (Id { `$t = Test-MemoryImage '$base/inc' -Detailed; 'valid:' + `$t.Valid + ':' + (`$t.Problems.Error -join ',') | Write-Host })
'get=' + (Id { Get-MemoryImage '$base/inc' })
'restore=' + (Id { Restore-MemoryImage -Path '$base/inc' -Destination '$out/rest' })
'receive=' + (Id { Get-ChildItem '$(Split-Path "$base/$File")' | Receive-MemoryImage -Path '$out/recv' -Confirm:`$false })
`$t = New-EmulatedProcess
'emulator=' + (Id { Restore-MemoryImage -Path '$base/inc' -Emulator `$t })
'mapped=' + @(Get-MemoryMapping -Emulator `$t).Count
"@
        @($r.Log -match 'INJECTED').Count | Should -BeGreaterThan 0 -Because ($r.Out -join "`n")
        Said $r.Out 'test' | Should -Be 'none' -Because ($r.Out -join "`n")
        ($r.Out | Where-Object { $_ -like 'valid:*' }) | Should -Be 'valid:False:ImageReadError'
        Said $r.Out 'get' | Should -Be $(if ($File -like '*manifest.json') { 'ImageReadError' } else { 'none' }) # Get-MemoryImage reads only manifests
        Said $r.Out 'restore' | Should -Be 'ImageReadError'
        Said $r.Out 'receive' | Should -Be 'ImageReadError' # reading the files it is given (before: ImageWriteError)
        Said $r.Out 'emulator' | Should -Be 'ImageReadError'
        Said $r.Out 'mapped' | Should -Be '0'
        Get-Left $out | Should -BeNullOrEmpty
        Test-MemoryImage "$base/inc" | Should -BeTrue
    }

    It 'EIO opening the image''s folder: ImageReadError from Test-, Get- and Restore-MemoryImage, not ImageIncomplete' {
        # Before: ImageIncomplete, "not a directory, so not a memory image".
        $out = New-Out
        $r = Invoke-Injected -Strace '-P', "$base/inc", '-e', 'trace=openat', '-e', 'inject=openat:error=EIO' -Script @"
'test=' + (Id { `$t = Test-MemoryImage '$base/inc' -Detailed; 'valid:' + `$t.Valid + ':' + (`$t.Problems.Error -join ',') | Write-Host })
'get=' + (Id { Get-MemoryImage '$base/inc' })
'restore=' + (Id { Restore-MemoryImage -Path '$base/inc' -Destination '$out/rest' })
"@
        ($r.Out | Where-Object { $_ -like 'valid:*' }) | Should -Be 'valid:False:ImageReadError' -Because ($r.Out -join "`n")
        Said $r.Out 'get' | Should -Be 'ImageReadError'
        Said $r.Out 'restore' | Should -Be 'ImageReadError'
        Get-Left $out | Should -BeNullOrEmpty
    }
}
