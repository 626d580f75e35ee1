#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, nineteenth attack round (tracking): writes a tracker misses, so that an increment silently restores bytes the
# process no longer holds. New cases only (rounds 8-18: Security.Round*.Tests.ps1, WriteTracking.Tests.ps1): memory the
# kernel writes through its own mapping after the reset of the parent, where nothing in /proc tells of it any more at the
# increment. Target: tests/native/wttarget.c. Each feature is probed in BeforeDiscovery and skipped with the reason.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $k = if ($IsLinux) { Get-SoftDirtySupport }
    $Methods = @(
        @{ Method = 'WriteProtect'; Skip = $WtSkip }
        @{ Method = 'SoftDirty'; Skip = $(if (-not $IsLinux) { 'Linux only' } elseif (-not $k.SoftDirty) { 'no soft-dirty in this kernel (CONFIG_MEM_SOFT_DIRTY)' }) }
        @{ Method = 'Hash'; Skip = $(if (-not $IsLinux) { 'Linux only' }) }
    )
    $UringSkip = if (-not $IsLinux) { 'Linux only' } else { Get-UringBufferSkipReason }
    # A FUSE file whose reads fusehold holds (tests/native/fusehold.c): mounting needs root here (it speaks to /dev/fuse
    # itself, without fusermount), and legacy AIO (io_setup) may be off (fs.aio-max-nr) or filtered.
    # AF_XDP in copy mode behind an XDP program, in a network namespace of the target's own: root (CAP_SYS_ADMIN, CAP_BPF,
    # CAP_NET_RAW), CONFIG_XDP_SOCKETS and BPF.
    $XdpSkip = if (-not $IsLinux) { 'Linux only' } elseif ((id -u) -ne '0') { 'an AF_XDP socket behind an XDP program in a network namespace of its own needs root here' }
    if (-not $XdpSkip) {
        $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/wttarget')
        try {
            $a = $probe.Send('map 4')
            $reply = $probe.TrySend("xskrecv $a 0 4")
            if ($reply -notmatch '^OK') { $XdpSkip = "an AF_XDP socket with an XDP program is not available here ($reply)" }
            elseif (($reply = $probe.TrySend('xsksend 1')) -ne 'OK 1') { $XdpSkip = "an AF_XDP socket on lo received no packet here ($reply)" }
        } finally { Stop-TestTarget $probe }
    }
    $ThreadJobSkip = if (-not (Get-Command Start-ThreadJob -ErrorAction SilentlyContinue)) { 'Start-ThreadJob is not available in this PowerShell' }
    $AioSkip = if (-not $IsLinux) { 'Linux only' } elseif ((id -u) -ne '0') { 'mounting the FUSE file system whose reads the test holds needs root here' }
    elseif (-not (Test-Path /dev/fuse)) { 'no /dev/fuse (CONFIG_FUSE_FS)' }
    if (-not $AioSkip) {
        $mnt = Join-Path ([IO.Path]::GetTempPath()) "r19fuse-$([guid]::NewGuid().ToString('n'))"
        $null = New-Item -ItemType Directory $mnt
        $fuse = Start-FuseHold $mnt
        try {
            if (-not $fuse.Ready) { $AioSkip = "fusehold cannot mount a FUSE file system here ($($fuse.Reply))" }
            else {
                $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/wttarget')
                try {
                    $a = $probe.Send('map 4')
                    $reply = $probe.TrySend("aioread $a 0 1 $mnt/f")
                    if ($reply -notmatch '^OK') { $AioSkip = "legacy AIO with O_DIRECT of a FUSE file is not available here ($reply)" }
                    elseif (($reply = $probe.TrySend('aiowait')) -ne "OK $($probe.PageSize)") { $AioSkip = "legacy AIO of a FUSE file did not complete here ($reply)" }
                } finally { Stop-TestTarget $probe }
            }
        } finally { Stop-FuseHold $fuse; Remove-Item -LiteralPath $mnt -ErrorAction SilentlyContinue }
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r19t')
    $script:dataFile = Join-Path $TestDrive 'data.bin'
    $bytes = [byte[]]::new(64KB)
    [Random]::new(19).NextBytes($bytes)
    [IO.File]::WriteAllBytes($dataFile, $bytes)
    function New-ImagePath([string] $Prefix = 'i') { Join-Path $root "$Prefix-$([guid]::NewGuid().ToString('n'))" }
    # A private anonymous region of the target, every page written once.
    function New-WtRegion($Target, [int] $Pages) {
        $hex = $Target.Send("map $Pages")
        $null = $Target.Send("write $hex 0 $Pages")
        [pscustomobject]@{ Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Pages = $Pages }
    }
    # The pages of $Region whose bytes in the restore of $Image differ from what the process holds now (/proc/PID/mem, read
    # here while the target waits for its next command): empty when the image holds the memory of this moment.
    function Compare-RegionWithProcess($Target, [string] $Image, $Region) {
        $ps = $Target.PageSize
        $out = New-ImagePath 'r'
        $null = Restore-MemoryImage -Path $Image -Destination $out
        $file = Get-ChildItem -LiteralPath $out -Filter *.bin | Where-Object {
            $s, $e = $_.BaseName -split '-' | ForEach-Object { [Convert]::ToUInt64($_, 16) }
            $s -le $Region.Address -and $e -ge $Region.Address + [uint64]$Region.Pages * $ps
        }
        if (-not $file) { throw "the restore of $Image has no mapping holding 0x$($Region.Hex)" }
        $restored = [IO.File]::ReadAllBytes($file.FullName)
        $offset = [int]($Region.Address - [Convert]::ToUInt64(($file.BaseName -split '-')[0], 16))
        $now = Read-Region $Target $Region
        for ($p = 0; $p -lt $Region.Pages; $p++) {
            if (-not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($restored, $offset + $p * $ps, $ps), [ArraySegment[byte]]::new($now, $p * $ps, $ps))) { "page $p" }
        }
    }
    # A chain of a full image and two increments of a new target's 8-page region: $BeforeParent runs (given the target and
    # the region) before the first increment, $Between between the two; the second must restore what the process holds.
    function Assert-ChainHoldsProcess([string] $Method, [string] $Because, [scriptblock] $BeforeParent, [scriptblock] $Between) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 8
            $full = New-ImagePath; $inc1 = New-ImagePath; $inc2 = New-ImagePath
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method $Method
            & $BeforeParent $t $r
            $null = Save-MemoryImage -Id $t.Id -Path $inc1 -Parent $full -Method $Method
            & $Between $t $r
            $null = Save-MemoryImage -Id $t.Id -Path $inc2 -Parent $inc1 -Method $Method
            Test-MemoryImage -Path $inc2 | Should -BeTrue
            Compare-RegionWithProcess $t $inc2 $r | Should -BeNullOrEmpty -Because $Because
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }
    # The bytes of $Region as the process holds them now (/proc/PID/mem).
    function Read-Region($Target, $Region) {
        $mem = [IO.FileStream]::new("/proc/$($Target.Id)/mem", 'Open', 'Read', 'ReadWrite', 1, $false)
        try { $mem.Position = [int64]$Region.Address; $now = [byte[]]::new($Region.Pages * $Target.PageSize); $mem.ReadExactly($now, 0, $now.Length); , $now } finally { $mem.Dispose() }
    }
    # A 2-sample watch of a new target's 8-page region: $Setup runs (given the target and the region) before the watch,
    # $Action when sample 1 comes; the pages $Action changed (measured) must be in sample 2. Returns those pages.
    function Assert-WatchHasWrites([string] $Method, [string] $Because, [scriptblock] $Setup, [scriptblock] $Action) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 8
            & $Setup $t $r
            $state = @{ First = $true; Before = $null; After = $null }
            $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Count 2 -Interval 1 | ForEach-Object {
                    if ($state.First) { $state.First = $false; $state.Before = Read-Region $t $r; & $Action $t $r; $state.After = Read-Region $t $r }
                    $_
                })
            $samples.Count | Should -Be 2
            $ps = $t.PageSize
            $changed = @(for ($p = 0; $p -lt $r.Pages; $p++) {
                    if (-not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($state.Before, $p * $ps, $ps), [ArraySegment[byte]]::new($state.After, $p * $ps, $ps))) { $p }
                })
            foreach ($p in $changed) {
                $at = $r.Address + [uint64]$p * [uint64]$ps
                @($samples[1].Ranges | Where-Object { [uint64]$_.Start -le $at -and [uint64]$_.End -gt $at }).Count | Should -Be 1 -Because "page $p changed in sample 2's interval ($Because)"
            }
            , $changed
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }
    # Waits (hang guard: 10 s) until the process has no pinned memory (VmPin 0 kB): the kernel frees a closed io_uring, and
    # unpins its buffers, in a worker after the last reference goes.
    function Wait-NothingPinned([int] $Id) {
        $deadline = [DateTime]::UtcNow.AddSeconds(10)
        while ([DateTime]::UtcNow -lt $deadline) {
            if ((Get-ProcStatusKb $Id 'VmPin') -eq 0) { return $true }
            Start-Sleep -Milliseconds 20
        }
        $false
    }
}

AfterAll { Stop-TestTarget -All; Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 19: an io_uring buffer the kernel wrote after the parent''s reset, then closed before the increment' -Tag 'WriteTracking', 'Security', 'Round19Tracking' -Skip:([bool]$UringSkip) {
    # Before: the increment compared by content only the buffers registered at its own save. The buffer's pages were pinned
    # (and so marked written) before the parent's reset, IORING_OP_READ_FIXED wrote them after it through the kernel's own
    # mapping (no page-table bit), and the io_uring was closed and freed before the increment: nothing in /proc told of it
    # then, so the WriteProtect increment kept the parent's bytes of the 4 pages (seen: the restored mapping's hash differed
    # from a full image's, no warning, Test-MemoryImage $true). Now each image records the buffers (and whether the kernel
    # writes memory no one can locate) at its save, read after its reset, and the next increment compares those by content.
    It '-Method <Method>: the increment restores the bytes READ_FIXED wrote, as the process holds them' -ForEach $Methods {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        Assert-ChainHoldsProcess $Method 'the pages READ_FIXED wrote after the parent''s reset must be in the increment' {
            param($t, $r)
            $null = $t.Send("uringreg $($r.Hex) 2 4")
        } {
            param($t, $r)
            [int]$t.Send("uringread $dataFile") | Should -Be (4 * $t.PageSize) -Because 'READ_FIXED read 4 pages of the file into the buffer'
            $t.Send('uringclose') | Should -Be '0'
            Wait-NothingPinned $t.Id | Should -BeTrue -Because 'the closed io_uring is freed and its buffer unpinned'
        }
    }
}

Describe 'Round 19: a watch whose target starts to need every mapping compared by content' -Tag 'WriteTracking', 'Security', 'Round19Tracking' -Skip:([bool]($UringSkip -or $WtSkip)) {
    # Before: the look after the io_uring appeared compared the mappings the page-table side had at the look before by
    # content, [vsyscall] among them, whose PAGEMAP_SCAN fails (seen: EngineException "PAGEMAP_SCAN of
    # 0xffffffffff600000-0xffffffffff601000 failed: EFAULT", the watch ended). Where the kernel writes provided-buffer rings
    # (Linux 6.12+) any io_uring makes every mapping compared by content; on older kernels only the buffer's mapping is.
    It 'an io_uring with a registered buffer set up after sample 1, and READ_FIXED into it: every sample comes, sample 2 has the buffer''s pages' {
        $changed = Assert-WatchHasWrites 'WriteProtect' 'READ_FIXED wrote the buffer' { param($t, $r) } {
            param($t, $r)
            $null = $t.Send("uringreg $($r.Hex) 2 4")
            [int]$t.Send("uringread $dataFile") | Should -Be (4 * $t.PageSize)
        }
        $changed | Should -Be @(2, 3, 4, 5) -Because 'READ_FIXED read 4 pages of the file into the buffer'
    }
}

Describe 'Round 19: a legacy AIO read (io_submit, O_DIRECT) in flight across the reset of the parent or of a sample' -Tag 'WriteTracking', 'Security', 'Round19Tracking' -Skip:([bool]$AioSkip) {
    # io_submit pins the buffer's pages (a write fault: marked written) and returns; fusehold holds the read, the tracker's
    # reset re-protects the pages, then the read completes and the kernel copies the data in through its own mapping: no
    # page-table bit, no VmPin (legacy AIO pins for the I/O only), no descriptor. Before: the WriteProtect increment kept
    # the parent's bytes of the 4 pages (seen: pages 2-5 differed from /proc/PID/mem, no warning, the chain valid), and a
    # WriteProtect watch had none of them in sample 2. Now a process with an AIO context (its ring, "/[aio] (deleted)" in
    # maps) has all its memory compared by content, and an image records that, so the next increment compares all of it
    # even where the context was destroyed (io_destroy) since.
    BeforeAll {
        $script:mnt = Join-Path $TestDrive 'fuse'
        $null = New-Item -ItemType Directory $mnt
        $script:fuse = Start-FuseHold $mnt
        if (-not $fuse.Ready) { throw "fusehold did not mount: $($fuse.Reply)" }
        # The bytes fusehold serves at a file offset (tests/native/fusehold.c), to tell that a page holds the read.
        function Get-FuseByte([uint64] $At) { [byte]((($At -shr 12) * 29 + ($At -band 0xff) + 1) -band 0xff) }
        # Submits the read of 4 pages into pages 2-5 of $Region and waits until fusehold holds it (the pages are pinned).
        function Start-HeldRead($Target, $Region) {
            $fuse.Send('hold') | Should -Be 'OK'
            $Target.Send("aioread $($Region.Hex) 2 4 $mnt/f") | Should -Be '1'
            $fuse.Read() | Should -Be "READ 0 $(4 * $Target.PageSize)" -Because 'fusehold holds the read: the pages are pinned'
        }
        # Lets the held read complete and reaps it: the kernel has written pages 2-5.
        function Complete-HeldRead($Target) {
            $fuse.Send('go') | Should -Be 'GO 1'
            [int]$Target.Send('aiowait') | Should -Be (4 * $Target.PageSize)
        }
    }
    AfterAll { Stop-FuseHold $fuse }

    It '-Method <Method>, the AIO context <Context>: the increment restores the bytes the read brought, as the process holds them' -ForEach @(
        foreach ($m in $Methods) {
            @{ Method = $m.Method; Skip = $m.Skip; Context = 'kept'; Destroy = $false }
            @{ Method = $m.Method; Skip = $m.Skip; Context = 'destroyed (io_destroy) before the increment'; Destroy = $true }
        }
    ) {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        Assert-ChainHoldsProcess $Method 'the pages the AIO read wrote after the parent''s reset must be in the increment' { param($t, $r) Start-HeldRead $t $r } {
            param($t, $r)
            Complete-HeldRead $t
            if ($Destroy) { $t.Send('aioclose') | Should -Be '0' }
        }
    }

    # A context made and its read submitted after a look checked the process (ContentSelection.Refresh) and before that
    # look's reset, the read completed after the reset and the context destroyed before the next look: neither look's check
    # saw a context. The test holds the tracking's lock (flock of PID.lock) from sample 1 on, so look 2 checks, then waits;
    # a thread job makes the context and the held read meanwhile (2.5 s after sample 1: look 2 has checked by then, on a
    # machine not too busy), then lets the lock go; at sample 2 (look 2's reset done) the read completes and the context
    # goes. Interleavings: look 2 checked before the job's read (the case: before, sample 3 lacked pages 2-5; now each look
    # checks again after its reset), or after it (a busy machine: look 2 sees the context, and sample 3 must hold the pages
    # too). Either way sample 3 has every page the read wrote.
    It 'Watch-DirtyPage -Method WriteProtect: a context made and its read submitted between a look''s check and its reset, destroyed before the next look' -Skip:([bool]($WtSkip -or $ThreadJobSkip)) {
        $t = Start-TestTarget -Path $wtExe
        $holder = $null
        try {
            $r = New-WtRegion $t 8
            $null = Enable-WriteTracking -Id $t.Id
            $lock = Join-Path $env:SOFTDIRTY_STATE_DIR "$($t.Id).lock"
            $state = @{ N = 0; Job = $null; Before = $null }
            $samples = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 3 -Interval 1 | ForEach-Object {
                    $state.N++
                    if ($state.N -eq 1) {
                        # .NET takes flock(LOCK_EX) for FileShare.None: a description of its own, which the module's waits for.
                        $holder = [IO.File]::Open($lock, 'Open', 'ReadWrite', 'None')
                        flock -n $lock true
                        $LASTEXITCODE | Should -Not -Be 0 -Because 'the test holds the tracking''s lock'
                        $state.Before = Read-Region $t $r
                        $state.Job = Start-ThreadJob -ArgumentList $t.Process, $fuse.Process, $holder, "aioread $($r.Hex) 2 4 $mnt/f" {
                            param($target, $server, $holder, $read)
                            try {
                                Start-Sleep -Milliseconds 2500
                                $server.StandardInput.WriteLine('hold'); $server.StandardOutput.ReadLine()
                                $target.StandardInput.WriteLine($read); $target.StandardOutput.ReadLine()
                                $server.StandardOutput.ReadLine()
                            } finally { $holder.Dispose() }
                        }
                    }
                    if ($state.N -eq 2) {
                        $said = @($state.Job | Receive-Job -Wait -AutoRemoveJob)
                        $said[0] | Should -Be 'OK'
                        $said[1] | Should -Be 'OK 1' -Because 'io_submit took the read'
                        $said[2] | Should -BeLike 'READ 0 *' -Because 'fusehold holds the read: the pages are pinned'
                        Complete-HeldRead $t
                        $t.Send('aioclose') | Should -Be '0'
                    }
                    $_
                })
            $samples.Count | Should -Be 3
            $after = Read-Region $t $r
            $ps = $t.PageSize
            foreach ($p in 2..5) {
                [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($state.Before, $p * $ps, $ps), [ArraySegment[byte]]::new($after, $p * $ps, $ps)) | Should -BeFalse -Because "the read wrote page $p"
                $at = $r.Address + [uint64]$p * [uint64]$ps
                @($samples[2].Ranges | Where-Object { [uint64]$_.Start -le $at -and [uint64]$_.End -gt $at }).Count | Should -Be 1 -Because "page $p was written by the read in sample 3's interval"
            }
        } finally {
            if ($holder) { $holder.Dispose() }
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }

    # Not seen by WriteProtect or SoftDirty, and not locatable from the target (README, Workflows: "Other pinned memory"):
    # another process's process_vm_writev pins the target's pages, then copies from a source that faults in (here a mapping
    # of the FUSE file, its read held) across the reset. The remedy the README names, -Method Hash, must hold it.
    It '-Method Hash: a process_vm_writev of another process pinned before the parent''s reset and copied after it is in the increment' {
        $w = Start-TestTarget -Path $wtExe
        try {
            Assert-ChainHoldsProcess 'Hash' 'Hash compares every page' {
                param($t, $r)
                $fuse.Send('hold') | Should -Be 'OK'
                $w.Process.StandardInput.WriteLine("vmwritefrom $($r.Hex) $($t.Id) 4 $mnt/f")
                $fuse.Read() | Should -BeLike 'READ 0 *' -Because 'the copy waits for its source: the target''s pages are pinned'
            } {
                param($t, $r)
                $fuse.Send('go') | Should -Be 'GO 1'
                $reply = $w.Process.StandardOutput.ReadLineAsync()
                $reply.Wait(30000) | Should -BeTrue -Because 'the copy ends once its source is read'
                $reply.Result | Should -Be "OK $(4 * $t.PageSize)"
            }
        } finally { Stop-TestTarget $w }
    }

    It 'Watch-DirtyPage -Method <Method>: sample 2 has the pages the read wrote after sample 1' -ForEach $Methods {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $changed = Assert-WatchHasWrites $Method 'the AIO read completed' { param($t, $r) Start-HeldRead $t $r } { param($t, $r) Complete-HeldRead $t }
        $changed | Should -Be @(2, 3, 4, 5) -Because 'the read brought 4 pages of the file into pages 2-5'
    }
}

Describe 'Round 19: an AF_XDP socket whose umem is the target''s memory, receiving packets after the reset' -Tag 'WriteTracking', 'Security', 'Round19Tracking' -Skip:([bool]$XdpSkip) {
    # XDP_UMEM_REG pins the umem's pages (marked written) and charges them to the user's locked memory, not to VmPin; every
    # packet lo receives (an XDP program redirects it to the socket, copy mode) is copied into a umem frame through the
    # kernel's own mapping. Before: the WriteProtect increment kept the parent's bytes of the frames the packets filled
    # (seen: its restored mapping differed from a full image's, no warning), and a watch missed them. Now a process that
    # maps rings of a socket ("socket:[INODE]" in maps) has all its memory compared by content, and an image records that
    # for the next increment, so unmapping the rings and closing the socket before it changes nothing.
    It '-Method <Method>, the socket <Socket>: the increment restores the packets the kernel wrote, as the process holds them' -ForEach @(
        foreach ($m in $Methods) {
            @{ Method = $m.Method; Skip = $m.Skip; Socket = 'kept'; Close = $false }
            @{ Method = $m.Method; Skip = $m.Skip; Socket = 'closed, its rings unmapped, before the increment'; Close = $true }
        }
    ) {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        Assert-ChainHoldsProcess $Method 'the frames the packets filled after the parent''s reset must be in the increment' { param($t, $r) $null = $t.Send("xskrecv $($r.Hex) 2 4") } {
            param($t, $r)
            $t.Send('xsksend 2') | Should -Be '2' -Because 'the socket received both packets'
            if ($Close) { $t.Send('xskclose') | Should -Be '0' }
        }
    }

    It 'Watch-DirtyPage -Method <Method>: sample 2 has the frames the packets filled after sample 1' -ForEach $Methods {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $changed = Assert-WatchHasWrites $Method 'packets copied into the umem' { param($t, $r) $null = $t.Send("xskrecv $($r.Hex) 2 4") } {
            param($t, $r)
            $t.Send('xsksend 2') | Should -Be '2' -Because 'the socket received both packets'
        }
        $changed.Count | Should -Be 2 -Because 'each packet filled a frame of its own (a page of the umem)'
    }
}
