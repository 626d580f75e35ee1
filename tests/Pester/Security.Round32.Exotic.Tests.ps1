#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 32 (Exotic): memory kinds no round attacked, against a real target (tests/native/exotarget.c), each
# restore compared byte for byte with what the target reads of its own memory (a page that faults there reads as zeros).
# New cases only (rounds 2-31: mseal of a region and of the executable mappings, MAP_DROPPABLE dropped by MADV_PAGEOUT,
# guard regions, memfd_secret, sealed memfds, MAP_GROWSDOWN, mlock and mlockall, PROT_NONE, KSM and a truncation between
# two saves were done).
# Found:
# - Memory that ends with the process (a deleted file, a memfd) truncated while an increment read it: the pages the process
#   does not map, which the save reads from the object, were listed while the object held them and were past its end when
#   read; the increment left them as they were, so the chain restored the parent's bytes there (measured: 4 pages of 57s
#   past the new end, where the process gets SIGBUS and a full image of that moment has nothing) in an image that
#   Test-MemoryImage called valid. A wrong increment that says valid (silent-data-loss class). Now such a page is gone:
#   zero where the chain has it.
# - A file truncated while a save read it: the pages past its new end, found present by the pagemap walk and gone when
#   read (the truncation takes them from every mapping of the file, a MAP_PRIVATE mapping's copies included), counted as
#   unreadable with reasons that were not theirs (memfd_secret, a userfaultfd, device memory), and Test-MemoryImage called
#   the image incomplete (measured: 5 of 8 pages, the save's first process_vm_readv held by strace while the file was cut
#   to 3 pages). Not a silent loss (the image said it was incomplete); a wrong diagnosis. Now such a page is what a page
#   unmapped during the save is: gone, in no image, zero where the chain had it.
# - Get-MemoryMapping called a private mapping of /dev/zero (private anonymous memory: the kernel's mmap_zero keeps the
#   device as its file, so maps names it, not deleted) SharedAnonymous. A wrong answer; the saves were exact (such a
#   mapping was compared by content, as shared memory is).
# Held (the cases below): a file truncated and grown back with holes under MAP_SHARED and MAP_PRIVATE (copied pages) between
# increments; MADV_WIPEONFORK and MADV_DONTFORK memory across a fork, the child (which inherits the parent's write-tracking
# descriptor) and the parent saved in chains; every mapping of the process sealed (mseal) under Enable-WriteTracking, a
# -Freeze increment and Disable-WriteTracking.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $R32ExoticIsRoot = $IsLinux -and (id -u) -eq '0'
    $R32ExoticWtSkip = if ($IsLinux) { Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $R32ExoticMethods = @(
        @{ Method = 'Hash'; Skip = $(if (-not $IsLinux) { 'Linux only' }) }
        @{ Method = 'WriteProtect'; Skip = $R32ExoticWtSkip }
    )
    # The truncation during a save: strace holds the save's first process_vm_readv, in a child PowerShell that is the
    # target's sibling (Yama's ptrace_scope 1 lets a user read only its descendants' memory).
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $R32ExoticMidSkip = if (-not $IsLinux) { 'Linux only' } else { Get-StraceSkipReason 'the save''s read is held with strace while the file is truncated' }
    if (-not $R32ExoticMidSkip -and $yama -ge 1 -and -not $R32ExoticIsRoot) { $R32ExoticMidSkip = "Yama's ptrace_scope ${yama}: the saving PowerShell is the target's sibling" }
    if (-not $R32ExoticMidSkip -and $yama -ge 3) { $R32ExoticMidSkip = "Yama's ptrace_scope $yama forbids ptrace" }
    $R32ExoticSealSkip = $null
    $R32ExoticForkSkip = $null
    if ($IsLinux) {
        $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/exotarget')
        try {
            $a = $probe.Send('anon 2 1')
            # MADV_WIPEONFORK (18, Linux 4.14) and MADV_DONTFORK (10).
            $reply = $probe.TrySend("madvise $a 0 1 18")
            if ($reply -ne 'OK 0') { $R32ExoticForkSkip = "MADV_WIPEONFORK is not available here ($reply)" }
            # mseal (Linux 6.10), of every mapping: the probe is sealed for good, and ended.
            $reply = $probe.TrySend('sealall')
            if ($reply -notmatch '^OK \d+$') { $R32ExoticSealSkip = "mseal(2) of every mapping is not available here ($reply)" }
        } finally { Stop-TestTarget $probe }
    }
    $R32ExoticTruncations = @(
        @{ How = 'shared'; Name = 'MAP_SHARED' }
        @{ How = 'private'; Name = 'MAP_PRIVATE, every page copied' }
    )
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state32exotic'
    $script:R32ExoticExe = Join-Path $PSScriptRoot '../native/bin/exotarget'
    $script:R32ExoticRoot = New-Item -ItemType Directory (Join-Path $TestDrive 'r32exotic')
    $script:R32ExoticModule = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    function New-R32Path([string] $Prefix) { Join-Path $R32ExoticRoot "$Prefix-$([guid]::NewGuid().ToString('n'))" }
    # Saves $Mapping of $Target into $Image (-Parent $Parent where given; Hash) in a child PowerShell under strace, which
    # holds the save's first process_vm_readv three seconds at its entry; a thread of the child truncates the file at $Cut
    # (a path, /proc/PID/fd/N for a deleted file) to $Bytes once a thread of it waits there. Returns Invoke-StraceChild's
    # result; its Out says "cut=held" (or "cut=never") and "saved=<the image's UnreadablePages>".
    function Invoke-R32HeldSave($Target, [string] $Image, [string] $Mapping, [string] $Cut, [long] $Bytes, [string] $Parent) {
        $parentArgument = if ($Parent) { "-Parent '$Parent'" } else { '' }
        $script = @"
`$cutter = Start-ThreadJob {
    `$deadline = [DateTime]::UtcNow.AddSeconds(120)
    while ([DateTime]::UtcNow -lt `$deadline) {
        foreach (`$task in [IO.Directory]::GetDirectories('/proc/self/task')) {
            `$call = try { [IO.File]::ReadAllText("`$task/syscall") } catch { '' }
            if (`$call -match '^310 ') { `$f = [IO.File]::Open('$Cut', 'Open', 'ReadWrite'); `$f.SetLength($Bytes); `$f.Dispose(); 'cut=held'; return }
        }
        [Threading.Thread]::Sleep(10)
    }
    'cut=never'
}
`$i = Save-MemoryImage -Id $($Target.Id) -Path '$Image' $parentArgument -Method Hash -Mapping '$Mapping' -WarningAction SilentlyContinue
`$cutter | Wait-Job | Receive-Job
"saved=`$(`$i.UnreadablePages)"
"@
        Invoke-StraceChild -Module $R32ExoticModule -Script $script -Strace @('-e', 'trace=process_vm_readv', '-e', 'inject=process_vm_readv:delay_enter=3000000:when=1')
    }
    # The bytes of $Pages pages at $Hex as the restore of $Image holds them (the restored mapping that holds them all).
    function Get-R32Restored([string] $Image, [string] $Hex, [int] $Pages, [int] $PageSize) {
        $address = [Convert]::ToUInt64($Hex, 16)
        $restored = Restore-MemoryImage -Path $Image -Destination (New-R32Path 'restore')
        $m = $restored | Where-Object { $_.Start -le $address -and $address + [uint64]$Pages * $PageSize -le $_.End } | Select-Object -First 1
        if (-not $m) { throw "the restore of $Image has no mapping holding 0x$Hex" }
        $bytes = [IO.File]::ReadAllBytes($m.File)
        $from = [int]($address - $m.Start)
        , [byte[]]$bytes[$from..($from + $Pages * $PageSize - 1)]
    }
    # The same pages as the target reads them now (dump: a page that faults reads as zeros), and how many faulted.
    function Get-R32Live($Target, [string] $Hex, [int] $Pages) {
        $path = New-R32Path 'dump'
        $faulted = [int]$Target.Send("dump $Hex $Pages $path")
        [pscustomobject]@{ Bytes = [IO.File]::ReadAllBytes($path); Faulted = $faulted }
    }
    # The first byte of each page, for a readable failure message ("55,55,0,...").
    function Format-R32Pages([byte[]] $Bytes, [int] $PageSize) { (0..($Bytes.Length / $PageSize - 1) | ForEach-Object { $Bytes[$_ * $PageSize] }) -join ',' }
    # Which of the pages are present now (pagemap), as a bool per page.
    function Get-R32Present($Target, [string] $Hex, [int] $Pages) {
        @(Get-PageMap -Id $Target.Id -Address ([Convert]::ToUInt64($Hex, 16)) -Length ([uint64]$Pages * $Target.PageSize) | ForEach-Object { [bool]$_.Present })
    }
    # Asserts that $Image is complete and restores exactly what the target holds in the pages (a page of a file mapping not
    # present at the save, $Absent, is the file's and restores as zeros).
    function Assert-R32Exact($Target, [string] $Image, [string] $Hex, [int] $Pages, [string] $Because, [bool[]] $Present) {
        (Get-MemoryImage -Path $Image | Measure-Object UnreadablePages -Sum).Sum | Should -Be 0 -Because "$Because (no page of the chain unreadable)"
        Test-MemoryImage -Path $Image | Should -BeTrue -Because $Because
        $got = Get-R32Restored $Image $Hex $Pages $Target.PageSize
        $live = (Get-R32Live $Target $Hex $Pages).Bytes
        if ($Present) {
            for ($p = 0; $p -lt $Pages; $p++) {
                if (-not $Present[$p]) { [Array]::Clear($live, $p * $Target.PageSize, $Target.PageSize) }
            }
        }
        (Format-R32Pages $got $Target.PageSize) | Should -Be (Format-R32Pages $live $Target.PageSize) -Because $Because
        [Linq.Enumerable]::SequenceEqual($got, $live) | Should -BeTrue -Because $Because
    }
}

Describe 'Round 32 (Exotic): memory kinds against a real target' -Tag 'Security', 'Round32Exotic' {
    It 'a file truncated while a save reads it (<Name>): the pages past its new end are gone, the image complete and exact' -Skip:([bool]$R32ExoticMidSkip) -ForEach $R32ExoticTruncations {
        $t = Start-TestTarget -Path $R32ExoticExe
        try {
            $file = New-R32Path 'file'
            $hex = $t.Send("file $file 8 $How 55")
            $image = New-R32Path 'mid'
            $r = Invoke-R32HeldSave $t $image $file $file (3 * $t.PageSize)
            $r.Out | Should -Contain 'cut=held' -Because "the file was truncated while the save's read was held ($($r.All))"
            $r.Out | Should -Contain 'saved=0' -Because "the pages past the new end are gone, not unreadable ($($r.All))"
            (Get-R32Live $t $hex 8).Faulted | Should -Be 5 -Because 'the process itself gets SIGBUS past the end of its file'
            Assert-R32Exact $t $image $hex 8 'the image holds the 3 pages left, and nothing past the end'
            $t.Send('dump ' + $hex + ' 3 ' + (New-R32Path 'alive')) | Should -Be '0' -Because 'the target runs on'
        } finally { Stop-TestTarget $t }
    }

    It 'a deleted file truncated while an increment reads it (<Name>): the pages of the file past its new end are zero, not the parent''s' -Skip:([bool]$R32ExoticMidSkip) -ForEach $R32ExoticTruncations {
        # Memory that ends with the process: the pages it does not map are read from the file (a descriptor it holds). The
        # increment's read of the 4 pages it maps is held; meanwhile the file is cut to those 4 pages, so the 4 it does not
        # map, which the file held when the save listed them, are gone when it reads them. (Before: left as they were, the
        # parent's 57s, in an increment that Test-MemoryImage called valid.)
        $t = Start-TestTarget -Path $R32ExoticExe
        try {
            $file = New-R32Path 'deleted'
            $hex = $t.Send("file $file 8 $How 55")
            $t.Send("pwrite $hex 0 8 57") | Should -Be '0'
            $fd = (Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { $_.LinkTarget -eq $file }).Name
            Remove-Item -LiteralPath $file
            $t.Send("madvise $hex 4 4 4") | Should -Be '0' -Because 'MADV_DONTNEED: the process maps pages 0-3 only'
            $chain = New-R32Path 'cutchain'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method Hash -Mapping $file
            Assert-R32Exact $t "$chain/0" $hex 4 'the pages the process maps'
            $r = Invoke-R32HeldSave $t "$chain/1" $file "/proc/$($t.Id)/fd/$fd" (4 * $t.PageSize) "$chain/0"
            $r.Out | Should -Contain 'cut=held' -Because "the file was truncated while the save's read was held ($($r.All))"
            $r.Out | Should -Contain 'saved=0' -Because "nothing is unreadable ($($r.All))"
            (Get-R32Live $t $hex 8).Faulted | Should -Be 4 -Because 'the process itself gets SIGBUS past the end of its file'
            Assert-R32Exact $t "$chain/1" $hex 8 'the file''s pages past its new end are gone, not the parent''s bytes'
        } finally { Stop-TestTarget $t }
    }

    It 'a private mapping of /dev/zero is Anonymous, a shared one SharedAnonymous, and <Method> chains of both are exact' -ForEach $R32ExoticMethods {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $R32ExoticExe
        try {
            $private = $t.Send('devzero 8 private 12')
            $shared = $t.Send('devzero 8 shared 13')
            $maps = @(Get-MemoryMapping -Id $t.Id)
            $pm = $maps | Where-Object Start -eq ([Convert]::ToUInt64($private, 16))
            $sm = $maps | Where-Object Start -eq ([Convert]::ToUInt64($shared, 16))
            $pm.Path | Should -Be '/dev/zero'
            "$($pm.Kind)" | Should -Be 'Anonymous' -Because 'a private mapping of /dev/zero is private anonymous memory (mmap_zero)'
            "$($sm.Kind)" | Should -Be 'SharedAnonymous' -Because 'a shared mapping of /dev/zero is shared memory (shmem)'
            $chain = New-R32Path 'devzero'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
            $null = $t.Send("fill $private 2 2 14"); $null = $t.Send("madvise $private 5 1 4"); $null = $t.Send("fill $shared 3 1 15")
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method
            Assert-R32Exact $t "$chain/1" $private 8 'the private pages written and dropped (MADV_DONTNEED)'
            Assert-R32Exact $t "$chain/1" $shared 8 'the shared page written'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'files truncated and grown back with holes under MAP_SHARED and MAP_PRIVATE (copied pages): <Method> increments are exact' -ForEach $R32ExoticMethods {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $R32ExoticExe
        $ps = $t.PageSize
        try {
            # Private: every page copied (11) while the file holds 33; shared: the file holds 55.
            $private = $t.Send("file $(New-R32Path 'private') 8 private 11")
            $null = $t.Send("pwrite $private 0 8 33")
            $shared = $t.Send("file $(New-R32Path 'shared') 8 shared 55")
            $chain = New-R32Path 'regrow'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
            $t.Send("truncate $private $(4 * $ps)") | Should -Be '0'
            $t.Send("truncate $shared $(3 * $ps)") | Should -Be '0'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method
            Assert-R32Exact $t "$chain/1" $private 8 'the private copies past the new end are gone with the file''s pages'
            Assert-R32Exact $t "$chain/1" $shared 8 'the shared pages past the new end are gone'
            # Grown back: holes read as zeros; one page of each written through the mapping, one with pwrite(2) (the file's).
            $null = $t.Send("truncate $private $(8 * $ps)"); $null = $t.Send("truncate $shared $(8 * $ps)")
            $null = $t.Send("pwrite $private 6 1 44"); $null = $t.Send("fill $private 7 1 88")
            $null = $t.Send("pwrite $shared 5 1 66"); $null = $t.Send("fill $shared 6 1 77")
            $presentPrivate = Get-R32Present $t $private 8
            $presentShared = Get-R32Present $t $shared 8
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/2" -Parent "$chain/1" -Method $Method
            Assert-R32Exact $t "$chain/2" $private 8 'the grown file''s pages: written through the mapping, or the file''s (not present: zeros)' $presentPrivate
            Assert-R32Exact $t "$chain/2" $shared 8 'the grown file''s pages: written through the mapping, or the file''s (not present: zeros)' $presentShared
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'MADV_WIPEONFORK and MADV_DONTFORK memory across a fork: <Method> chains of the child and of the parent are exact' -Skip:([bool]$R32ExoticForkSkip) -ForEach $R32ExoticMethods {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-TestTarget -Path $R32ExoticExe
        $ps = $t.PageSize
        try {
            $wipe = $t.Send('anon 8 21'); $nofork = $t.Send('anon 8 22'); $plain = $t.Send('anon 8 23'); $shared = $t.Send('devzero 8 shared 13')
            $t.Send("madvise $wipe 0 8 18") | Should -Be '0'
            $t.Send("madvise $nofork 0 8 10") | Should -Be '0'
            $parent = New-R32Path 'parent'
            $null = Save-MemoryImage -Id $t.Id -Path "$parent/0" -Method $Method
            # The child takes the commands over (with WriteProtect it holds the parent's write-tracking descriptor).
            $childId = [int]$t.Send('forkserve')
            $child = [pscustomobject]@{ Id = $childId; PageSize = $ps; Target = $t }
            $child | Add-Member -MemberType ScriptMethod -Name Send -Value { param([string] $Command) $this.Target.Send($Command) }
            try {
                @(Get-MemoryMapping -Id $childId | Where-Object Start -eq ([Convert]::ToUInt64($nofork, 16))).Count | Should -Be 0 -Because 'MADV_DONTFORK memory is not in the child'
                # The child maps none of the shared memory's pages (fork copies no page table entry of a shared mapping): a save
                # reads them from the object, which an unprivileged user cannot open (no descriptor; map_files needs privilege)
                # and counts as unreadable (docs/Save-MemoryImage.md). The child reads them first, as it would use them.
                $null = Get-R32Live $child $shared 8
                $kid = New-R32Path 'child'
                $null = Save-MemoryImage -Id $childId -Path "$kid/0" -Method $Method
                Assert-R32Exact $child "$kid/0" $wipe 8 'MADV_WIPEONFORK memory is empty in the child'
                $null = $child.Send("fill $wipe 1 1 31"); $null = $child.Send("fill $plain 4 1 33"); $null = $child.Send("fill $shared 4 1 32")
                $null = Save-MemoryImage -Id $childId -Path "$kid/1" -Parent "$kid/0" -Method $Method
                foreach ($hex in $wipe, $plain, $shared) { Assert-R32Exact $child "$kid/1" $hex 8 "the child's writes at 0x$hex" }
            } finally {
                Disable-WriteTracking -Id $childId -ErrorAction SilentlyContinue
                $t.Process.StandardInput.WriteLine('exit')
                $t.Process.StandardInput.Flush()
            }
            # The parent answers again once the child has exited.
            $null = $t.Send("fill $plain 6 1 34")
            $null = Save-MemoryImage -Id $t.Id -Path "$parent/1" -Parent "$parent/0" -Method $Method
            foreach ($hex in $wipe, $nofork, $plain, $shared) { Assert-R32Exact $t "$parent/1" $hex 8 "the parent's memory at 0x$hex (the child's shared write included)" }
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'every mapping sealed (mseal): Enable-WriteTracking, a -Freeze increment and Disable-WriteTracking leave the target as it was' -Skip:([bool]($R32ExoticSealSkip -or $R32ExoticWtSkip)) {
        $t = Start-TestTarget -Path $R32ExoticExe
        try {
            $region = $t.Send('anon 8 21')
            $chain = New-R32Path 'sealed'
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method Hash
            [int]$t.Send('sealall') | Should -BeGreaterThan 0
            $status = { (Get-Content "/proc/$($t.Id)/status" | Where-Object { $_ -match '^(SigBlk|SigIgn|SigCgt|TracerPid|VmSize):' }) -join '; ' }
            $before = & $status
            $layout = { (Get-MemoryMapping -Id $t.Id | ForEach-Object { '{0:x}-{1:x} {2} {3}' -f $_.Start, $_.End, $_.Permissions, $_.Path }) -join '; ' }
            $mapsBefore = & $layout
            Enable-WriteTracking -Id $t.Id -ErrorAction Stop | Out-Null
            $null = $t.Send("fill $region 3 1 41")
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect -Freeze
            Assert-R32Exact $t "$chain/1" $region 8 'the write into the sealed region'
            $null = $t.Send("fill $region 4 1 42")
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/2" -Parent "$chain/1" -Method WriteProtect
            Assert-R32Exact $t "$chain/2" $region 8 'the second write into the sealed region'
            Disable-WriteTracking -Id $t.Id -ErrorAction Stop
            (& $status) | Should -Be $before -Because 'the signal mask, handlers, tracer and size are as before'
            & $layout | Should -Be $mapsBefore -Because 'nothing is left mapped in the target'
            @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { $_.LinkTarget -like '*userfaultfd*' }).Count | Should -Be 0 -Because 'the tracking''s descriptor is closed'
            $t.Send("fill $region 5 1 43") | Should -Be '' -Because 'the target runs on'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}
