#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, "nothing lost, no one let in": destinations planted by someone else, failed restores, chains gone
# stale, edited manifests, hostile files, hostile parameters. Each case failed before its fix.

BeforeDiscovery { $IsRoot = (id -u) -eq '0' }

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = (id -u) -eq '0'
    $script:root = Join-Path $TestDrive 'sec'
    $null = New-Item -ItemType Directory $root
    function New-Emu([int] $Pages = 64) {
        $e = New-EmulatedProcess -Name victim
        $m = $e | Add-EmulatedMapping -Length ($Pages * 4KB)
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
        @{ Emulator = $e; Mapping = $m }
    }
    function Get-Memory($e, $m) { $b = [byte[]]::new($m.Size); $null = $e.ReadMemory($m.Start, $b); $b }
    function Same([byte[]] $a, [byte[]] $b) { [Linq.Enumerable]::SequenceEqual($a, $b) }
    # Rewrites a manifest through the engine's own format (the test kit) and recomputes its checksum: an edit by someone who knows the format.
    Add-Type -Path $env:SOFTDIRTY_TESTKIT
    function Edit-Manifest([string] $Image, [scriptblock] $Edit) {
        $m = [SoftDirty.TestKit.Images.ManifestFile]::Read($Image)
        & $Edit $m
        [SoftDirty.TestKit.Images.ManifestFile]::Write($Image, $m)
    }
    function ErrorId([scriptblock] $Command) {
        $err = $null
        try { $null = & $Command -ErrorVariable err -ErrorAction SilentlyContinue } catch { return $_.FullyQualifiedErrorId }
        if ($err) { $err[0].FullyQualifiedErrorId } else { 'none' }
    }
    $script:src = New-Emu
    $script:img = "$root/img"
    $null = Save-MemoryImage -Emulator $src.Emulator -Path $img -Confirm:$false
}

Describe 'Destinations someone else prepared' -Tag 'Workflows', 'Security' {
    It 'names a parent that is a loop of links or a file for what it is, not a missing directory' {
        # Issue 13, second round: both read 'no such image directory'.
        $loop = "$root/loop-$([guid]::NewGuid().ToString('N'))"
        $null = New-Item -ItemType SymbolicLink -Path $loop -Target $loop
        $err = $null
        $null = Save-MemoryImage -Emulator $src.Emulator -Path "$loop.child" -Parent $loop -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'ImageIncomplete,SoftDirty.Commands.SaveMemoryImageCommand'
        $err[0].Exception.Message | Should -BeLike '*loop of links*'
        $file = New-Item -ItemType File "$root/plain-$([guid]::NewGuid().ToString('N'))"
        "$((Test-MemoryImage $file.FullName -Detailed).Problems)" | Should -BeLike '*not a directory*'
    }

    It 'Restore-MemoryImage -Emulator refuses an emulated process with memory where the image maps (ImageExists), leaving it as it was' {
        # Issue 13, second round: the restore mapped over the process's own memory (MAP_FIXED) and lost it.
        $other = New-Emu
        $other.Mapping.Start | Should -Be $src.Mapping.Start -Because 'two new emulated processes map at the same address'
        $layout = { ($other.Emulator.ReadMappings($false) | ForEach-Object { '{0:x}-{1:x}' -f $_.Start, $_.End }) -join ' ' }
        $before = & $layout
        $bytes = Get-Memory $other.Emulator $other.Mapping
        ErrorId { Restore-MemoryImage $img -Emulator $other.Emulator -Confirm:$false } | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        & $layout | Should -Be $before
        Same (Get-Memory $other.Emulator $other.Mapping) $bytes | Should -BeTrue
    }
    It 'Restore-MemoryImage refuses a destination that is a link, and writes nothing through it' {
        $victim = New-Item -ItemType Directory "$root/victim1"
        $null = New-Item -ItemType SymbolicLink -Path "$root/link1" -Target $victim.FullName
        ErrorId { Restore-MemoryImage $img "$root/link1" } | Should -Be 'UnsafeDestination,SoftDirty.Commands.RestoreMemoryImageCommand'
        @(Get-ChildItem -Force $victim).Count | Should -Be 0
    }

    It 'Restore-MemoryImage refuses a directory with planted files (a link named mappings.json, a 0666 output file) and leaves them alone' {
        $d = New-Item -ItemType Directory "$root/planted"
        $precious = "$root/precious.txt"; 'keep me' | Set-Content $precious
        $null = New-Item -ItemType SymbolicLink -Path "$d/mappings.json" -Target $precious
        $name = '{0:x12}-{1:x12}.bin' -f $src.Mapping.Start, $src.Mapping.End
        $null = New-Item -ItemType File "$d/$name"; chmod 666 "$d/$name"
        ErrorId { Restore-MemoryImage $img $d } | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        Get-Content $precious | Should -Be 'keep me'
        (Get-Item "$d/$name").Length | Should -Be 0
    }

    It 'Save-MemoryImage refuses a target directory that is a link, and leaves the linked directory and its mode alone' {
        $victim = New-Item -ItemType Directory "$root/victim2"; chmod 755 $victim
        $null = New-Item -ItemType SymbolicLink -Path "$root/link2" -Target $victim.FullName
        ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path "$root/link2" -Confirm:$false } | Should -Be 'UnsafeDestination,SoftDirty.Commands.SaveMemoryImageCommand'
        [int](Get-Item $victim).UnixFileMode | Should -Be 493   # 0755, not chmodded to 0700
        @(Get-ChildItem -Force $victim).Count | Should -Be 0
    }

    It 'Save-MemoryImage and Restore-MemoryImage refuse a destination in a folder every user may write to without the sticky bit' {
        $open = New-Item -ItemType Directory "$root/open-$([guid]::NewGuid().ToString('n'))"; chmod 0777 $open
        ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path "$open/img" -Confirm:$false } | Should -Be 'UnsafeDestination,SoftDirty.Commands.SaveMemoryImageCommand'
        ErrorId { Restore-MemoryImage $img "$open/flat" } | Should -Be 'UnsafeDestination,SoftDirty.Commands.RestoreMemoryImageCommand'
        @(Get-ChildItem -Force $open).Count | Should -Be 0
        # With the sticky bit (as /tmp has) only the owner may rename what it made there: allowed.
        chmod 1777 $open
        Save-MemoryImage -Emulator $src.Emulator -Path "$open/img" -Confirm:$false | Should -Not -BeNullOrEmpty
        Test-MemoryImage "$open/img" | Should -BeTrue
    }

    It 'Save-MemoryImage and Restore-MemoryImage refuse an empty directory of another user' -Skip:(-not $IsRoot) {
        # Only root can give a directory away (chown); as another user the case cannot be built.
        $d = New-Item -ItemType Directory "$root/foreign"; chown 65534 $d
        ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path $d -Confirm:$false } | Should -Be 'UnsafeDestination,SoftDirty.Commands.SaveMemoryImageCommand'
        ErrorId { Restore-MemoryImage $img $d } | Should -Be 'UnsafeDestination,SoftDirty.Commands.RestoreMemoryImageCommand'
        @(Get-ChildItem -Force $d).Count | Should -Be 0
    }

    It 'Invoke-PreCopyMigration -Destination onto a file is ImageExists, and a migration that fails leaves no folder' {
        $file = New-Item -ItemType File "$root/afile"
        $e = New-Emu
        ErrorId { Invoke-PreCopyMigration -Emulator $e.Emulator -Bandwidth 1GB -Destination $file -Confirm:$false } | Should -Be 'ImageExists,SoftDirty.Commands.InvokePreCopyMigrationCommand'
        ErrorId { Invoke-PreCopyMigration -Emulator $e.Emulator -Bandwidth 1GB -Destination "$root/mig" -Mapping 'no-such-*' -Confirm:$false } | Should -Be 'MappingNotFound,SoftDirty.Commands.InvokePreCopyMigrationCommand'
        Test-Path "$root/mig" | Should -BeFalse
    }
}

Describe 'Failed restores and saves leave things as they were' -Tag 'Workflows', 'Security' {
    BeforeAll {
        $script:bad = "$root/bad"
        Copy-Item $img $bad -Recurse
        $fs = [IO.File]::Open("$bad/pages.bin", 'Open', 'ReadWrite'); $fs.Position = 4096 * 40 + 9; $b = $fs.ReadByte(); $fs.Position--; $fs.WriteByte($b -bxor 1); $fs.Dispose()
    }

    It 'a corrupt chain restored into an empty directory leaves it empty, with no partial folder beside it' {
        $d = New-Item -ItemType Directory "$root/r-empty"
        ErrorId { Restore-MemoryImage $bad $d } | Should -Be 'ImageCorrupt,SoftDirty.Commands.RestoreMemoryImageCommand'
        @(Get-ChildItem -Force $d).Count | Should -Be 0
        ErrorId { Restore-MemoryImage $bad "$root/r-new" } | Should -Be 'ImageCorrupt,SoftDirty.Commands.RestoreMemoryImageCommand'
        Test-Path "$root/r-new" | Should -BeFalse
        @(Get-ChildItem -Force $root -Filter '.r-*.partial-*').Count | Should -Be 0
    }

    It 'a finished restore cannot be overwritten by another (Save and Restore refuse alike)' {
        $null = New-Item -ItemType Directory "$root/r-good"; chmod 755 "$root/r-good"   # an empty directory of the caller is fine
        $null = Restore-MemoryImage $img "$root/r-good"
        [int](Get-Item "$root/r-good").UnixFileMode | Should -Be 448   # the private folder took its place: 0700
        Test-Path "$root/r-good/mappings.json" | Should -BeTrue
        $before = Get-ChildItem "$root/r-good" | ForEach-Object { (Get-FileHash $_).Hash }
        ErrorId { Restore-MemoryImage $bad "$root/r-good" } | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        Get-ChildItem "$root/r-good" | ForEach-Object { (Get-FileHash $_).Hash } | Should -Be $before
    }

    It 'a corrupt chain restored into an emulated process maps and writes nothing' {
        $copy = New-EmulatedProcess -Name copy
        $before = @($copy.ReadMappings($false)).Count
        ErrorId { Restore-MemoryImage $bad -Emulator $copy -Confirm:$false } | Should -Be 'ImageCorrupt,SoftDirty.Commands.RestoreMemoryImageCommand'
        @($copy.ReadMappings($false)).Count | Should -Be $before
    }

    It 'a save whose selection matches nothing fails before creating its directory' {
        ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path "$root/nothing" -Mapping 'no-such-*' -Confirm:$false } | Should -Be 'MappingNotFound,SoftDirty.Commands.SaveMemoryImageCommand'
        Test-Path "$root/nothing" | Should -BeFalse
    }

    It 'another user''s image reads as PermissionDenied, not as an interrupted save' -Skip:$IsRoot {
        # chmod 000 shuts out everyone but root: as root the case cannot be built.
        Copy-Item $img "$root/locked" -Recurse; chmod 000 "$root/locked"
        try {
            ErrorId { Get-MemoryImage "$root/locked" } | Should -Be 'PermissionDenied,SoftDirty.Commands.GetMemoryImageCommand'
            (Test-MemoryImage "$root/locked" -Detailed).Problems[0].Error | Should -Be 'PermissionDenied'
        } finally { chmod 700 "$root/locked" }
    }
}

Describe 'Chains never go silently stale' -Tag 'Workflows', 'Security' {
    It 'an increment after Clear-SoftDirty, Watch-DirtyPage or another chain compares contents, warns, and restores the memory of that moment' {
        foreach ($reset in { param($e) Clear-SoftDirty -Emulator $e -Confirm:$false },
                           { param($e) $null = Watch-DirtyPage -Emulator $e -Count 1 -Interval 0.01 -Method SoftDirty },
                           { param($e) $null = Save-MemoryImage -Emulator $e -Path "$root/other-$(New-Guid)" -Method SoftDirty -Confirm:$false }) {
            $v = New-Emu 256
            $e = $v.Emulator; $m = $v.Mapping
            $dir = "$root/stale-$(New-Guid)"
            $null = Save-MemoryImage -Emulator $e -Path "$dir/0" -Method SoftDirty -Confirm:$false
            $e | Write-EmulatedMemory -Address ($m.Start + 10 * 4KB) -Length (90 * 4KB)
            & $reset $e
            $w = $null
            $inc = Save-MemoryImage -Emulator $e -Path "$dir/1" -Parent "$dir/0" -Method SoftDirty -Confirm:$false -WarningVariable w -WarningAction SilentlyContinue
            "$w" | Should -BeLike '*cleared since the parent*comparing every page*' -Because "reset: $reset"
            $inc.DataPages | Should -BeGreaterOrEqual 90
            $copy = New-EmulatedProcess -Name copy
            $null = Restore-MemoryImage "$dir/1" -Emulator $copy -Confirm:$false
            Same (Get-Memory $e $m) (Get-Memory $copy $m) | Should -BeTrue -Because "reset: $reset"
        }
    }

    It 'a clear the module cannot see (another tool writing clear_refs) needs -Verify, which compares contents' {
        $v = New-Emu 128
        $e = $v.Emulator; $m = $v.Mapping
        $dir = "$root/unseen"
        $null = Save-MemoryImage -Emulator $e -Path "$dir/0" -Method SoftDirty -Confirm:$false
        $e | Write-EmulatedMemory -Address ($m.Start + 4KB) -Length (20 * 4KB)
        $null = $e.WriteClearRefs([Text.Encoding]::ASCII.GetBytes("4`n"))   # behind the module's back
        $trusting = Save-MemoryImage -Emulator $e -Path "$dir/1" -Parent "$dir/0" -Method SoftDirty -Confirm:$false
        $trusting.DataPages | Should -Be 0 -Because 'the documented limit: soft-dirty cleared by another tool is invisible'
        $verified = Save-MemoryImage -Emulator $e -Path "$dir/2" -Parent "$dir/0" -Method SoftDirty -Verify -Confirm:$false
        $verified.DataPages | Should -BeGreaterOrEqual 20
        $copy = New-EmulatedProcess -Name copy
        $null = Restore-MemoryImage "$dir/2" -Emulator $copy -Confirm:$false
        Same (Get-Memory $e $m) (Get-Memory $copy $m) | Should -BeTrue
    }

    It 'refuses a parent image of another process, and Test-MemoryImage calls such a chain invalid' {
        $a = New-Emu; $b = New-Emu
        $null = Save-MemoryImage -Emulator $a.Emulator -Path "$root/pa" -Confirm:$false
        ErrorId { Save-MemoryImage -Emulator $b.Emulator -Path "$root/pb" -Parent "$root/pa" -Confirm:$false } | Should -Be 'ImageParentMismatch,SoftDirty.Commands.SaveMemoryImageCommand'
        Test-Path "$root/pb" | Should -BeFalse
        # The same chain built by editing: an increment of b re-pointed at a's image (checksums recomputed).
        $null = Save-MemoryImage -Emulator $b.Emulator -Path "$root/x/b0" -Confirm:$false
        $null = Save-MemoryImage -Emulator $b.Emulator -Path "$root/x/b1" -Parent "$root/x/b0" -Confirm:$false
        Copy-Item "$root/pa" "$root/x/a0" -Recurse
        $a0 = Get-MemoryImage "$root/x/a0"
        Edit-Manifest "$root/x/b1" { param($m) $m.Parent.Path = '../a0'; $m.Parent.Id = $a0.Id; $m.Parent.Checksum = [SoftDirty.TestKit.Images.ManifestFile]::Checksum("$root/x/a0") }
        $r = Test-MemoryImage "$root/x/b1" -Detailed
        $r.Valid | Should -BeFalse
        $r.Problems[0].Message | Should -BeLike '*image of another process*'
    }
}

Describe 'Edited and hostile image files' -Tag 'Workflows', 'Security' {
    It 'Test-MemoryImage catches <Name>, and Get/Restore give ImageCorrupt' -ForEach @(
        @{ Name = 'a mapping shifted by a page (no checksum update)'; Raw = $true; Edit = { param($j) $j -replace '"start": (\d+)', { '"start": ' + ([uint64]$_.Groups[1].Value + 4096) } } }
        @{ Name = 'a parent link or count edited by hand'; Raw = $true; Edit = { param($j) $j -replace '"dataPages": (\d+)', '"dataPages": 1' } }
        @{ Name = 'a mapping shifted by a page'; Index = $true; Edit = { param($m) $m.Mappings[0].Start += 4096 } }
        @{ Name = 'a mapping deleted'; Index = $true; Edit = { param($m) $m.Mappings.RemoveAt(0) } }
        @{ Name = 'start = end = 2^64 - 4096'; Edit = { param($m) $m.Mappings[0].Start = [uint64]::MaxValue - 4095; $m.Mappings[0].End = [uint64]::MaxValue - 4095 } }
        @{ Name = 'end before start'; Edit = { param($m) $m.Mappings[0].End = $m.Mappings[0].Start - 4096 } }
        @{ Name = '"mappings": null'; Edit = { param($m) $m.Mappings = $null } }
        @{ Name = 'a null mapping path'; Raw = $true; Edit = { param($j) $j -replace '"permissions": "([^"]*)",(\s*)"path": "[^"]*"', '"permissions": "$1",$2"path": null' } }
        @{ Name = '"files": null'; Edit = { param($m) $m.Files = $null } }
        @{ Name = 'a page size of 1 MiB'; Edit = { param($m) $m.PageSize = 1MB } }
        @{ Name = 'a page size of 1 GiB'; Edit = { param($m) $m.PageSize = 1GB } }
        @{ Name = 'a depth without a parent'; Edit = { param($m) $m.Depth = 3 } }
    ) {
        $d = "$root/edit-$(New-Guid)"
        Copy-Item $img $d -Recurse
        if ($Raw) { (& $Edit (Get-Content "$d/manifest.json" -Raw)) | Set-Content "$d/manifest.json" } else { Edit-Manifest $d $Edit }
        Test-MemoryImage $d | Should -BeFalse
        (Test-MemoryImage $d -Detailed).Problems[0].Error | Should -Be 'ImageCorrupt'
        # Get-MemoryImage reads manifests only: what only the index shows (records outside every mapping) is Test's and Restore's to find.
        if (-not $Index) { ErrorId { Get-MemoryImage $d } | Should -Be 'ImageCorrupt,SoftDirty.Commands.GetMemoryImageCommand' }
        ErrorId { Restore-MemoryImage $d "$d-restored" } | Should -Be 'ImageCorrupt,SoftDirty.Commands.RestoreMemoryImageCommand'
        Test-Path "$d-restored" | Should -BeFalse
    }

    It 'manifest.json as a link to /dev/zero, a FIFO or a directory is ImageCorrupt at once (no hang, no OutOfMemory)' {
        foreach ($kind in 'zero', 'fifo', 'dir') {
            $d = New-Item -ItemType Directory "$root/hostile-$kind"
            switch ($kind) {
                'zero' { $null = New-Item -ItemType SymbolicLink -Path "$d/manifest.json" -Target /dev/zero }
                'fifo' { mkfifo "$d/manifest.json" }
                'dir' { $null = New-Item -ItemType Directory "$d/manifest.json" }
            }
            # In a job with a deadline: before the fix the FIFO hung Get-MemoryImage for good.
            $job = Start-ThreadJob { param($m, $p) Import-Module $m; try { Get-MemoryImage $p -ErrorAction Stop } catch { $_.FullyQualifiedErrorId } } -ArgumentList $env:SOFTDIRTY_MODULE, $d.FullName
            $done = Wait-Job $job -Timeout 60
            $done | Should -Not -BeNullOrEmpty -Because "Get-MemoryImage of a $kind manifest must return"
            Receive-Job $job | Should -Be 'ImageCorrupt,SoftDirty.Commands.GetMemoryImageCommand' -Because $kind
            Remove-Job $job -Force
        }
    }
    # An image missing pages (a save across a munmap): tests/SoftDirty.Engine.Tests/Tracking/ImageSafetyTests.cs.
}

Describe 'Hostile parameter values' -Tag 'Workflows', 'Security' {
    It 'selections that match nothing or wrap are MappingNotFound or InvalidArgument, as in Get-PageMap' {
        $e = $src.Emulator
        ErrorId { Watch-DirtyPage -Emulator $e -Mapping 'no-such-*' -Count 1 } | Should -Be 'MappingNotFound,SoftDirty.Commands.WatchDirtyPageCommand'
        ErrorId { Watch-DirtyPage -Emulator $e -Address 0x1000 -Length ([uint64]::MaxValue) -Count 1 } | Should -Be 'InvalidArgument,SoftDirty.Commands.WatchDirtyPageCommand'
        ErrorId { Watch-DirtyPage -Emulator $e -Address 0x1000 -Length 4096 -Count 1 } | Should -Be 'InvalidArgument,SoftDirty.Commands.WatchDirtyPageCommand'
        ErrorId { Invoke-PreCopyMigration -Emulator $e -Bandwidth 1GB -Mapping 'no-such-*' -Confirm:$false } | Should -Be 'MappingNotFound,SoftDirty.Commands.InvokePreCopyMigrationCommand'
        ErrorId { Search-PageMap -Emulator $e -Address 0x1000 -Length ([uint64]::MaxValue) } | Should -Be 'InvalidArgument,SoftDirty.Commands.SearchPageMapCommand'
    }

    It 'workload rates that are negative or absurd are refused at once' {
        $e = $src.Emulator; $m = $src.Mapping
        foreach ($rate in -1, 1e15, 1e18, [double]::NaN, [double]::PositiveInfinity) {
            $w = @{ Address = $m.Start; Length = $m.Size; AccessesPerSecond = $rate }
            ErrorId { Watch-DirtyPage -Emulator $e -Workload $w -Count 1 } | Should -Be 'InvalidArgument,SoftDirty.Commands.WatchDirtyPageCommand' -Because "rate $rate"
            ErrorId { Invoke-PreCopyMigration -Emulator $e -Workload $w -Bandwidth 1GB -Confirm:$false } | Should -Be 'InvalidArgument,SoftDirty.Commands.InvokePreCopyMigrationCommand' -Because "rate $rate"
        }
    }

    It 'the emulator refuses a file offset whose mapping would end past MAX_LFS_FILESIZE (EOVERFLOW), as mm/mmap.c does' {
        $e = New-EmulatedProcess -Name files
        ErrorId { $e | Add-EmulatedMapping -Length 4KB -Path /data/f -Offset 0x7ffffffffffff000 } | Should -Be 'InvalidArgument,SoftDirty.Commands.AddEmulatedMappingCommand'
        ($e | Add-EmulatedMapping -Length 4KB -Path /data/f -Offset 0x7fffffffffffe000).Offset | Should -Be 0x7fffffffffffe000
    }

    It 'a -TracePath that is a directory or unreadable says so (not "No trace file")' {
        $e = New-EmulatedProcess -Name trace
        ErrorId { Invoke-EmulatedWorkload -Emulator $e -TracePath $root } | Should -Be 'InvalidArgument,SoftDirty.Commands.InvokeEmulatedWorkloadCommand'
        if (-not $IsRoot) {
            $f = "$root/trace.csv"; 'write,0x1000' | Set-Content $f; chmod 000 $f
            ErrorId { Invoke-EmulatedWorkload -Emulator $e -TracePath $f } | Should -Be 'PermissionDenied,SoftDirty.Commands.InvokeEmulatedWorkloadCommand'
        }
    }

    It 'kthreadd (pid 2) is a kernel thread with no user memory, not a process that exited' {
        if (-not (Test-Path /proc/2/stat) -or (Get-Content /proc/2/comm) -ne 'kthreadd') { Set-ItResult -Skipped -Because 'pid 2 is not kthreadd here (a pid namespace)'; return }
        ErrorId { Save-MemoryImage -Id 2 -Path "$root/k2" -Method Hash } | Should -Be 'InvalidArgument,SoftDirty.Commands.SaveMemoryImageCommand'
        ErrorId { Watch-DirtyPage -Id 2 -Count 1 -Method Hash } | Should -Be 'InvalidArgument,SoftDirty.Commands.WatchDirtyPageCommand'
        Test-Path "$root/k2" | Should -BeFalse
    }

    It 'every image and workflow cmdlet, given hostile values, answers with SoftDirty or parameter error ids, never System.*' {
        $e = $src.Emulator; $m = $src.Mapping
        $dir = "$root/walk"
        $cases = @(
            { Save-MemoryImage -Emulator $e -Path "$dir/a" -Mapping @($null) -Confirm:$false }
            { Save-MemoryImage -Emulator $e -Path "$dir/b" -Mapping '' -Confirm:$false }
            { Save-MemoryImage -Emulator $e -Path "$dir/c" -Parent "$dir/none" -Confirm:$false }
            { Save-MemoryImage -Emulator $e -Path "$dir/d" -Parent '/dev/null' -Confirm:$false }
            { Save-MemoryImage -Emulator $e -Path '/dev/null' -Confirm:$false }
            { Save-MemoryImage -Emulator $e -Path '/proc/self/x' -Confirm:$false }
            { Save-MemoryImage -Id -1 -Path "$dir/e" }
            { Save-MemoryImage -Id ([int]::MaxValue) -Path "$dir/f" }
            { Save-MemoryImage -Id $PID -Path "$dir/g" -Freeze }
            { Get-MemoryImage '/dev/zero' }
            { Get-MemoryImage '/' }
            { Get-MemoryImage '' }
            { Get-MemoryImage "$dir/none" }
            { Test-MemoryImage '/dev/null' }
            { Test-MemoryImage '/proc' -Detailed }
            { Restore-MemoryImage "$dir/none" "$dir/r1" }
            { Restore-MemoryImage $img '/dev/null' }
            { Restore-MemoryImage $img '/proc/self' }
            { Restore-MemoryImage $img "$dir/none/deeper/r" }
            { Restore-MemoryImage '/dev/zero' -Emulator $e -Confirm:$false }
            { Clear-SoftDirty -Id -5 -Confirm:$false }
            # Round 34: pid 2 only where it is kthreadd; in a pid namespace it may be a process of ours, whose bits a clear would take.
            if ((Get-Content /proc/2/comm -ErrorAction Ignore) -eq 'kthreadd') { { Clear-SoftDirty -Id 2 -Confirm:$false } }
            { Watch-DirtyPage -Emulator $e -Mapping @($null) -Count 1 }
            { Watch-DirtyPage -Emulator $e -Address ([uint64]::MaxValue) -Count 1 }
            { Watch-DirtyPage -Emulator $e -Address 0 -Length 0 -Count 1 }
            { Watch-DirtyPage -Emulator $e -Interval -1 -Count 1 }
            { Watch-DirtyPage -Emulator $e -Workload @{ Address = $m.Start; Length = 0 } -Count 1 }
            { Watch-DirtyPage -Emulator $e -Workload @{ Address = [uint64]::MaxValue; Length = 8192 } -Count 1 }
            { Watch-DirtyPage -Emulator $e -Workload @{ WriteRatio = 7 } -Count 1 }
            { Watch-DirtyPage -Id 0 -Count 1 }
            { Invoke-PreCopyMigration -Emulator $e -Bandwidth 0 -Confirm:$false }
            { Invoke-PreCopyMigration -Emulator $e -Bandwidth 1GB -Destination '/dev/null' -Confirm:$false }
            { Invoke-PreCopyMigration -Emulator $e -Bandwidth 1GB -Destination '/proc/self/mig' -Confirm:$false }
            { Invoke-PreCopyMigration -Emulator $e -Bandwidth 1GB -Mapping @($null) -Confirm:$false }
            { Invoke-EmulatedWorkload -Emulator $e -Address ([uint64]::MaxValue) -Length 8192 }
            { Invoke-EmulatedWorkload -Emulator $e -Address $m.Start -Length 0 }
            { Invoke-EmulatedWorkload -Emulator $e -TracePath '/dev/null' }
            { Invoke-EmulatedWorkload -Emulator $e -TracePath "$dir/none.csv" }
        )
        $null = New-Item -ItemType Directory $dir
        $bad = foreach ($c in $cases) {
            $id = ErrorId $c
            if ($id -like 'System.*' -or $id -like '*Exception*') { "$c -> $id" }
        }
        $bad | Should -BeNullOrEmpty
    }
}

Describe '-Freeze of a real process' -Tag 'Workflows', 'Security' {
    BeforeAll { $script:t = Start-WfTarget; $null = New-WfRegion $t 64 }
    AfterAll { Stop-WfTarget $t }

    It 'leaves a process that was stopped before stopped, and resumes one it stopped' {
        kill -STOP $t.Id
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(5)
            while ((Get-ProcessState $t.Id) -ne 'T' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 5 }
            $null = Save-MemoryImage -Id $t.Id -Path "$root/stopped" -Method Hash -Freeze
            Start-Sleep -Milliseconds 100
            Get-ProcessState $t.Id | Should -Be 'T'
        } finally { kill -CONT $t.Id }
        $null = Save-MemoryImage -Id $t.Id -Path "$root/running" -Method Hash -Freeze
        $null = Send-WfTarget $t 'cold'   # answers: it runs
        Get-ProcessState $t.Id | Should -Not -BeIn 't', 'T'
        Test-MemoryImage "$root/running" | Should -BeTrue
    }
}
