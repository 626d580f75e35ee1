#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, fifteenth attack round: memory that another process, another task or the kernel changes behind the
# module's back, and newer kernel features. New cases only (rounds 2-14: Security.Round*.Tests.ps1,
# Workflows.Security.Tests.ps1, WriteTracking.Tests.ps1). A process that shares the target's memory with a pid of its
# own (clone CLONE_VM without CLONE_THREAD, a vfork child), and an io_uring whose registered buffers are the target's
# pages held by another process. Target: tests/native/shtarget.c. Each kernel feature is measured in BeforeDiscovery.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $IsRoot = (id -u) -eq '0'
    $MadvGuardInstall = 102
    # Who holds the io_uring the target gave away: a forked process, or one sharing the target's memory (shtarget ringaway).
    $Helpers = @(@{ How = 'it forked'; Arg = '' }, @{ How = 'sharing its memory (CLONE_VM)'; Arg = ' vm' })
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $PtraceSkip = if ($yama -ge 3 -or ($yama -eq 2 -and -not $IsRoot)) { "Yama's ptrace_scope $yama forbids ptrace of a child here" } else { $null }
    $WtSkip = Get-WriteTrackingSkipReason -Relation Descendant
    $k = Get-SoftDirtySupport
    $Methods = @(
        @{ Method = 'WriteProtect'; Skip = $WtSkip }
        @{ Method = 'SoftDirty'; Skip = $(if (-not $k.SoftDirty) { 'no soft-dirty in this kernel (CONFIG_MEM_SOFT_DIRTY)' }) }
        @{ Method = 'Hash'; Skip = $null }
    )
    # A process sharing the target's memory (clone CLONE_VM), and whether kcmp(KCMP_VM) can find it (CONFIG_KCMP).
    $ShareSkip = $PtraceSkip
    $UringSkip = $WtSkip
    $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/shtarget')
    try {
        $a = $probe.Send('map 4')
        $reply = $probe.TrySend("sweeper $a 4")
        if (-not $ShareSkip -and $reply -notmatch '^OK (\d+)') { $ShareSkip = "clone(CLONE_VM) is refused here ($reply)" }
        elseif (-not $ShareSkip) {
            $kcmp = $probe.TrySend("kcmp $($Matches[1])")
            if ($kcmp -ne 'OK 0') { $ShareSkip = "kcmp(KCMP_VM) cannot tell that two processes share memory here (CONFIG_KCMP): $kcmp" }
        }
        $null = $probe.TrySend('sweepstop')
        # mseal (Linux 6.10), MAP_DROPPABLE (6.11) and guard regions (MADV_GUARD_INSTALL, 6.13).
        $reply = $probe.TrySend("seal $a 4")
        $SealSkip = if ($reply -ne 'OK 0') { "mseal(2) is not available here ($reply)" }
        $reply = $probe.TrySend('droppable 4')
        $DropSkip = if ($reply -notmatch '^OK') { "MAP_DROPPABLE is not available here ($reply)" }
        $g = $probe.Send('map 4')
        $reply = $probe.TrySend("madvise $g 0 1 $MadvGuardInstall")
        $GuardSkip = if ($reply -ne 'OK 0') { "guard regions (MADV_GUARD_INSTALL) are not available here ($reply)" }
        # io_uring with a registered buffer handed to another process (kernel.io_uring_disabled, RLIMIT_MEMLOCK, seccomp).
        if (-not $UringSkip) {
            $reply = $probe.TrySend("ringaway $a 0 4")
            if ($reply -notmatch '^OK') { $UringSkip = "io_uring with a registered buffer is not available here ($reply)" }
        }
    } finally { Stop-TestTarget $probe }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:shExe = Join-Path $PSScriptRoot '../native/bin/shtarget'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r15s')
    function New-ImagePath([string] $Prefix = 'i') { Join-Path $root "$Prefix-$([guid]::NewGuid().ToString('n'))" }
    # A region of $Pages pages of the target, every byte $Fill, as [uint64] and as hex for its commands.
    function New-ShRegion($Target, [int] $Pages, [int] $Fill = 7) {
        $hex = $Target.Send("map $Pages")
        $null = $Target.Send("fill $hex $Pages $Fill")
        [pscustomobject]@{ Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Pages = $Pages }
    }
    # The bytes of a region as the restore of $Image holds them (the region is a mapping of its own).
    function Get-RestoredRegion([string] $Image, $Region, [int] $PageSize) {
        $out = New-ImagePath 'r'
        $null = Restore-MemoryImage -Path $Image -Destination $out
        $file = Get-ChildItem -LiteralPath $out -Filter ('{0:x}-*.bin' -f $Region.Address)
        if (-not $file) { throw "the restore of $Image has no mapping at 0x$($Region.Hex)" }
        $bytes = [IO.File]::ReadAllBytes($file.FullName)
        if ($bytes.Length -ne $Region.Pages * $PageSize) { throw "the restored mapping at 0x$($Region.Hex) is $($bytes.Length) bytes" }
        , $bytes
    }
    # The sweep numbers (8 bytes at the start of each page) the restore of $Image holds in the swept region.
    function Get-SweepWords([string] $Image, $Region, [int] $PageSize) {
        $bytes = Get-RestoredRegion $Image $Region $PageSize
        @(for ($p = 0; $p -lt $Region.Pages; $p++) { [BitConverter]::ToUInt64($bytes, $p * $PageSize) })
    }
    # Why the words of one moment of the sweeper are not (empty when they are): the sweeper writes sweep n into page 0,
    # 1, ... in turn, so at any one moment the pages hold n+1 up to some page and n after it, never more apart.
    function Test-OneMoment([uint64[]] $Words) {
        $first = $Words[0]
        for ($p = 1; $p -lt $Words.Count; $p++) {
            if ($Words[$p] -gt $Words[$p - 1]) { "page $p holds sweep $($Words[$p]), after page $($p - 1)'s $($Words[$p - 1]): written after the page before it was read"; return }
            if ($first - $Words[$p] -gt 1) { "page $p holds sweep $($Words[$p]), page 0 $first"; return }
        }
    }
    # Starts a target whose sharer sweeps 16 MiB, runs $Save (given the target; returns an image of it) and checks that the
    # image holds one moment of the sweeps, and that the sharer runs again after.
    function Assert-SweptOneMoment([string] $Because, [Parameter(Mandatory)] [scriptblock] $Save) {
        $t = Start-TestTarget -Path $shExe
        try {
            $r = New-ShRegion $t ([int](16MB / $t.PageSize)) 0
            $null = $t.Send("sweeper $($r.Hex) $($r.Pages)")
            $words = Get-SweepWords (& $Save $t) $r $t.PageSize
            Test-OneMoment $words | Should -BeNullOrEmpty -Because $Because
            Wait-Sweep $t ($words[0] + 1) | Should -BeTrue -Because 'the sharer is resumed after'
            $null = $t.Send('sweepstop')
        } finally { Stop-TestTarget $t }
    }
    # Waits (hang guard: a minute) until the sweeper has finished a sweep past $After: it runs.
    function Wait-Sweep($Target, [uint64] $After) {
        $deadline = [DateTime]::UtcNow.AddMinutes(1)
        while ([DateTime]::UtcNow -lt $deadline) {
            if ([uint64]$Target.Send('sweeps') -gt $After) { return $true }
            Start-Sleep -Milliseconds 20
        }
        $false
    }
}

AfterAll { Stop-TestTarget -All }

Describe 'Round 15: a process sharing the target''s memory (clone CLONE_VM, a pid of its own) is stopped with it' -Tag 'Security', 'Round15Shared', 'Workflows' -Skip:([bool]$ShareSkip) {
    # Before: -Freeze and the stop-and-copy round stopped the threads of the target only. A process made by
    # clone(CLONE_VM) without CLONE_THREAD writes the same memory from a pid of its own, and went on writing while the
    # image was read: a "frozen" image of pages from different moments, said to be one (Frozen: True), and a migration
    # whose final image was never the memory at any moment. 16 MiB are swept: the sharer sweeps them many times while a
    # read that it is not stopped for takes them in, so pages read later hold later sweeps.
    It 'Save-MemoryImage -Freeze: the image is one moment of the sharer''s sweeps, and the sharer runs on after' {
        Assert-SweptOneMoment -Because 'a frozen image holds one moment of the memory, the sharer''s writes included' {
            param($t)
            $img = Save-MemoryImage -Id $t.Id -Path (New-ImagePath) -Freeze -Method Hash
            $img.Frozen | Should -BeTrue
            $img.Path
        }
    }

    It 'Invoke-PreCopyMigration: the stop-and-copy round stops the sharer too, so the final image is one moment' {
        Assert-SweptOneMoment -Because 'the stop-and-copy round copies memory that nothing writes meanwhile' {
            param($t)
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Method Hash -Destination (New-ImagePath 'm') -Bandwidth 64MB -MaxIterations 2 -StopThreshold 0)
            $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
            $final | Should -Not -BeNullOrEmpty
            Test-MemoryImage -Path $final | Should -BeTrue
            $final
        }
    }

    It 'Save-MemoryImage -Freeze of a target stopped already (SIGSTOP) while its sharer runs: the sharer is stopped for the save' {
        # A target stopped by job control is left as it is (not attached, not resumed); its sharer runs on all the same.
        Assert-SweptOneMoment -Because 'the sharer of a stopped target is stopped for the save too' {
            param($t)
            kill -STOP $t.Id
            try {
                $deadline = [DateTime]::UtcNow.AddMinutes(1) # hang guard
                while ((Get-ProcessState $t.Id) -ne 'T' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 10 }
                $img = Save-MemoryImage -Id $t.Id -Path (New-ImagePath) -Freeze -Method Hash
                Get-ProcessState $t.Id | Should -Be 'T' -Because 'a target stopped before stays stopped'
                $img.Path
            } finally { kill -CONT $t.Id }
        }
    }

    It 'a sharer that another tracer holds (the target itself): -Freeze is ProcessAlreadyTraced, and both run on' {
        # That tracer may let the sharer run, or it runs on anyway: an image said to be frozen would mix moments.
        $t = Start-TestTarget -Path $shExe
        try {
            $r = New-ShRegion $t 4 0
            $sharer = $t.Send("sweeper $($r.Hex) 4")
            $t.Send('tracesweeper') | Should -Be '0'
            $e = { Save-MemoryImage -Id $t.Id -Path (New-ImagePath) -Freeze -Method Hash -ErrorAction Stop } | Should -Throw -PassThru
            $e.FullyQualifiedErrorId | Should -BeLike 'ProcessAlreadyTraced,*'
            $e.Exception.Message | Should -BeLike "*process $sharer, which shares its memory,*"
            Wait-Sweep $t ([uint64]$t.Send('sweeps')) | Should -BeTrue -Because 'the target answers and its sharer sweeps on: nothing was left stopped'
        } finally { Stop-TestTarget $t }
    }

    It 'a target that is a vfork child (its parent asleep in vfork, sharing its memory): -Freeze saves it and lets it go' {
        # The parent shares the memory but waits for the frozen child: it is left asleep, not refused as a vfork waiter.
        $t = Start-TestTarget -Path $shExe
        try {
            $child = [int]$t.Send('vforkserve')
            $child | Should -Not -Be $t.Id
            $hex = $t.Send('map 4')
            $r = [pscustomobject]@{ Hex = $hex; Address = [Convert]::ToUInt64($hex, 16); Pages = 4 }
            $null = $t.Send("fill $hex 4 9")
            $img = Save-MemoryImage -Id $child -Path (New-ImagePath) -Freeze -Method Hash
            $img.Frozen | Should -BeTrue
            $img.ProcessId | Should -Be $child
            (Get-RestoredRegion $img.Path $r $t.PageSize) | Select-Object -Unique | Should -Be 9
            $null = $t.Send("fill $hex 4 10") # the child runs again
            $t.Process.StandardInput.WriteLine('exit') # the child exits; its parent takes the commands back
            $t.Send('sweeps') | Should -Be '0' -Because 'the parent serves again once its vfork child is gone'
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 15: writes of a process sharing the target''s memory, and tracking of it' -Tag 'Security', 'Round15Shared', 'WriteTracking' -Skip:([bool]$ShareSkip) {
    It 'a <Method> increment holds the pages the sharer wrote' -ForEach $Methods {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $shExe
        $dir = New-ImagePath 'c'
        try {
            $r = New-ShRegion $t 16
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method $Method
            $null = $t.Send("sibwrite $($r.Hex) 3 2 99")
            $inc = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method $Method
            Test-MemoryImage -Path $inc.Path | Should -BeTrue
            $bytes = Get-RestoredRegion $inc.Path $r $t.PageSize
            @(3, 4 | ForEach-Object { $bytes[$_ * $t.PageSize] }) | Should -Be @(99, 99) -Because 'the sharer wrote pages 3 and 4 through the same page table'
            $bytes[5 * $t.PageSize] | Should -Be 7
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'the sharer''s pid while the target''s memory is tracked: <Name> is WriteTrackingInUse' -Skip:([bool]$WtSkip) -ForEach @(
        @{ Name = 'Enable-WriteTracking'; Command = { param($id) Enable-WriteTracking -Id $id } }
        @{ Name = 'Watch-DirtyPage -Method WriteProtect'; Command = { param($id) Watch-DirtyPage -Id $id -Method WriteProtect -Count 1 -Interval 0.1 } }
        @{ Name = 'Search-PageMap -WriteProtect'; Command = { param($id) Search-PageMap -Id $id -WriteProtect } }
    ) {
        # One mm, one set of write-protect bits: a second tracking through the sharer's pid would reset the target's.
        $t = Start-TestTarget -Path $shExe
        try {
            $r = New-ShRegion $t 4
            $null = Enable-WriteTracking -Id $t.Id
            $sharer = [int]$t.Send("sweeper $($r.Hex) 1")
            $e = { & $Command $sharer -ErrorAction Stop } | Should -Throw -PassThru
            $e.FullyQualifiedErrorId | Should -BeLike 'WriteTrackingInUse,*'
            $null = $t.Send('sweepstop')
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'After round 15: a soft-dirty clear through a sharer''s pid clears the target''s bits too' -Tag 'Security', 'Round15Shared', 'Kernel' -Skip:([bool]$ShareSkip) {
    # clear_refs clears the bits of an address space, and processes sharing one (CLONE_VM) share its bits, but the epochs
    # that tell a chain whether its bits were cleared since its parent were kept per process: a SoftDirty chain of the
    # target trusted bits that a clear through its sharer's pid had taken, and its increment lacked the writes made before
    # that clear. Now a clear records a new epoch for every process MemorySharers finds, before and after it (the lead,
    # after round 15). Needs soft-dirty: it runs in the kernel VM (build.ps1 KernelTest).
    It 'Clear-SoftDirty of the sharer between two SoftDirty saves of the target: the increment compares contents and holds the write' -ForEach @(
        @{ Skip = $(if (-not $k.SoftDirty) { "no soft-dirty in this kernel ($($k.SoftDirtyReason)); the kernel VM runs it" }) }
    ) {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $shExe
        $dir = New-ImagePath 'c'
        try {
            $r = New-ShRegion $t 4
            $swept = New-ShRegion $t 1
            $sharer = [int]$t.Send("sweeper $($swept.Hex) 1")
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method SoftDirty
            $null = $t.Send("poke $($r.Hex) 2 1 42")
            Clear-SoftDirty -Id $sharer -Confirm:$false
            $inc = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method SoftDirty -WarningVariable warned -WarningAction SilentlyContinue
            ($warned -join ' ') | Should -BeLike "*process $($t.Id) was cleared since the parent image*"
            $bytes = Get-RestoredRegion $inc.Path $r $t.PageSize
            $bytes[2 * $t.PageSize] | Should -Be 42 -Because 'the write made before the clear through the sharer''s pid is in the increment'
            $bytes[3 * $t.PageSize] | Should -Be 7
            $null = $t.Send('sweepstop')
        } finally { Stop-TestTarget $t }
    }
}

Describe 'Round 15: an io_uring holding the target''s pages, given to another process' -Tag 'Security', 'Round15Shared', 'WriteTracking' -Skip:([bool]$UringSkip) {
    # Before: the registered buffers were read from the target's own io_uring descriptors only. A ring handed to another
    # process (fork, SCM_RIGHTS) and closed by the target still writes the target's pinned pages (IORING_OP_READ_FIXED),
    # and only VmPin says so: a WriteProtect increment kept the parent's bytes there and tested valid, and a watch
    # missed the pages. Likewise a ring that a process sharing the target's memory (CLONE_VM) holds, whose VmPin is the
    # target's too. (Cloning the buffers into a ring of another process, IORING_REGISTER_CLONE_BUFFERS, is refused by
    # the kernel across address spaces: EINVAL.)
    BeforeAll {
        $script:dataFile = Join-Path $TestDrive 'data.bin'
        $bytes = [byte[]]::new(64KB)
        [Random]::new(15).NextBytes($bytes)
        [IO.File]::WriteAllBytes($dataFile, $bytes)
        $script:data = $bytes
    }

    It 'a WriteProtect increment holds what READ_FIXED wrote through the ring the target gave to a process <How>' -ForEach $Helpers {
        $t = Start-TestTarget -Path $shExe
        $dir = New-ImagePath 'u'
        try {
            $r = New-ShRegion $t 16
            $null = $t.Send("ringaway $($r.Hex) 4 4$Arg")
            (Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { $_.LinkTarget -eq 'anon_inode:[io_uring]' }) | Should -BeNullOrEmpty -Because 'the target holds no io_uring'
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method WriteProtect
            $t.Send("ringread $dataFile") | Should -Be ([string](4 * $t.PageSize))
            $inc = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method WriteProtect
            Test-MemoryImage -Path $inc.Path | Should -BeTrue
            $bytes = Get-RestoredRegion $inc.Path $r $t.PageSize
            $written = [ArraySegment[byte]]::new($bytes, 4 * $t.PageSize, 4 * $t.PageSize)
            [Linq.Enumerable]::SequenceEqual($written, [ArraySegment[byte]]::new($data, 0, 4 * $t.PageSize)) | Should -BeTrue -Because 'the kernel wrote pages 4-7 of the registered buffer'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'a WriteProtect watch counts the pages READ_FIXED wrote through the ring the target gave to a process <How>' -ForEach $Helpers {
        $t = Start-TestTarget -Path $shExe
        try {
            $r = New-ShRegion $t 16
            $null = $t.Send("ringaway $($r.Hex) 4 4$Arg")
            $null = Enable-WriteTracking -Id $t.Id
            $n = 0
            $samples = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.5 | ForEach-Object {
                if (++$n -eq 1) { $null = $t.Send("ringread $dataFile") }
                $_
            })
            $samples.Count | Should -Be 2
            $end = $r.Address + 16 * $t.PageSize
            $pages = @(foreach ($range in $samples[1].Ranges) {
                for ($a = [Math]::Max([uint64]$range.Start, $r.Address); $a -lt [Math]::Min([uint64]$range.End, $end); $a += $t.PageSize) { [int](($a - $r.Address) / $t.PageSize) }
            })
            foreach ($p in 4..7) { $pages | Should -Contain $p -Because "the kernel wrote page $p of the registered buffer in sample 2's interval" }
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'Round 15: a provided-buffer ring in the target''s own memory, which the kernel advances' -Tag 'Security', 'Round15Shared', 'WriteTracking' -Skip:([bool]$UringSkip) {
    # Before: a provided-buffer ring (IORING_REGISTER_PBUF_RING) in the process's own memory, consumed incrementally
    # (IOU_PBUF_RING_INC, Linux 6.12), has its entry's address and length advanced by the kernel, through its own mapping
    # of the pinned ring, at every completion: no page-table bit, VmPin or fdinfo line shows it. A WriteProtect increment
    # kept the entry as the parent had it, and tested valid.
    It 'a WriteProtect increment holds the ring entry the kernel advanced' {
        $t = Start-TestTarget -Path $shExe
        $dir = New-ImagePath 'pbuf'
        $file = Join-Path $TestDrive 'pbuf.bin'
        [IO.File]::WriteAllBytes($file, [byte[]](1..200))
        try {
            $r = New-ShRegion $t 4
            $reply = $t.TrySend("pbufinc $($r.Hex) 0 2")
            if ($reply -notmatch '^OK') { Set-ItResult -Skipped -Because "incremental provided-buffer rings (IOU_PBUF_RING_INC, Linux 6.12) are not available here ($reply)"; return }
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method WriteProtect
            $t.Send("pbufread $file 100") | Should -Be '100'
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method WriteProtect
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/now" -Method Hash
            Test-MemoryImage -Path "$dir/inc" | Should -BeTrue
            $inc = Get-RestoredRegion "$dir/inc" $r $t.PageSize
            $now = Get-RestoredRegion "$dir/now" $r $t.PageSize
            [BitConverter]::ToUInt32($now, 8) | Should -Be ($t.PageSize - 100) -Because 'the kernel took 100 bytes of the entry''s buffer'
            [Linq.Enumerable]::SequenceEqual($inc, $now) | Should -BeTrue -Because 'the increment holds the entry the kernel advanced, and the data it read'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'Round 15: newer kernel features in tracked, saved and migrated memory' -Tag 'Security', 'Round15Shared', 'WriteTracking' {
    BeforeAll {
        $script:MadvPageout = 21; $script:MadvGuardInstall = 102
        # Sends a command, then waits until the target sleeps in read(2) again: after its answer it still runs its stdio
        # code and returns from write(2) (the kernel updates its rseq area), which a save taken at once may miss.
        function Send-Idle($Target, [string] $Command) { $reply = $Target.Send($Command); Wait-ImgTargetIdle $Target; $reply }
        # The chain (or final image) $Image restores what a full Hash image of the target taken now restores: all of it, or
        # with $Region that region only (after a freeze the kernel may write the thread's rseq area as it resumes it).
        function Assert-IsTheMoment($Target, [string] $Image, [string] $Because, $Region) {
            $now = New-ImagePath 'now'
            $null = Save-MemoryImage -Id $Target.Id -Path $now -Method Hash
            Test-MemoryImage -Path $Image | Should -BeTrue
            if (-not $Region) { Compare-RestoredImage $Image $now $root | Should -BeNullOrEmpty -Because $Because; return }
            $got = Get-RestoredRegion $Image $Region $Target.PageSize
            [Linq.Enumerable]::SequenceEqual($got, (Get-RestoredRegion $now $Region $Target.PageSize)) | Should -BeTrue -Because $Because
        }
    }

    It 'mseal''d memory (a region and every executable mapping): a <Method> chain begun with -Freeze holds the writes' -Skip:([bool]$SealSkip) -ForEach $Methods {
        # Sealing forbids mprotect, munmap, mremap and discarding madvise, not writes, userfaultfd registration or the
        # injection's writes into an executable image's padding: tracking and saves work as on unsealed memory.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $shExe
        $dir = New-ImagePath 'seal'
        try {
            $r = New-ShRegion $t 16
            $t.Send("seal $($r.Hex) 16") | Should -Be '0'
            [int]$t.Send('sealexec') | Should -BeGreaterThan 0
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method $Method -Freeze
            $null = Send-Idle $t "poke $($r.Hex) 2 3 55"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method $Method
            Assert-IsTheMoment $t "$dir/inc" 'the writes into the sealed region are in the increment'
            $t.Send('sweeps') | Should -Be '0' -Because 'the target runs on after the injections and freezes'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'MAP_DROPPABLE pages dropped between two saves (MADV_PAGEOUT): the <Method> increment restores them as the kernel now has them' -Skip:([bool]$DropSkip) -ForEach $Methods {
        # A droppable page the kernel drops reads as zeros again, though nothing wrote it.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $shExe
        $dir = New-ImagePath 'drop'
        try {
            $hex = $t.Send('droppable 8')
            $null = $t.Send("poke $hex 0 8 42")
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method $Method
            Send-Idle $t "madvise $hex 2 4 $MadvPageout" | Should -Be '0'
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method $Method
            Assert-IsTheMoment $t "$dir/inc" 'the dropped pages are zeros now'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'pages moved away with mremap(MREMAP_DONTUNMAP) between two saves: the <Method> increment restores both places as they are' -ForEach $Methods {
        # The old range stays mapped but empty (zeros, with nothing written there); the pages live on at a new address.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $shExe
        $dir = New-ImagePath 'dontunmap'
        try {
            $r = New-ShRegion $t 8 33
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/full" -Method $Method
            $moved = $t.TrySend("dontunmap $($r.Hex) 8")
            if ($moved -notmatch '^OK ([0-9a-f]+)$') { Set-ItResult -Skipped -Because "mremap(MREMAP_DONTUNMAP) is not available here ($moved)"; return }
            $null = Send-Idle $t "poke $($Matches[1]) 1 1 77"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/inc" -Parent "$dir/full" -Method $Method
            Assert-IsTheMoment $t "$dir/inc" 'the emptied range reads as zeros and the moved pages are at their new address'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'guard regions installed over written pages during a <Method> migration: the final image is the memory after' -Skip:([bool]$GuardSkip) -ForEach $Methods {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $shExe
        try {
            $r = New-ShRegion $t 16 5
            $done = $false
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Destination (New-ImagePath 'm') -Bandwidth 4MB -MaxIterations 3 -StopThreshold 0 | ForEach-Object {
                if (-not $done -and $_.PSObject.Properties['Phase'] -and "$($_.Phase)" -eq 'Live') {
                    $done = $true
                    $t.Send("madvise $($r.Hex) 2 3 $MadvGuardInstall") | Should -Be '0'
                    $null = Send-Idle $t "poke $($r.Hex) 8 1 66"
                }
                $_
            })
            $done | Should -BeTrue -Because 'a live round ran'
            $final = ($out | Where-Object { $_.PSObject.Properties['FinalImage'] }).FinalImage
            Assert-IsTheMoment $t $final 'the guard pages and the write after them are in the final image' $r
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}
