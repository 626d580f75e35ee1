#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 26 (Fs): images, chains, restores and charts on other file systems and under storage limits (btrfs
# qgroups, read-only, chattr +i/+a, overlayfs, xfs, NAME_MAX and PATH_MAX). Found: a chart named with 218-255 bytes (legal)
# failed with ENAMETOOLONG on its temporary file; and a deleted file mapped on btrfs or on an overlay whose upper layer is
# another file system than its lower matched none of the descriptors the module opens (stat names a subvolume's or a layer's
# device and inode there, maps the superblock's), so its pages the process had not mapped counted as unreadable and the
# image was incomplete (240 of 256 pages); and a restore past the largest file of its file system (ext2 with 1 KiB blocks)
# said "raise the file-size limit (ulimit -f)" where there was none. Mounts are made in a mount namespace of the test's own
# (unshare).

BeforeDiscovery {
    $IsRoot = $IsLinux -and (id -u) -eq '0'
    # A mount namespace of our own: root's plainly; an unprivileged user's inside a user namespace of its own (may be refused).
    $UnshareArgs = if ($IsRoot) { @('-m', '--propagation', 'private') } else { @('-U', '-r', '-m', '--propagation', 'private') }
    $MountSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not (Get-Command unshare -CommandType Application -ErrorAction Ignore)) { 'unshare is not installed' }
    else {
        $said = unshare @UnshareArgs sh -c 'd=$(mktemp -d) && mount -t tmpfs none "$d" && echo mounted; umount "$d" 2>/dev/null; rmdir "$d"' 2>&1
        if ("$said" -notmatch 'mounted') { "this user cannot mount a tmpfs in a mount namespace of its own (unshare $UnshareArgs): $said" }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:IsRoot = (id -u) -eq '0'
    $script:UnshareArgs = if ($IsRoot) { @('-m', '--propagation', 'private') } else { @('-U', '-r', '-m', '--propagation', 'private') }
    $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r26fs')).FullName
    # Everything left in a folder, hidden temporary names included, as names relative to it.
    function Get-Left([string] $Folder) { @(Get-ChildItem -Force -Recurse -LiteralPath $Folder -ErrorAction Ignore | ForEach-Object { $_.FullName.Substring($Folder.Length + 1) } | Sort-Object) }
}

Describe 'Round 26: names at NAME_MAX' -Tag 'Security', 'Round26Fs' {
    It 'a chart named with <Length> bytes is written whole, its temporary file gone' -ForEach @(
        @{ Length = 217 }, @{ Length = 218 }, @{ Length = 255 }
    ) {
        # Before: 218 and 255 failed with ChartWriteError (.NAME.GUID.tmp: File name too long).
        $f = New-FilledEmulator
        $s = Watch-DirtyPage -Emulator $f.Emulator -Count 2 -Interval 0.01 -Method Hash
        $dir = (New-Item -ItemType Directory (Join-Path $root "chart$Length")).FullName
        $name = ('c' * ($Length - 4)) + '.svg'
        $s | Export-DirtyPageChart -Path (Join-Path $dir $name) -WarningAction Ignore
        Get-Left $dir | Should -Be @($name)
        Get-Content -Raw -LiteralPath (Join-Path $dir $name) | Should -Match '<svg'
    }
}

Describe 'Round 26: a deleted file mapped on an overlay of two file systems' -Tag 'Security', 'Round26Fs' -Skip:([bool]$MountSkip) {
    BeforeAll {
        # The target runs in a mount namespace of its own with an overlay whose lower and upper layers are two tmpfs (two
        # superblocks: stat answers with a layer's device and inode, maps with the overlay's). It maps a 256-page file of the
        # overlay MAP_SHARED (its descriptor kept: an unprivileged save reads the object through it, root's through map_files),
        # reads its first page, and the file is unlinked: the pages it did not map are in the object only.
        $script:ov = Join-Path $root 'ov'
        $null = New-Item -ItemType Directory "$ov/l", "$ov/u", "$ov/o"
        $o = "'$ov'"
        $mount = "mount -t tmpfs none $o/l && mount -t tmpfs none $o/u && mkdir $o/u/u $o/u/w && " +
            "{ mount -t overlay none -o lowerdir=$o/l,upperdir=$o/u/u,workdir=$o/u/w $o/o 2>/dev/null || mount -t overlay none -o lowerdir=$o/l,upperdir=$o/u/u,workdir=$o/u/w,userxattr $o/o; } && " +
            "head -c 1048576 /dev/urandom > $o/o/obj && exec `"`$0`""
        $script:t = $null
        $script:skip = $null
        try { $script:t = Start-ImgTarget -Through (@('unshare') + $UnshareArgs + @('sh', '-c', $mount)) }
        catch { $script:skip = "the overlay could not be made here: $_" }
    }
    AfterAll { Stop-ImgTarget $t }

    It 'every page is saved from the object and restored as the file was' {
        if ($skip) { Set-ItResult -Skipped -Because $skip; return }
        # /proc/PID/root is the target's view of its mounts.
        $obj = "/proc/$($t.Id)/root$ov/o/obj"
        $expected = [IO.File]::ReadAllBytes($obj)
        $a = (Send-ImgTarget $t "mapkeep $ov/o/obj 256 1") -split ' ' | Select-Object -First 1
        $null = Send-ImgTarget $t "touch $a 0 1"
        Remove-Item -LiteralPath $obj
        # Before: UnreadablePages 240 (the pages not mapped), the image incomplete.
        $img = Save-MemoryImage -Id $t.Id -Path "$root/ovimg" -Mapping "$ov/o/obj"
        $img.UnreadablePages | Should -Be 0
        $img.DataPages | Should -Be 256
        Test-MemoryImage -Path "$root/ovimg" | Should -BeTrue
        $null = Restore-MemoryImage -Path "$root/ovimg" -Destination "$root/ovrest"
        $got = [IO.File]::ReadAllBytes((Get-ChildItem -LiteralPath "$root/ovrest" -Filter '*.bin')[0].FullName)
        [Linq.Enumerable]::SequenceEqual($expected, $got) | Should -BeTrue
    }
}

Describe 'Round 26: a file system''s largest file' -Tag 'Security', 'Round26Fs' -Skip:([bool]$MountSkip -or -not $IsRoot) {
    # Root only: a loop device (mount -o loop, detached with the mount namespace). ext2 with 1 KiB blocks takes files of about
    # 16 GiB; the restore of a 32 GiB mapping (two pages written) fails there with the kernel's EFBIG.
    It 'a restore past it is ImageWriteError that names the file system, not the file-size limit, and leaves nothing' {
        $why = if (-not (Get-Command mkfs.ext4 -CommandType Application -ErrorAction Ignore)) { 'mkfs.ext4 is not installed' }
        elseif ("$(sh -c 'ulimit -f')" -ne 'unlimited') { "this process has a file-size limit (ulimit -f $(sh -c 'ulimit -f')), which refuses the write first" }
        if ($why) { Set-ItResult -Skipped -Because $why; return }
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 32GB
        $e | Write-EmulatedMemory -Address $m.Start -Length 4KB
        $e | Write-EmulatedMemory -Address ($m.End - 4KB) -Length 4KB
        $null = Save-MemoryImage -Emulator $e -Path "$root/big"
        $fs = "$root/ext2.img"
        truncate --size 64M $fs
        mkfs.ext4 -q -F -t ext2 -b 1024 $fs 2>&1 | Out-Null
        $LASTEXITCODE | Should -Be 0
        $mp = (New-Item -ItemType Directory "$root/e2").FullName
        $pwsh = Get-PwshCommandLine
        $command = "`$ErrorActionPreference = 'Stop'; `$PSStyle.OutputRendering = 'PlainText'; Import-Module '$module'; try { `$null = Restore-MemoryImage -Path '$root/big' -Destination '$mp/rest'; 'said=none' } catch { 'said=' + (`$_.FullyQualifiedErrorId -replace ',.*'); 'message=' + `$_.Exception.Message }; 'left=' + ((Get-ChildItem -Force '$mp' | Where-Object Name -ne 'lost+found' | ForEach-Object Name) -join ' ')"
        $out = @(unshare @UnshareArgs sh -c 'mount -o loop "$0" "$1" && shift && exec "$@"' $fs $mp @pwsh -NoProfile -NonInteractive -Command $command 2>&1 | ForEach-Object { "$_" })
        # Before: ImageWriteError with "past this process's file-size limit (ulimit -f) of the kernel's ...; raise the limit".
        $out | Should -Contain 'said=ImageWriteError' -Because ($out -join "`n")
        ($out | Where-Object { $_ -like 'message=*' }) | Should -Match 'largest file its file system takes'
        ($out | Where-Object { $_ -like 'message=*' }) | Should -Not -Match 'ulimit'
        $out | Should -Contain 'left=' -Because 'the private folder is removed'
    }
}
