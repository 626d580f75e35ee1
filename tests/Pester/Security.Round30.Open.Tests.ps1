#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, thirtieth attack round (open): the defects earlier rounds left open, each shown with strace, which makes only the
# system call at issue fail.
# Found: the check that refuses a destination inside a memory image's folder read a failed lstat of the image's files (EIO of a
# failing disk, out of descriptors or memory) as "not an image", so a save was written inside an image's folder; likewise
# Export-DirtyPageChart's check that refuses to write over an image's file. An I/O error reading a workload trace
# (Invoke-EmulatedWorkload -TracePath) was InvalidArgument, as if the trace were malformed. A migration over a link ignored a
# failed removal of its staging folder (0700, the process's memory as round images): no word of the folder it left. A process's
# guard regions (MADV_GUARD_INSTALL: any access faults) were left out of its image as pages that hold nothing, and a restore
# made them readable zeros; the image now records them with their mapping and a restore into an emulated process installs
# them again (refused on a profile without them). Every case below failed before.

BeforeDiscovery {
    # Guard regions of a real process, seen in pagemap (PAGE_IS_GUARD, Linux 6.15+): probed with imgtarget.
    $R30OpenGuardSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Test-Path -LiteralPath (Join-Path $PSScriptRoot '../native/bin/imgtarget'))) { 'tests/native/bin/imgtarget is not built (build.ps1 Native)' }
    else {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/imgtarget')
        try {
            $at = ($probe.Send('map 4') -split ' ')[0]
            $reply = $probe.TrySend("guard $at 1 1")
            if ($reply -ne 'OK') { "guard regions (MADV_GUARD_INSTALL, Linux 6.13) are not available here ($reply)" }
            elseif (-not ((Get-SoftDirtySupport).PagemapScan)) { 'no PAGEMAP_SCAN here: the guard regions of a real process are found with its PAGE_IS_GUARD' }
            elseif (-not (@(Get-PageMap -Id $probe.Id -Address ([Convert]::ToUInt64($at, 16) + $probe.PageSize) -Length $probe.PageSize)[0].Guard)) { "this kernel ($(uname -r)) does not show guard regions in pagemap (before 6.15)" }
        } finally { Stop-TestTarget $probe }
    }
    $R30OpenPrlimitSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Get-Command prlimit -CommandType Application -ErrorAction Ignore)) { 'prlimit (util-linux) is not installed: the open-file limit is set with it' }
    $R30OpenStraceSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Get-Command strace -CommandType Application -ErrorAction Ignore)) { 'strace is not installed: the failed system call is injected with strace' }
    else {
        # Measured: strace can trace a child here (not where ptrace is forbidden, as in some containers).
        $said = strace -f -qq -o /dev/null -e trace=openat true 2>&1
        if ($LASTEXITCODE -ne 0) { "strace cannot trace here: $said" }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:R30OpenModule = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:R30OpenRoot = (New-Item -ItemType Directory (Join-Path $TestDrive 'r30open')).FullName
    $script:R30OpenChild = "$R30OpenRoot/child.ps1"
    @'
param($Module, $Case, $Path)
$ErrorActionPreference = 'Stop'
$PSStyle.OutputRendering = 'PlainText'
Import-Module $Module
function New-Source { $e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 64KB; $e | Write-EmulatedMemory -Address $m.Start -Length 64KB; $e }
try {
    switch ($Case) {
        'save' { $null = Save-MemoryImage -Emulator (New-Source) -Path $Path }
        'chart' {
            $e = New-Source
            $samples = @($e | Watch-DirtyPage -Count 2 -Interval 0.05)
            $null = $samples | Export-DirtyPageChart -Path $Path -Confirm:$false
        }
        'trace' { $null = New-Source | Invoke-EmulatedWorkload -TracePath $Path }
        'migrate' {
            $rs = [runspacefactory]::CreateOutOfProcessRunspace($null); $rs.Open()
            $s = [System.Management.Automation.Runspaces.PSSession]::Create($rs, 'Local', $null)
            $null = Invoke-Command -Session $s { Import-Module $using:Module }
            $out = @(New-Source | Invoke-PreCopyMigration -ToSession $s -Destination $Path -MaxIterations 2 -StopThreshold 0 -WarningVariable warned -WarningAction SilentlyContinue)
            foreach ($w in $warned) { "warning=$($w.Message)" }
            "final=$($out[-1].FinalImage)"
            $rs.Dispose()
        }
    }
    'result=ok'
} catch { "result=$($_.FullyQualifiedErrorId -replace ',.*$')|$($_.Exception.Message -replace '\r?\n', ' ')" }
'@ | Set-Content -LiteralPath $R30OpenChild
    # The child's output lines for $Case, under strace with @Strace (its filter and injection; none: no strace).
    function script:Invoke-R30OpenChild([string] $Case, [string] $Path, [string[]] $Strace) {
        $pwsh = Get-PwshCommandLine # one path, or dotnet and pwsh.dll (an array either way)
        $run = @(if ($Strace) { @('strace', '-f', '-qq', '-o', '/dev/null', '--seccomp-bpf') + $Strace + $pwsh } else { $pwsh })
        $out = @(& $run[0] @($run | Select-Object -Skip 1) -NoProfile -NonInteractive -File $R30OpenChild -Module $R30OpenModule -Case $Case -Path $Path 2>&1 | ForEach-Object { "$_" })
        if (-not ($out | Where-Object { $_ -like 'result=*' })) { throw "the child printed no result: $($out -join "`n")" }
        $out
    }
    function script:Get-R30OpenResult([string[]] $Lines) { ($Lines | Where-Object { $_ -like 'result=*' } | Select-Object -First 1) -replace '^result=' }
}

Describe 'Round 30: a failed lstat of an image''s files is no answer about the folder' -Tag 'Security', 'Round30Open' -Skip:([bool]$R30OpenStraceSkip) {
    BeforeAll {
        $script:R30OpenImage = "$R30OpenRoot/image"
        $e = New-FilledEmulator 8
        $null = Save-MemoryImage -Emulator $e.Emulator -Path $R30OpenImage
        $script:R30OpenImageFiles = @(Get-ChildItem -Force -Name -LiteralPath $R30OpenImage)
    }

    It 'a save inside an image is refused with ImageExists (the setting is what the case needs)' {
        $said = Get-R30OpenResult (Invoke-R30OpenChild save "$R30OpenImage/inner")
        $said | Should -BeLike 'ImageExists|*lies inside the memory image*'
        Test-Path -LiteralPath "$R30OpenImage/inner" | Should -BeFalse
    }

    # Before: the lstat that failed said "not an image", and the save was written in the image's folder.
    It 'a save inside an image whose <File> lstat meets <Errno> fails with <ErrorId> and writes nothing there' -ForEach @(
        @{ File = 'manifest.json'; Errno = 'EIO'; ErrorId = 'ImageReadError' }
        @{ File = 'pages.bin'; Errno = 'EIO'; ErrorId = 'ImageReadError' }
        @{ File = 'manifest.json'; Errno = 'EMFILE'; ErrorId = 'ResourceLimit' }
        @{ File = 'index.bin'; Errno = 'ENOMEM'; ErrorId = 'ResourceLimit' }
    ) {
        $inner = "$R30OpenImage/inner-$Errno-$File"
        $said = Get-R30OpenResult (Invoke-R30OpenChild save $inner @('-e', 'trace=statx', '-e', "inject=statx:error=$Errno", '-P', "$R30OpenImage/$File"))
        $said | Should -BeLike "$ErrorId|*$R30OpenImage/$File*" -Because 'the failure is its own error, naming the file'
        Test-Path -LiteralPath $inner | Should -BeFalse -Because "nothing is written inside the image ($said)"
        @(Get-ChildItem -Force -Name -LiteralPath $R30OpenImage) | Should -Be $R30OpenImageFiles
    }

    # Before: the chart's check of the folder's manifest.json read EIO as "no image here" and the chart replaced pages.bin.
    It 'a chart over an image''s pages.bin whose manifest.json lstat meets EIO fails with ImageReadError and leaves the file' {
        $before = (Get-FileHash -LiteralPath "$R30OpenImage/pages.bin").Hash
        $said = Get-R30OpenResult (Invoke-R30OpenChild chart "$R30OpenImage/pages.bin" @('-e', 'trace=statx,newfstatat', '-e', 'inject=statx:error=EIO', '-P', 'manifest.json'))
        $said | Should -BeLike 'ImageReadError|*manifest.json*'
        (Get-FileHash -LiteralPath "$R30OpenImage/pages.bin").Hash | Should -Be $before
        Test-MemoryImage -Path $R30OpenImage | Should -BeTrue
    }
}

Describe 'Round 30: an image whose files lie past PATH_MAX' -Tag 'Security', 'Round30Open' {
    # Before: the lstat of its files by whole path failed (ENAMETOOLONG) and said "not an image": a save went inside it (the
    # module writes and reads such paths one piece at a time, round 8).
    It 'a save inside it is refused with ImageExists, as anywhere else' {
        $deep = $top = (New-Item -ItemType Directory (Join-Path $R30OpenRoot 'deep')).FullName
        try {
            for ($i = 0; $i -lt 21; $i++) { $deep = Join-Path $deep ('d' * 200) }
            $image = Join-Path $deep 'image'
            "$image/manifest.json".Length | Should -BeGreaterThan 4096
            $f = New-FilledEmulator 4
            $null = Save-MemoryImage -Emulator $f.Emulator -Path $image -ErrorAction Stop
            $null = Save-MemoryImage -Emulator $f.Emulator -Path "$image/inner" -ErrorAction SilentlyContinue -ErrorVariable said
            @($said).Count | Should -Be 1
            $said[0].FullyQualifiedErrorId | Should -BeLike 'ImageExists,*'
            $said[0].Exception.Message | Should -BeLike '*lies inside the memory image*'
            # (Test-Path would open the whole path: ENAMETOOLONG; find walks the folders with openat.)
            @(find $top -name inner) | Should -BeNullOrEmpty
        } finally { rm -rf -- $top } # (past PATH_MAX: rm walks with openat)
    }
}

Describe 'Round 30: an I/O error reading a workload trace' -Tag 'Security', 'Round30Open' -Skip:([bool]$R30OpenStraceSkip) {
    BeforeAll {
        $script:R30OpenTrace = "$R30OpenRoot/trace.csv"
        "write,0x0`nread,0x0" | Set-Content -LiteralPath $R30OpenTrace
    }

    It 'a readable trace replays (the setting is what the case needs)' {
        # (Addresses outside the emulator's mapping: the replay itself fails with an engine error, after the trace was read.)
        $said = Get-R30OpenResult (Invoke-R30OpenChild trace $R30OpenTrace)
        $said | Should -Not -BeLike 'TraceReadError*'
        $said | Should -Not -BeLike 'ResourceLimit*'
    }

    # Before: InvalidArgument ("cannot be read", or the replay's "path: message"), as for a malformed trace.
    It '<Call> of the trace meeting <Errno> is <ErrorId> (a <Category>), naming the path and the errno' -ForEach @(
        @{ Call = 'read'; Errno = 'EIO'; ErrorId = 'TraceReadError'; Category = 'ReadError' }
        @{ Call = 'openat'; Errno = 'EIO'; ErrorId = 'TraceReadError'; Category = 'ReadError' }
        @{ Call = 'openat'; Errno = 'EMFILE'; ErrorId = 'ResourceLimit'; Category = 'ResourceUnavailable' }
    ) {
        $said = Get-R30OpenResult (Invoke-R30OpenChild trace $R30OpenTrace @('-e', "trace=$Call", '-e', "inject=${Call}:error=$Errno", '-P', $R30OpenTrace))
        $said | Should -BeLike "$ErrorId|*$R30OpenTrace*$Errno*"
        [SoftDirty.EngineError]::$ErrorId | Should -Not -BeNullOrEmpty
    }
}

Describe 'Round 30: a migration whose staging folder cannot be removed' -Tag 'Security', 'Round30Open' -Skip:([bool]$R30OpenStraceSkip) {
    # The staging folder is removed last (.NET's recursive delete: its rmdir calls are the only ones a migration makes; the
    # image code removes with unlinkat). Before: the folder stayed with the process's memory in it, and nothing said so.
    It 'ends as it would, and warns naming the staging folder it left' {
        $dest = "$R30OpenRoot/migrated"
        $lines = Invoke-R30OpenChild migrate $dest @('-e', 'trace=rmdir', '-e', 'inject=rmdir:error=EROFS')
        Get-R30OpenResult $lines | Should -Be 'ok' -Because ($lines -join "`n")
        $warning = @($lines | Where-Object { $_ -like 'warning=*staging folder*' })
        $warning.Count | Should -Be 1 -Because ($lines -join "`n")
        $stage = [regex]::Match($warning[0], 'staging folder (\S+) could not be removed').Groups[1].Value
        $stage | Should -BeLike '*softdirty-precopy-*'
        try {
            Test-Path -LiteralPath $stage | Should -BeTrue -Because 'the folder the warning names is the one left'
        } finally { Remove-Item -LiteralPath $stage -Recurse -Force -ErrorAction Ignore }
        Test-MemoryImage -Path ($lines | Where-Object { $_ -like 'final=*' } | ForEach-Object { $_ -replace '^final=' }) | Should -BeTrue
    }
}

Describe 'Round 30: guard regions in an image' -Tag 'Security', 'Round30Open' {
    BeforeAll {
        # A process with 16 pages written, pages 4 and 5 and page 9 guard regions; the same pages of the restore are compared.
        function script:New-R30OpenGuarded([string] $Kernel = '6.18') {
            $e = New-EmulatedProcess -Kernel $Kernel
            $m = $e | Add-EmulatedMapping -Length 64KB
            $e | Write-EmulatedMemory -Address $m.Start -Length 64KB -Value 7
            $e | Invoke-EmulatedMadvise -Address ($m.Start + 16KB) -Length 8KB -Advice GuardInstall
            $e | Invoke-EmulatedMadvise -Address ($m.Start + 36KB) -Length 4KB -Advice GuardInstall
            [pscustomobject]@{ Emulator = $e; Start = $m.Start }
        }
        # Per page of the 16: 'guard' where a read faults (SegmentationFault), else the first byte.
        function script:Get-R30OpenPages($Emulator, [uint64] $Start) {
            foreach ($i in 0..15) {
                try { '{0}' -f ($Emulator | Read-EmulatedMemory -Address ($Start + $i * 4KB) -Length 1 -AsByteArray -ErrorAction Stop)[0] }
                catch { if ($_.FullyQualifiedErrorId -like 'SegmentationFault,*') { 'guard' } else { throw } }
            }
        }
        $script:R30OpenGuardExpected = @(foreach ($i in 0..15) { if ($i -in 4, 5, 9) { 'guard' } else { '7' } })
    }

    It 'the source reads as expected (the setting is what the case needs)' {
        $g = New-R30OpenGuarded
        Get-R30OpenPages $g.Emulator $g.Start | Should -Be $R30OpenGuardExpected
    }

    # Before: the image had no word of them, and the restored process read zeros there.
    It 'are recorded with their mapping and restored as guard regions into an emulated process' {
        $g = New-R30OpenGuarded
        $image = "$R30OpenRoot/guarded"
        $null = Save-MemoryImage -Emulator $g.Emulator -Path $image
        $manifest = Get-Content -Raw -LiteralPath "$image/manifest.json" | ConvertFrom-Json
        $guards = @($manifest.mappings | Where-Object { $_.start -eq $g.Start }).guards
        @($guards | ForEach-Object { '{0:x}-{1:x}' -f ($_.start - $g.Start), ($_.end - $g.Start) }) | Should -Be @('4000-6000', '9000-a000')
        Test-MemoryImage -Path $image | Should -BeTrue
        $t = New-EmulatedProcess
        $null = Restore-MemoryImage -Path $image -Emulator $t -ErrorAction Stop
        Get-R30OpenPages $t $g.Start | Should -Be $R30OpenGuardExpected
        # And an increment taken after a guard region was removed and another installed records the guards of its moment.
        $g.Emulator | Invoke-EmulatedMadvise -Address ($g.Start + 36KB) -Length 4KB -Advice GuardRemove
        $g.Emulator | Invoke-EmulatedMadvise -Address ($g.Start + 60KB) -Length 4KB -Advice GuardInstall
        $null = Save-MemoryImage -Emulator $g.Emulator -Path "$image-1" -Parent $image
        $t = New-EmulatedProcess
        $null = Restore-MemoryImage -Path "$image-1" -Emulator $t -ErrorAction Stop
        Get-R30OpenPages $t $g.Start | Should -Be @(foreach ($i in 0..15) { if ($i -in 4, 5, 15) { 'guard' } elseif ($i -eq 9) { '0' } else { '7' } })
    }

    It 'a restore into an emulated kernel without guard regions is refused (PlatformNotSupported) before anything is mapped' {
        $g = New-R30OpenGuarded
        $image = "$R30OpenRoot/guarded-old"
        $null = Save-MemoryImage -Emulator $g.Emulator -Path $image
        $t = New-EmulatedProcess -Kernel 6.1
        $null = Restore-MemoryImage -Path $image -Emulator $t -ErrorAction SilentlyContinue -ErrorVariable said
        @($said).Count | Should -Be 1
        $said[0].FullyQualifiedErrorId | Should -BeLike 'PlatformNotSupported,*'
        $said[0].Exception.Message | Should -BeLike '*guard regions*'
        @($t | Get-MemoryMapping) | Should -BeNullOrEmpty
    }

    It 'a restore to files lists them in mappings.json' {
        $g = New-R30OpenGuarded
        $image = "$R30OpenRoot/guarded-files"
        $null = Save-MemoryImage -Emulator $g.Emulator -Path $image
        $null = Restore-MemoryImage -Path $image -Destination "$image-restored" -ErrorAction Stop
        $listed = Get-Content -Raw -LiteralPath "$image-restored/mappings.json" | ConvertFrom-Json
        @(@($listed | Where-Object { $_.start -eq $g.Start }).guards).Count | Should -Be 2
    }

    It 'a manifest whose guard region lies outside its mapping is ImageCorrupt' {
        $g = New-R30OpenGuarded
        $image = "$R30OpenRoot/guarded-bad"
        $null = Save-MemoryImage -Emulator $g.Emulator -Path $image
        $text = Get-Content -Raw -LiteralPath "$image/manifest.json"
        $manifest = $text | ConvertFrom-Json
        $bad = $text.Replace(('"end": {0}' -f ($g.Start + 40KB)), ('"end": {0}' -f ($g.Start + 1MB)))
        $bad | Should -Not -Be $text
        Set-Content -LiteralPath "$image/manifest.json" -Value $bad -NoNewline
        $null = Get-MemoryImage -Path $image -ErrorAction SilentlyContinue -ErrorVariable said
        @($said).Count | Should -Be 1
        $said[0].FullyQualifiedErrorId | Should -BeLike 'ImageCorrupt,*'
        $manifest | Should -Not -BeNullOrEmpty
    }

    It 'of a real process are recorded and restored as guard regions' -Skip:([bool]$R30OpenGuardSkip) {
        $t = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/imgtarget')
        try {
            $at = [Convert]::ToUInt64(($t.Send('map 8') -split ' ')[0], 16)
            $null = $t.Send(('fill {0:x} 8 5' -f $at))
            $null = $t.Send(('guard {0:x} 2 3' -f $at))
            $image = "$R30OpenRoot/real-guarded"
            $null = Save-MemoryImage -Id $t.Id -Mapping '[anon]' -Path $image -Method Hash -ErrorAction Stop
        } finally { Stop-TestTarget $t }
        $manifest = Get-Content -Raw -LiteralPath "$image/manifest.json" | ConvertFrom-Json
        $guards = @($manifest.mappings | Where-Object { $_.start -eq $at }).guards
        @($guards | ForEach-Object { '{0}-{1}' -f (($_.start - $at) / $t.PageSize), (($_.end - $at) / $t.PageSize) }) | Should -Be @('2-5')
        $e = New-EmulatedProcess
        $null = Restore-MemoryImage -Path $image -Emulator $e -ErrorAction Stop
        { $e | Read-EmulatedMemory -Address ($at + 3 * $t.PageSize) -Length 1 -ErrorAction Stop } | Should -Throw -ErrorId 'SegmentationFault*'
    }
}

# Held (no fix): a chain deeper than the descriptors this PowerShell has left. A chain holds each of its images open while it
# is read, so Test-, Get- and Restore-MemoryImage and Receive-MemoryImage refuse it with ResourceLimit naming the image they
# could not open, before anything is written (no partial restore, no received image left). Pinned here.
Describe 'Round 30: a chain deeper than the open-file limit allows' -Tag 'Security', 'Round30Open' -Skip:([bool]$R30OpenPrlimitSkip) {
    It 'is refused with ResourceLimit by every reader, and nothing is written' {
        $chain = (New-Item -ItemType Directory (Join-Path $R30OpenRoot 'deep-chain')).FullName
        $f = New-FilledEmulator 4
        $null = Save-MemoryImage -Emulator $f.Emulator -Path "$chain/0"
        foreach ($i in 1..40) {
            $f.Emulator | Write-EmulatedMemory -Address ($f.Mapping.Start + ($i % 4) * 4KB) -Length 8 -Value ($i + 1)
            $null = Save-MemoryImage -Emulator $f.Emulator -Path "$chain/$i" -Parent "$chain/$($i - 1)"
        }
        $pwsh = Get-PwshCommandLine
        # The limit: what the child holds once the module is loaded, and 16 more (fewer than the chain's 41 images).
        $command = @"
`$ErrorActionPreference = 'Stop'; Import-Module '$R30OpenModule'
`$null = New-EmulatedProcess; [GC]::Collect()
`$n = @(Get-ChildItem /proc/self/fd).Count + 16
& prlimit --pid `$PID --nofile=`${n}:`${n}
function Case([string] `$Name, [scriptblock] `$C) { try { `$null = & `$C; "`$Name=none" } catch { "`$Name=`$(`$_.FullyQualifiedErrorId -replace ',.*')|`$(`$_.Exception.Message -replace '\r?\n', ' ')" } }
Case test { Test-MemoryImage -Path '$chain/40' }
Case get { Get-MemoryImage -Path '$chain/40' }
Case restore { Restore-MemoryImage -Path '$chain/40' -Destination '$chain/restored' }
Case emulator { Restore-MemoryImage -Path '$chain/40' -Emulator (New-EmulatedProcess) }
Case receive { Get-ChildItem -LiteralPath '$chain/40' | Receive-MemoryImage -Path '$chain/received' -Confirm:`$false }
"@
        $said = @(& $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $command 2>&1 | ForEach-Object { "$_" })
        foreach ($case in 'test', 'get', 'restore', 'emulator', 'receive') {
            $line = $said | Where-Object { $_ -like "$case=*" } | Select-Object -First 1
            $line | Should -BeLike "$case=ResourceLimit|*$chain/*EMFILE*" -Because ($said -join "`n")
        }
        @(Get-ChildItem -Force -Name -LiteralPath $chain | Where-Object { $_ -notmatch '^\d+$' }) | Should -BeNullOrEmpty -Because 'nothing is restored or received, not even in part'
    }
}
