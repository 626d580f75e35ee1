#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-ninth attack round (errB): where a failed or partial system call of the image code was taken for an answer.
# Found: a read of pages.bin that returned fewer bytes than asked (POSIX allows it anywhere; FUSE, NFS and CIFS do it) was taken
# for the end of the file by the two readers that read once (the page check and the restore), while the others read on. So a
# whole image was said to lack its pages: Test-MemoryImage answered $false (8 of 16 pages "past the end of the file"),
# Receive-MemoryImage refused and removed a whole image it had received (a migration's round failed), and Restore-MemoryImage
# failed with "truncated". Shown with a preloaded pread that returns half of what is asked of pages.bin (a real short read:
# the call runs, on fewer bytes). And: a read of an increment's PARENT that the disk failed (EIO on its manifest or its folder)
# was said as ImageParentMismatch, "not the image this one was taken against", by Test-, Get- and Restore-MemoryImage, where
# the same failure of the image itself says ImageReadError (round 25: check the disk, then test again); and a stat of an
# image's pages.bin or index.bin that the disk failed said the file was "missing", ImageIncomplete. And: out of
# descriptors while opening the object of memory that ends with the process (a memfd: /proc/PID/map_files, the process's
# /proc/PID/fdinfo) was "this user cannot open it, the process holds no descriptor of it": the save wrote an image without
# the 8 of 8 pages the process did not map, which a save a moment later took whole (round 28's "out of descriptors is no
# answer", in the image code). Likewise a deleted file on a tmpfs of the process's own mount namespace, whose
# /proc/PID/mountinfo could not be read: its file system taken for one that may never answer (not local), its 8 pages
# unreadable. Every case below failed before.

BeforeDiscovery {
    $script:ShortReadSource = @'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
/* pread of a file whose path ends with $SHORTREAD_SUFFIX reads half of what is asked (at least 1 byte): a short read, as FUSE, NFS or CIFS may give. */
static int shorten(int fd)
{
    const char *suffix = getenv("SHORTREAD_SUFFIX");
    char link[64], target[4096];
    if (!suffix || !*suffix) return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) return 0;
    target[n] = 0;
    size_t k = strlen(suffix);
    return (size_t)n >= k && strcmp(target + n - k, suffix) == 0;
}
static ssize_t call(const char *name, int fd, void *buf, size_t count, off_t offset)
{
    ssize_t (*real)(int, void *, size_t, off_t) = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, name);
    if (count > 1 && shorten(fd)) count /= 2;
    return real(fd, buf, count, offset);
}
ssize_t pread64(int fd, void *buf, size_t count, off_t offset) { return call("pread64", fd, buf, count, offset); }
ssize_t pread(int fd, void *buf, size_t count, off_t offset) { return call("pread", fd, buf, count, offset); }
'@
    $cc = Get-Command cc, gcc -CommandType Application -ErrorAction Ignore | Select-Object -First 1
    $ShortSkip = if (-not $IsLinux) { 'Linux only' }
    elseif (-not $cc) { 'no C compiler (cc) to build the preloaded pread that gives short reads' }
    else {
        $probe = Join-Path ([IO.Path]::GetTempPath()) "sdr29errb-probe-$([guid]::NewGuid().ToString('n'))"
        $null = New-Item -ItemType Directory $probe
        try {
            Set-Content -LiteralPath "$probe/s.c" -Value $ShortReadSource
            $said = & $cc.Source -shared -fPIC -O2 -o "$probe/s.so" "$probe/s.c" -ldl 2>&1
            if ($LASTEXITCODE -ne 0) { "cc cannot build a shared object here: $($said | Select-Object -First 1)" }
        } finally { Remove-Item -LiteralPath $probe -Recurse -Force -ErrorAction Ignore }
    }
}

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $StraceSkip = Get-StraceSkipReason 'the failed read is injected with strace'
}

BeforeDiscovery {
    $NsSkip = if ($StraceSkip) { $StraceSkip }
    elseif ((id -u) -ne '0') { 'needs root: the target mounts a tmpfs in a mount namespace of its own, and its pages are read through /proc/PID/map_files' }
    elseif (-not (Get-Command unshare -CommandType Application -ErrorAction Ignore) -or -not (Get-Command nsenter -CommandType Application -ErrorAction Ignore)) { 'needs unshare and nsenter (util-linux)' }
    else {
        $said = unshare -m --propagation private true 2>&1
        if ($LASTEXITCODE -ne 0) { "a mount namespace cannot be made here: $said" }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r29errb')).FullName
    # A child PowerShell that runs $Command with every $Call on one of $Paths failing with $Errno (strace): its output lines.
    # At least one call must have been failed.
    function Invoke-Failing([string[]] $Paths, [string] $Call, [string] $Errno, [string] $Command) {
        $log = Join-Path $root "strace-$([guid]::NewGuid().ToString('n')).log"
        $pwsh = Get-PwshCommandLine
        $filter = foreach ($p in $Paths) { '-P', $p }
        $command = "`$ErrorActionPreference = 'Stop'; `$PSStyle.OutputRendering = 'PlainText'; Import-Module '$module'`n$Command"
        $said = @(strace -f -qq -o $log --seccomp-bpf @filter -e trace=$Call -e inject=${Call}:error=$Errno @pwsh -NoProfile -NonInteractive -Command $command 2>&1 | ForEach-Object { "$_" })
        @(Get-Content -LiteralPath $log | Where-Object { $_ -match 'INJECTED' }).Count | Should -BeGreaterThan 0 -Because ($said -join "`n")
        $said
    }
    # A save of $Target with every open of $Paths failing for want of descriptors: ResourceLimit, nothing left; then a save with
    # descriptors takes every page (before: the first save wrote an image without the object's 8 pages, 'save=unreadable 8').
    function Assert-LimitRefusesSave($Target, [string[]] $Paths) {
        $out = (New-Item -ItemType Directory "$root/o-$([guid]::NewGuid().ToString('n'))").FullName
        $said = Invoke-Failing $Paths openat EMFILE "try { `$i = Save-MemoryImage -Id $($Target.Id) -Path '$out/img' -WarningAction SilentlyContinue; 'save=unreadable ' + `$i.UnreadablePages } catch { 'save=' + (`$_.FullyQualifiedErrorId -replace ',.*') }"
        ($said | Where-Object { $_ -like 'save=*' }) | Should -BeExactly 'save=ResourceLimit' -Because ($said -join "`n")
        @(Get-ChildItem -Force -LiteralPath $out).Count | Should -Be 0 -Because 'nothing is left of the save'
        $info = Save-MemoryImage -Id $Target.Id -Path "$out/again" -WarningAction SilentlyContinue
        $info.UnreadablePages | Should -Be 0 -Because 'the object is readable: only the limit stood in the way'
        Test-MemoryImage -Path "$out/again" | Should -BeTrue
    }
}

Describe 'Round 29: a read of pages.bin that returns fewer bytes than asked' -Tag 'Security', 'Round29ErrB' -Skip:([bool]$ShortSkip) {
    BeforeAll {
        $cc = Get-Command cc, gcc -CommandType Application | Select-Object -First 1
        Set-Content -LiteralPath "$root/shortread.c" -Value $ShortReadSource
        & $cc.Source -shared -fPIC -O2 -o "$root/shortread.so" "$root/shortread.c" -ldl
        # 16 pages of distinct bytes (not one zero page), and the flat files a restore in this process (no short reads) gives.
        $f = New-FilledEmulator 16
        $script:image = "$root/img"
        $null = Save-MemoryImage -Emulator $f.Emulator -Path $image
        $script:expected = "$root/expected"
        $null = Restore-MemoryImage -Path $image -Destination $expected
        $script:out = (New-Item -ItemType Directory "$root/out").FullName
        # The child: every pread of a pages.bin reads half of what it asks. It first shows that it does (a 64 KiB read of the
        # image's pages.bin), then prints each command's answer.
        $pwsh = Get-PwshCommandLine
        $command = @"
`$ErrorActionPreference = 'Stop'; Import-Module '$module'
function Case([string] `$Name, [scriptblock] `$C) { try { "`$Name=`$(& `$C)" } catch { "`$Name=`$(`$_.FullyQualifiedErrorId -replace ',.*')|`$(`$_.Exception.Message -replace '\r?\n', ' ')" } }
Case probe { `$h = [IO.File]::OpenHandle('$image/pages.bin'); try { [IO.RandomAccess]::Read(`$h, [byte[]]::new(65536), 0) } finally { `$h.Dispose() } }
Case test { `$r = Test-MemoryImage -Path '$image' -Detailed; "`$(`$r.Valid) `$(`$r.PagesChecked) `$(`$r.Problems.Count) `$(`$r.Problems | Select-Object -First 1 | ForEach-Object Message)" }
Case restore { `$null = Restore-MemoryImage -Path '$image' -Destination '$out/rest'; 'done' }
Case receive { `$i = Get-ChildItem -LiteralPath '$image' | Receive-MemoryImage -Path '$out/recv' -Confirm:`$false; `$i.DataPages }
"@
        $env:SHORTREAD_SUFFIX = '/pages.bin'
        $env:LD_PRELOAD = "$root/shortread.so"
        try { $script:said = @(& $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -Command $command 2>&1 | ForEach-Object { "$_" }) }
        finally { Remove-Item Env:LD_PRELOAD, Env:SHORTREAD_SUFFIX -ErrorAction Ignore }
        function Said([string] $Case) {
            $line = $said | Where-Object { $_ -like "$Case=*" } | Select-Object -First 1
            $line | Should -Not -BeNullOrEmpty -Because ($said -join "`n")
            $line -replace '^[^=]*='
        }
    }

    BeforeEach {
        # The preloaded pread must have run (a libc that .NET does not reach through pread, a loader that ignores LD_PRELOAD).
        $probe = Said probe
        if ($probe -notmatch '^\d+$' -or [int]$probe -ge 65536) { Set-ItResult -Skipped -Because "the preloaded pread gave no short read here (a 64 KiB read of pages.bin answered: $probe)" }
    }

    It 'Test-MemoryImage calls the whole image valid, every page checked' {
        # Before: "False 16 8 ... page 0x... lies past the end of the file."
        Said test | Should -BeExactly 'True 16 0 '
    }

    It 'Restore-MemoryImage restores it, the same bytes as without short reads' {
        # Before: "pages.bin at offset 0 (0x0): truncated, page 0x... is missing."
        Said restore | Should -BeExactly 'done'
        $got = @(Get-ChildItem -LiteralPath "$out/rest" -File | Sort-Object Name)
        $want = @(Get-ChildItem -LiteralPath $expected -File | Sort-Object Name)
        $got.Name | Should -Be $want.Name
        for ($i = 0; $i -lt $want.Count; $i++) {
            (Get-FileHash -LiteralPath $got[$i].FullName).Hash | Should -Be (Get-FileHash -LiteralPath $want[$i].FullName).Hash -Because $want[$i].Name
        }
    }

    It 'Receive-MemoryImage keeps the whole image it received' {
        # Before: ImageIncomplete "The received image ... does not verify: ... lies past the end of the file", and the image removed.
        Said receive | Should -BeExactly '16'
        Test-MemoryImage -Path "$out/recv" | Should -BeTrue
    }
}

Describe 'Round 29: the disk fails a read of an increment''s parent' -Tag 'Security', 'Round29ErrB' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        $script:chain = (New-Item -ItemType Directory "$root/chain").FullName
        $f = New-FilledEmulator 16
        $null = Save-MemoryImage -Emulator $f.Emulator -Path "$chain/full"
        $f.Emulator | Write-EmulatedMemory -Address $f.Mapping.Start -Length 4KB
        $null = Save-MemoryImage -Emulator $f.Emulator -Path "$chain/inc" -Parent "$chain/full"
    }

    It 'EIO <Where>: Test-MemoryImage is false with ImageReadError, Get- and Restore-MemoryImage say ImageReadError' -ForEach @(
        @{ Where = 'reading the parent''s manifest'; Path = 'full/manifest.json'; Call = 'pread64' }
        @{ Where = 'opening the parent''s folder'; Path = 'full'; Call = 'openat' }
    ) {
        $out = (New-Item -ItemType Directory "$root/o-$([guid]::NewGuid().ToString('n'))").FullName
        $said = Invoke-Failing "$chain/$Path" $Call EIO @"
function Id([scriptblock] `$c) { try { `$null = & `$c; 'none' } catch { `$_.FullyQualifiedErrorId -replace ',.*' } }
`$t = Test-MemoryImage '$chain/inc' -Detailed; 'test=' + `$t.Valid + ':' + (`$t.Problems.Error -join ',')
'get=' + (Id { Get-MemoryImage '$chain/inc' })
'restore=' + (Id { Restore-MemoryImage -Path '$chain/inc' -Destination '$out/rest' })
"@
        # Before: False:ImageParentMismatch, ImageParentMismatch, ImageParentMismatch.
        ($said | Where-Object { $_ -like 'test=*' }) | Should -BeExactly 'test=False:ImageReadError' -Because ($said -join "`n")
        ($said | Where-Object { $_ -like 'get=*' }) | Should -BeExactly 'get=ImageReadError'
        ($said | Where-Object { $_ -like 'restore=*' }) | Should -BeExactly 'restore=ImageReadError'
        Test-Path -LiteralPath "$out/rest" | Should -BeFalse
        Test-MemoryImage -Path "$chain/inc" | Should -BeTrue -Because 'the chain is whole'
    }

    It 'EIO from the stat of <Image>''s files: Test-MemoryImage is false with ImageReadError, Restore-MemoryImage says ImageReadError' -ForEach @(
        @{ Image = 'inc' }, @{ Image = 'full' }
    ) {
        $out = (New-Item -ItemType Directory "$root/o-$([guid]::NewGuid().ToString('n'))").FullName
        # statx relative to the image's folder: its pages.bin and index.bin, whose sizes are checked against the manifest.
        $said = Invoke-Failing "$chain/$Image" statx EIO @"
function Id([scriptblock] `$c) { try { `$null = & `$c; 'none' } catch { `$_.FullyQualifiedErrorId -replace ',.*' } }
`$t = Test-MemoryImage '$chain/inc' -Detailed; 'test=' + `$t.Valid + ':' + (`$t.Problems.Error -join ',')
'restore=' + (Id { Restore-MemoryImage -Path '$chain/inc' -Destination '$out/rest' })
"@
        # Before: False:ImageIncomplete ("missing"), ImageIncomplete.
        ($said | Where-Object { $_ -like 'test=*' }) | Should -BeExactly 'test=False:ImageReadError' -Because ($said -join "`n")
        ($said | Where-Object { $_ -like 'restore=*' }) | Should -BeExactly 'restore=ImageReadError'
        Test-Path -LiteralPath "$out/rest" | Should -BeFalse
    }
}

Describe 'Round 29: out of descriptors where a save opens the object of a memfd' -Tag 'Security', 'Round29ErrB' -Skip:([bool]$StraceSkip) {
    BeforeAll {
        $script:t = Start-ImgTarget
        # A memfd mapped MAP_SHARED, 8 pages written only with write(2): the target maps none of them, and holds its descriptor.
        $r = (Send-ImgTarget $t 'shm 8') -split ' '
        $null = Send-ImgTarget $t "pwrite $($r[1]) 0 8"
        $address = [Convert]::ToUInt64($r[0], 16)
        $script:mapping = Get-MemoryMapping -Id $t.Id | Where-Object { $_.Start -le $address -and $address -lt $_.End }
    }
    AfterAll { Stop-ImgTarget $t }

    It 'the save says ResourceLimit and writes nothing; a save with descriptors takes every page' {
        @(Get-PageMap -Id $t.Id -Address $mapping.Start -Length ($mapping.End - $mapping.Start) -Present).Count | Should -Be 0 -Because 'the case is pages the target does not map'
        # Both routes to the object fail for want of descriptors: map_files (root's), and the process's descriptors (everyone's).
        Assert-LimitRefusesSave $t ('/proc/{0}/map_files/{1:x}-{2:x}' -f $t.Id, $mapping.Start, $mapping.End), "/proc/$($t.Id)/fdinfo"
    }
}

Describe 'Round 29: out of descriptors where a save reads the mount table of the process' -Tag 'Security', 'Round29ErrB' -Skip:([bool]$NsSkip) {
    BeforeAll {
        # The target in a mount namespace of its own, with a tmpfs there only (this process's mount table does not list it): a
        # file there, mapped MAP_SHARED, written, deleted, then MADV_DONTNEED: its 8 pages are in the object only.
        $script:t = Start-ImgTarget -Through 'unshare', '-m', '--propagation', 'private'
        $script:folder = (New-Item -ItemType Directory "$root/ns-$([guid]::NewGuid().ToString('n'))").FullName
        nsenter -t $t.Id -m -- mount -t tmpfs r29errb $folder
        $script:mounted = $LASTEXITCODE -eq 0
        if ($mounted) {
            $file = "/proc/$($t.Id)/root$folder/f"
            [IO.File]::WriteAllBytes($file, [byte[]]::new(8 * [Environment]::SystemPageSize))
            $a = Send-ImgTarget $t "mapfile $folder/f 8 1"
            $null = Send-ImgTarget $t "fill $a 8 3"
            Remove-Item -LiteralPath $file
            $null = Send-ImgTarget $t "dontneed $a 0 8"
        }
    }
    AfterAll { Stop-ImgTarget $t }

    It 'the save says ResourceLimit and writes nothing; a save with descriptors takes every page' {
        if (-not $mounted) { Set-ItResult -Skipped -Because 'the tmpfs could not be mounted in the target''s mount namespace'; return }
        Select-String -SimpleMatch " $folder " /proc/self/mountinfo | Should -BeNullOrEmpty -Because 'the case is a file system only the target sees'
        Assert-LimitRefusesSave $t "/proc/$($t.Id)/mountinfo"
    }
}
