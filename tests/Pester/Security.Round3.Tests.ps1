#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, third attack round (new cases only; rounds 1 and 2 are in Workflows.Security.Tests.ps1 and
# Security.Round2.Tests.ps1): folders writable by a group, races between a check and the use (a parent swapped
# for a link in a loop, concurrent saves from two processes, a chain appended to while it is restored, kill -9
# mid-restore), the umask, another filesystem (/dev/shm), FIFOs, sockets and devices where image files belong.
# Forged manifests (files outside the folder, negative and huge counts): tests/SoftDirty.Engine.Tests/Images/ImageRound3Tests.cs.

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    $HasSetpriv = [bool](Get-Command setpriv -CommandType Application -ErrorAction SilentlyContinue)
    $HasPerl = [bool](Get-Command perl -CommandType Application -ErrorAction SilentlyContinue)
    $HasShm = (Test-Path /dev/shm -PathType Container) -and ((Get-Item /dev/shm).UnixFileMode.ToString() -match 'StickyBit')
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = (id -u) -eq '0'
    # A folder of the caller's own (0755) under the test drive, as the module wants it.
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r3')
    chmod 0755 $TestDrive $root
    function Get-Mode([string] $Path) { '{0}' -f ((stat -c '%a' $Path) -as [string]).Trim() }
    $script:src = New-FilledEmulator
    $script:img = "$root/img"
    $null = Save-MemoryImage -Emulator $src.Emulator -Path $img -Confirm:$false
    $script:bin = '{0:x12}-{1:x12}.bin' -f $src.Mapping.Start, $src.Mapping.End
}

Describe 'Folders a group may write to' -Tag 'Workflows', 'Security' {
    It 'a destination below a folder its group may write to without the sticky bit (<Mode>) is UnsafeDestination, naming the group; nothing is created' -ForEach @(
        @{ Mode = '0770' }, @{ Mode = '0775' }, @{ Mode = '2770' }
    ) {
        # Before the fix only "every user may write" was checked: a member of the folder's group could rename the
        # private folder away and put a link in its place between the module's steps.
        $g = New-Item -ItemType Directory (Join-Path $root "group-$(New-Guid)"); chmod $Mode $g
        foreach ($dest in "$g/out", "$g/deeper/out") {
            $e = $null
            try { Save-MemoryImage -Emulator $src.Emulator -Path $dest -Confirm:$false -ErrorAction Stop } catch { $e = $_ }
            $e.FullyQualifiedErrorId | Should -Be 'UnsafeDestination,SoftDirty.Commands.SaveMemoryImageCommand' -Because $dest
            $e.Exception.Message | Should -BeLike '*its group may write to*'
            Get-ErrorId { Restore-MemoryImage $img $dest } | Should -Be 'UnsafeDestination,SoftDirty.Commands.RestoreMemoryImageCommand' -Because $dest
            Get-ErrorId { Invoke-PreCopyMigration -Emulator (New-FilledEmulator).Emulator -Bandwidth 1GB -MaxIterations 2 -Destination $dest -Confirm:$false } | Should -Be 'UnsafeDestination,SoftDirty.Commands.InvokePreCopyMigrationCommand' -Because $dest
        }
        $samples = Watch-DirtyPage -Emulator (New-FilledEmulator).Emulator -Count 2 -Interval 0.01 -Workload @{ Address = $src.Mapping.Start; Length = 4KB }
        Get-ErrorId { $samples | Export-DirtyPageChart -Path "$g/chart.svg" -WarningAction SilentlyContinue } | Should -Be 'UnsafeDestination,SoftDirty.Commands.ExportDirtyPageChartCommand'
        @(Get-ChildItem -Force $g) | Should -BeNullOrEmpty
    }

    It 'a group-writable folder with the sticky bit (1770, as /tmp is for everyone) is accepted' {
        $g = New-Item -ItemType Directory (Join-Path $root "sticky-$(New-Guid)"); chmod 1770 $g
        $null = Save-MemoryImage -Emulator $src.Emulator -Path "$g/img" -Confirm:$false
        Test-MemoryImage "$g/img" | Should -BeTrue
    }

    It 'the group, swapping the private folder for a link in a loop, gets nothing written into the linked directory (root-owned 0770 folder of group 65534)' -Skip:(-not ($IsRoot -and $HasSetpriv -and $HasPerl)) {
        $g = New-Item -ItemType Directory (Join-Path $root "gswap-$(New-Guid)"); chown 0:65534 $g; chmod 0770 $g
        $victim = New-Item -ItemType Directory (Join-Path $root "gvictim-$(New-Guid)"); chmod 0755 $victim
        # A member of the group only (uid 65534 is no owner of anything here).
        $swapper = Start-PartialFolderSwapper $g $victim $root
        try {
            $ids = for ($i = 0; $i -lt 5; $i++) {
                Get-ErrorId { Restore-MemoryImage $img "$g/out$i" }
                Get-ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path "$g/img$i" -Confirm:$false }
            }
        } finally { Stop-Process -Id $swapper.Id -ErrorAction SilentlyContinue; $null = $swapper.WaitForExit(5000) }
        @(Get-ChildItem -Force $victim).Name | Should -BeNullOrEmpty
        $ids | ForEach-Object { ($_ -split ',')[0] } | Sort-Object -Unique | Should -Be 'UnsafeDestination'
    }
}

Describe 'Races between the check and the use' -Tag 'Workflows', 'Security' {
    It "the destination's parent swapped for a link (the caller's own process, in a loop): every save or restore lands whole in one directory or fails cleanly, and leaves no partial folder" {
        # The caller's own links are followed (they are the caller's doing), but the parent is opened once and every
        # file is made relative to that descriptor: a swap between steps can move the result as a whole, never split it.
        $arena = New-Item -ItemType Directory (Join-Path $root "arena-$(New-Guid)")
        $real = New-Item -ItemType Directory (Join-Path $arena 'real')
        $other = New-Item -ItemType Directory (Join-Path $arena 'other')
        $flip = Join-Path $arena 'p'
        $null = New-Item -ItemType SymbolicLink -Path $flip -Target $real
        $pwsh = Get-PwshCommandLine
        $loop = "`$t = @('$real', '$other'); `$i = 0; while (`$true) { `$n = '$flip.new'; [IO.File]::Delete(`$n); `$null = [IO.File]::CreateSymbolicLink(`$n, `$t[`$i++ % 2]); [IO.File]::Move(`$n, '$flip', `$true) }"
        $swapper = Start-Process $pwsh[0] -ArgumentList (@($pwsh | Select-Object -Skip 1) + '-NoProfile', '-NonInteractive', '-Command', $loop) -PassThru
        $outcomes = @()
        try {
            Start-Sleep -Milliseconds 500
            for ($i = 0; $i -lt 10; $i++) {
                $outcomes += Get-ErrorId { Save-MemoryImage -Emulator $src.Emulator -Path "$flip/img$i" -Confirm:$false }
                $outcomes += Get-ErrorId { Restore-MemoryImage $img "$flip/out$i" }
            }
        } finally { Stop-Process -Id $swapper.Id -ErrorAction SilentlyContinue; $null = $swapper.WaitForExit(5000) }
        $outcomes | ForEach-Object { ($_ -split ',')[0] } | Should -BeIn 'none', 'ImageExists', 'ImageWriteError', 'UnsafeDestination'
        foreach ($d in $real, $other) {
            @(Get-ChildItem -Force $d -Filter '.*partial-*') | Should -BeNullOrEmpty
            foreach ($x in Get-ChildItem $d -Directory -Filter 'img*') { Test-MemoryImage $x.FullName | Should -BeTrue -Because $x.FullName }
            foreach ($x in Get-ChildItem $d -Directory -Filter 'out*') {
                Test-Path "$x/mappings.json" | Should -BeTrue -Because $x.FullName
                (Get-Item "$x/$bin").Length | Should -Be $src.Mapping.Size
            }
        }
        # Each name exists once at most, in one of the two: nothing was written half here, half there.
        for ($i = 0; $i -lt 10; $i++) {
            @(Get-ChildItem $real, $other -Directory | Where-Object Name -eq "img$i").Count | Should -BeLessOrEqual 1
        }
    }

    It 'two processes saving and restoring into the same new paths at once: exactly one of each succeeds, whole; the other says ImageExists' {
        $d = New-Item -ItemType Directory (Join-Path $root "concurrent-$(New-Guid)")
        $go = Join-Path $d 'go'
        # Each child makes its own emulated process with the same layout and waits for the go file, then races.
        $child = @"
Import-Module '$env:SOFTDIRTY_MODULE'
`$e = New-EmulatedProcess -Name racer; `$m = `$e | Add-EmulatedMapping -Length 256KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
while (-not (Test-Path '$go')) { Start-Sleep -Milliseconds 2 }
for (`$i = 0; `$i -lt 6; `$i++) {
  try { `$null = Save-MemoryImage -Emulator `$e -Path ('$d/img' + `$i) -Confirm:`$false -ErrorAction Stop; 'save none' } catch { 'save ' + `$_.FullyQualifiedErrorId.Split(',')[0] }
  try { `$null = Restore-MemoryImage '$img' ('$d/out'+`$i) -ErrorAction Stop; 'restore none' } catch { 'restore ' + `$_.FullyQualifiedErrorId.Split(',')[0] }
}
"@
        $file = Join-Path $d 'child.ps1'; $child | Set-Content $file
        $pwsh = Get-PwshCommandLine
        $procs = 1..2 | ForEach-Object {
            $psi = [Diagnostics.ProcessStartInfo]::new($pwsh[0])
            foreach ($a in @($pwsh | Select-Object -Skip 1) + '-NoProfile', '-NonInteractive', '-File', $file) { $psi.ArgumentList.Add($a) }
            $psi.RedirectStandardOutput = $true
            [Diagnostics.Process]::Start($psi)
        }
        Start-Sleep -Seconds 2
        $null = New-Item -ItemType File $go
        $lines = $procs | ForEach-Object { $_.StandardOutput.ReadToEnd(); $_.WaitForExit() } | ForEach-Object { $_ -split "`n" } | Where-Object { $_ -match '^(save|restore) ' }
        $lines.Count | Should -Be 24
        foreach ($kind in 'save', 'restore') {
            $mine = @($lines | Where-Object { $_ -like "$kind *" } | ForEach-Object { ($_ -split ' ')[1].Trim() })
            @($mine | Where-Object { $_ -eq 'none' }).Count | Should -Be 6 -Because "each $kind path has exactly one winner ($($mine -join ', '))"
            @($mine | Where-Object { $_ -ne 'none' } | Sort-Object -Unique) | Should -Be 'ImageExists'
        }
        for ($i = 0; $i -lt 6; $i++) {
            Test-MemoryImage "$d/img$i" | Should -BeTrue
            Test-Path "$d/out$i/mappings.json" | Should -BeTrue
        }
        @(Get-ChildItem -Force $d -Filter '.*partial-*') | Should -BeNullOrEmpty
    }

    It 'restoring the leaf of a chain while another process appends increments to it restores the same bytes every time' {
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 256 3
            $d = New-Item -ItemType Directory (Join-Path $root "append-$(New-Guid)")
            $null = Save-MemoryImage -Id $t.Id -Path "$d/c0" -Method Hash
            $null = Send-WfTarget $t "write $($r.Hex) 5 20"
            $null = Save-MemoryImage -Id $t.Id -Path "$d/c1" -Parent "$d/c0" -Method Hash
            $appender = "Import-Module '$env:SOFTDIRTY_MODULE'; for (`$i = 2; `$i -lt 8; `$i++) { `$null = Save-MemoryImage -Id $($t.Id) -Path ('$d/c' + `$i) -Parent ('$d/c' + (`$i - 1)) -Method Hash }; 'APPENDED'"
            $pwsh = Get-PwshCommandLine
            $psi = [Diagnostics.ProcessStartInfo]::new($pwsh[0])
            foreach ($a in @($pwsh | Select-Object -Skip 1) + '-NoProfile', '-NonInteractive', '-Command', $appender) { $psi.ArgumentList.Add($a) }
            $psi.RedirectStandardOutput = $true
            $p = [Diagnostics.Process]::Start($psi)
            $hashes = for ($i = 0; $i -lt 6; $i++) {
                $null = Send-WfTarget $t "write $($r.Hex) $(10 + $i) 1"   # the target changes while the chain grows
                $null = Restore-MemoryImage "$d/c1" "$d/restored$i"
                (Get-ChildItem "$d/restored$i/*.bin" | Sort-Object Name | Get-FileHash | ForEach-Object Hash) -join ','
            }
            $p.StandardOutput.ReadToEnd() | Should -BeLike '*APPENDED*'
            $p.WaitForExit()
            @($hashes | Sort-Object -Unique).Count | Should -Be 1
            Test-MemoryImage "$d/c7" | Should -BeTrue
        } finally { Stop-WfTarget $t }
    }

    It 'kill -9 of a restoring pwsh leaves an existing empty destination as it was, or holds the whole restore' {
        $t = Start-WfTarget
        try {
            $null = New-WfRegion $t 16384 5     # 64 MiB, so a restore lasts long enough to be cut
            $d = New-Item -ItemType Directory (Join-Path $root "killrestore-$(New-Guid)")
            $big = Save-MemoryImage -Id $t.Id -Path "$d/big" -Method Hash
            $pwsh = Get-PwshCommandLine
            $cut = 0
            for ($i = 1; $i -le 6 -and ($i -le 2 -or $cut -eq 0); $i++) {
                $dest = New-Item -ItemType Directory "$d/dest$i"
                $script = "Import-Module '$env:SOFTDIRTY_MODULE'; [Console]::Out.WriteLine('GO'); `$null = Restore-MemoryImage '$($big.Path)' '$dest'; [Console]::Out.WriteLine('DONE')"
                $psi = [Diagnostics.ProcessStartInfo]::new($pwsh[0])
                foreach ($a in @($pwsh | Select-Object -Skip 1) + '-NoProfile', '-NonInteractive', '-Command', $script) { $psi.ArgumentList.Add($a) }
                $psi.RedirectStandardOutput = $true
                $child = [Diagnostics.Process]::Start($psi)
                $child.StandardOutput.ReadLine() | Should -Be 'GO'
                $deadline = [DateTime]::UtcNow.AddSeconds(20)
                while (-not (Get-ChildItem -Force $d -Filter ".dest$i.partial-*") -and -not $child.HasExited -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 5 }
                Start-Sleep -Milliseconds (Get-Random -Minimum 0 -Maximum 100)
                kill -KILL $child.Id
                $child.WaitForExit()
                $entries = @(Get-ChildItem $dest)
                if ($entries.Count -eq 0) { $cut++ }
                else {
                    Test-Path "$dest/mappings.json" | Should -BeTrue -Because 'a destination holds nothing or the whole restore'
                    $maps = Get-Content "$dest/mappings.json" -Raw | ConvertFrom-Json
                    foreach ($m in $maps) { (Get-Item ('{0}/{1:x12}-{2:x12}.bin' -f $dest, [uint64]$m.start, [uint64]$m.end)).Length | Should -Be ([uint64]$m.end - [uint64]$m.start) }
                }
                # The hidden partial folder a kill -9 leaves is the caller's, 0700, and no command reads it.
                foreach ($p in Get-ChildItem -Force $d -Filter ".dest$i.partial-*") { Get-Mode $p | Should -Be '700' }
            }
            $cut | Should -BeGreaterThan 0 -Because 'at least one kill landed before the restore was put in place'
        } finally { Stop-WfTarget $t }
    }
}

Describe 'A target that execs while it is saved' -Tag 'Workflows', 'Security' {
    It 'Save-MemoryImage of a target that exec()s in the middle succeeds or says ProcessExecuted: never ProcIOError or ProcessExited, and what it saved is valid' -Skip:(-not $HasPerl) {
        # Before: the descriptors opened on the old program read nothing after the exec, which was taken as "no
        # data there" (a short read), ProcessExited (PAGEMAP_SCAN's ESRCH) or ProcIOError, depending on the moment.
        $target = Join-Path $root "exec-$(New-Guid).pl"
        # 96 MiB of data, then sleeps until SIGUSR1, which makes it exec /bin/sleep (same pid, a new memory).
        '$| = 1; $SIG{USR1} = sub { exec "/bin/sleep", "5" }; my $b = "a" x (96 << 20); print "READY\n"; sleep 1 while 1;' | Set-Content $target
        $d = New-Item -ItemType Directory (Join-Path $root "exec-$(New-Guid)")
        $outcomes = for ($i = 0; $i -lt 8; $i++) {
            $psi = [Diagnostics.ProcessStartInfo]::new('perl', $target)
            $psi.RedirectStandardOutput = $true
            $p = [Diagnostics.Process]::Start($psi)
            try {
                $p.StandardOutput.ReadLine() | Should -Be 'READY'
                $job = Start-ThreadJob {
                    param($ModulePath, $Id, $Path)
                    Import-Module $ModulePath
                    try { $null = Save-MemoryImage -Id $Id -Path $Path -Method Hash -ErrorAction Stop; 'none' } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
                } -ArgumentList (Get-Module SoftDirty).Path, $p.Id, "$d/img$i"
                # Once the save is writing (its private folder exists), a delay that moves along the save, then the exec.
                $deadline = [DateTime]::UtcNow.AddSeconds(30)
                while (-not (Get-ChildItem -Force $d -Filter ".img$i.partial-*") -and $job.State -eq 'Running' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 2 }
                Start-Sleep -Milliseconds (15 * $i)
                kill -USR1 $p.Id
                $null = Wait-Job $job -Timeout 60
                $outcome = Receive-Job $job
                Remove-Job $job -Force
                $outcome
                if ($outcome -eq 'none') { Test-MemoryImage "$d/img$i" | Should -BeTrue }
            } finally { if (-not $p.HasExited) { $p.Kill() }; $p.WaitForExit() }
        }
        Write-Host "    save of a target that execs: $(($outcomes | Group-Object | ForEach-Object { "$($_.Name) x$($_.Count)" }) -join ', ')"
        $outcomes | Should -BeIn 'none', 'ProcessExecuted'
    }
}

Describe 'The umask and other filesystems' -Tag 'Workflows', 'Security' {
    It 'under umask 0777 a save, a restore and a chart are still made with exactly 0700 folders and 0600 files, and read back' {
        # Before the fix the modes were 0700/0600 minus the umask: 0000, which an unprivileged caller cannot even
        # write its own files into (the save failed), and a later Test-MemoryImage could not read.
        $d = New-Item -ItemType Directory (Join-Path $root "umask-$(New-Guid)")
        $command = @"
Import-Module '$env:SOFTDIRTY_MODULE'
`$e = New-EmulatedProcess -Name umask; `$m = `$e | Add-EmulatedMapping -Length 64KB; `$e | Write-EmulatedMemory -Address `$m.Start -Length `$m.Size
`$null = Save-MemoryImage -Emulator `$e -Path '$d/new/img' -Confirm:`$false -ErrorAction Stop
`$null = Restore-MemoryImage '$d/new/img' '$d/out' -ErrorAction Stop
`$null = Watch-DirtyPage -Emulator `$e -Count 2 -Interval 0.01 -Workload @{ Address = `$m.Start; Length = 4KB } | Export-DirtyPageChart -Path '$d/chart.svg' -WarningAction SilentlyContinue -ErrorAction Stop
'CHILD OK'
"@
        $pwsh = Get-PwshCommandLine
        $out = sh -c 'umask 0777; exec "$@"' sh @pwsh -NoProfile -NonInteractive -Command $command 2>&1
        ($out -join "`n") | Should -BeLike '*CHILD OK*'
        foreach ($dir in "$d/new", "$d/new/img", "$d/out") { Get-Mode $dir | Should -Be '700' -Because $dir }
        foreach ($f in (Get-ChildItem "$d/new/img", "$d/out" -File) + (Get-Item "$d/chart.svg")) { Get-Mode $f.FullName | Should -Be '600' -Because $f.FullName }
        Test-MemoryImage "$d/new/img" | Should -BeTrue
    }

    It 'a save and a restore on another filesystem (/dev/shm, tmpfs) are put in place with renameat2 there and read back' -Skip:(-not $HasShm) {
        $d = "/dev/shm/softdirty-r3-$(New-Guid)"
        try {
            $null = Save-MemoryImage -Emulator $src.Emulator -Path "$d/img" -Confirm:$false
            $null = Restore-MemoryImage "$d/img" "$d/out"
            Test-MemoryImage "$d/img" | Should -BeTrue
            $ref = Join-Path $root "shm-ref-$(New-Guid)"
            $null = Restore-MemoryImage $img $ref
            (Get-FileHash "$d/out/$bin").Hash | Should -Be (Get-FileHash "$ref/$bin").Hash
            Get-Mode $d | Should -Be '700'
            Get-ErrorId { Restore-MemoryImage "$d/img" "$d/out" } | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        } finally { Remove-Item $d -Recurse -Force -ErrorAction SilentlyContinue }
    }

    It 'a restore into a folder the caller may not write to is PermissionDenied, creating nothing' -Skip:$IsRoot {
        # As root every folder is writable (and another user's folders are Round 2's case).
        $dest = "/var/softdirty-r3-$(New-Guid)/out"
        Get-ErrorId { Restore-MemoryImage $img $dest } | Should -Be 'PermissionDenied,SoftDirty.Commands.RestoreMemoryImageCommand'
        Test-Path (Split-Path $dest) | Should -BeFalse
    }
}

Describe 'What is planted where an image file belongs' -Tag 'Workflows', 'Security' {
    It '<Kind> as <File> is ImageCorrupt at once, from Test, Get and Restore (no hang, nothing restored)' -ForEach @(
        @{ Kind = 'a FIFO'; File = 'index.bin' }
        @{ Kind = 'a FIFO'; File = 'pages.bin' }
        @{ Kind = 'a unix socket'; File = 'pages.bin' }
        @{ Kind = 'a unix socket'; File = 'manifest.json' }
        @{ Kind = 'a directory'; File = 'pages.bin' }
        @{ Kind = 'a link to /dev/urandom'; File = 'index.bin' }
    ) {
        $copy = Join-Path $root "planted-$(New-Guid)"
        Copy-Item $img $copy -Recurse
        Remove-Item "$copy/$File"
        switch ($Kind) {
            'a FIFO' { mkfifo "$copy/$File" }
            'a unix socket' {
                # Bound by a name relative to the process's directory: a socket path may have only 108 bytes.
                $s = [System.Net.Sockets.Socket]::new('Unix', 'Stream', 'Unspecified')
                $cwd = [Environment]::CurrentDirectory
                try { [Environment]::CurrentDirectory = $copy; $s.Bind([System.Net.Sockets.UnixDomainSocketEndPoint]::new($File)) }
                finally { [Environment]::CurrentDirectory = $cwd }
                Test-Path "$copy/$File" | Should -BeTrue
                $script:socket = $s
            }
            'a directory' { $null = New-Item -ItemType Directory "$copy/$File" }
            'a link to /dev/urandom' { $null = New-Item -ItemType SymbolicLink -Path "$copy/$File" -Target /dev/urandom }
        }
        try {
            $r = Test-MemoryImage $copy -Detailed
            $r.Valid | Should -BeFalse
            $r.Problems[0].Error | Should -Be 'ImageCorrupt'
            Get-ErrorId { Restore-MemoryImage $copy "$copy-out" } | Should -Be 'ImageCorrupt,SoftDirty.Commands.RestoreMemoryImageCommand'
            Test-Path "$copy-out" | Should -BeFalse
        } finally { if ($script:socket) { $script:socket.Dispose(); $script:socket = $null } }
    }

    It 'a character device as pages.bin (mknod, root only) is ImageCorrupt' -Skip:(-not $IsRoot) {
        $copy = Join-Path $root "device-$(New-Guid)"
        Copy-Item $img $copy -Recurse
        Remove-Item "$copy/pages.bin"
        mknod "$copy/pages.bin" c 1 5   # /dev/zero's numbers
        (Test-MemoryImage $copy -Detailed).Problems[0].Error | Should -Be 'ImageCorrupt'
        Get-ErrorId { Restore-MemoryImage $copy "$copy-out" } | Should -Be 'ImageCorrupt,SoftDirty.Commands.RestoreMemoryImageCommand'
    }
}
