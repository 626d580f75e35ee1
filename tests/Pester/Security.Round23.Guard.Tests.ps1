#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-third attack round (guard): the WriteProtect tracker on mappings that are not private anonymous
# memory. New cases only (rounds 2-22: Security.Round*.Tests.ps1). Round 22 found that a process whose file or memfd
# mapping its write tracking registered spins in madvise for ever when it installs a guard region there
# (MADV_GUARD_INSTALL): in such a VMA the kernel leaves a uffd-wp marker where it zaps a protected page, and the guard
# install zaps and retries until no entry is left. Target: tests/native/imgtarget.c. Each kernel feature is probed.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    # Guard regions in a mapping of a file or of shared memory (MADV_GUARD_INSTALL: anonymous memory 6.13, files 6.15), and
    # the mapping kinds the machine can make (hugetlb needs reserved huge pages, System V segments an IPC namespace that allows them).
    $GuardSkip = $WtSkip
    $KindSkip = @{}
    if (-not $WtSkip) {
        $probe = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/imgtarget')
        try {
            $shm = ($probe.Send('shm 2') -split ' ')[0]
            $reply = $probe.TrySend("guard $shm 0 1")
            if ($reply -ne 'OK') { $GuardSkip = "guard regions in a memfd mapping (MADV_GUARD_INSTALL, Linux 6.15) are not available here ($reply)" }
            $reply = $probe.TrySend('hugetlb 1')
            if ($reply -notmatch '^OK') { $KindSkip['hugetlb'] = "no hugetlb mapping can be made here ($reply; vm.nr_hugepages is $(Get-Content /proc/sys/vm/nr_hugepages -ErrorAction Ignore))" }
            $reply = $probe.TrySend('sysvshm 8 1')
            if ($reply -notmatch '^OK') { $KindSkip['sysv'] = "no System V segment can be made here ($reply)" }
        } finally { Stop-TestTarget $probe }
    }
    # Each kind of mapping that is not private anonymous memory, and how imgtarget makes it (the address is the reply's first word).
    $Kinds = @(
        @{ Kind = 'memfd (MAP_SHARED)'; Make = 'shm 8'; Key = 'memfd' }
        @{ Kind = 'memfd (MAP_PRIVATE)'; Make = 'memfd 8 0'; Key = 'memfd' }
        @{ Kind = 'file (MAP_SHARED)'; Make = 'mapfile FILE 8 1'; Key = 'file' }
        @{ Kind = 'file (MAP_PRIVATE)'; Make = 'mapfile FILE 8 0'; Key = 'file' }
        @{ Kind = 'file (MAP_PRIVATE), every page copied on write'; Make = 'mapfile FILE 8 0'; Key = 'file'; Copy = $true }
        @{ Kind = 'shared anonymous memory (MAP_SHARED | MAP_ANONYMOUS)'; Make = 'mapx 8 1'; Key = 'shared' }
        @{ Kind = 'System V segment'; Make = 'sysvshm 8 1'; Key = 'sysv' }
    )
    $Ways = 'Enable-WriteTracking', 'Save-MemoryImage -Method WriteProtect', 'mapped after Enable-WriteTracking, then a WriteProtect increment'
    $GuardCases = @(foreach ($w in $Ways) { foreach ($k in $Kinds) { $k + @{ Way = $w; Skip = $(if ($GuardSkip) { $GuardSkip } else { $KindSkip[$k.Key] }) } } })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r23g')
    function New-ImagePath([string] $Prefix = 'i') { Join-Path $root "$Prefix-$([guid]::NewGuid().ToString('n'))" }
    # A new file of $Pages pages of zeros, for the target to map.
    function New-PageFile([int] $Pages) {
        $f = Join-Path $root "f-$([guid]::NewGuid().ToString('n'))"
        [IO.File]::WriteAllBytes($f, [byte[]]::new($Pages * 4096))
        $f
    }
    # Makes the mapping of a case in the target, fills it (copying every page of a private file mapping where asked); its address (hex).
    function New-KindMapping($Target, [string] $Make, [bool] $Copy) {
        $hex = ((Send-ImgTarget $Target $Make.Replace('FILE', (New-PageFile 8))) -split ' ')[0]
        if ($Make -notlike 'sysvshm*') { $null = Send-ImgTarget $Target "fill $hex 8 3" }
        if ($Copy) { $null = Send-ImgTarget $Target "write $hex 0 8" }
        $hex
    }
    # The VmFlags of the mapping at $Hex (smaps).
    function Get-VmFlags([int] $Id, [string] $Hex) {
        @((Get-MemoryMapping -Id $Id | Where-Object Start -EQ ([Convert]::ToUInt64($Hex, 16))).VmFlags)
    }
    # Sends a command and returns the target's answer, or $null where none came within a minute (a hang guard only: the
    # answer is pending on the target's output, so the target must be disposed of afterwards).
    function Send-Within($Target, [string] $Command) {
        $Target.Process.StandardInput.WriteLine($Command)
        $Target.Process.StandardInput.Flush()
        $line = $Target.Process.StandardOutput.ReadLineAsync()
        if ($line.Wait([TimeSpan]::FromMinutes(1))) { $line.Result } else { $null }
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 23: guard regions in mappings that are not private anonymous memory, under write tracking' -Tag 'WriteTracking', 'Security', 'Round23Guard' -Skip:([bool]$WtSkip) {
    # Before: the write tracking registered every writable mapping of the process for userfaultfd write-protect. In a VMA
    # that is not anonymous (a file, a memfd, shmem, a System V segment) a zap leaves a uffd-wp marker where a protected
    # page was, and on Linux 6.18 MADV_GUARD_INSTALL there zaps and retries until no entry is left: the process spun in
    # madvise until the tracking ended (measured: 5 of 5 such kinds, after Enable-WriteTracking and after a WriteProtect
    # save alike; 0 of 1 anonymous). Now the tracking registers private anonymous memory only (smaps "uw") and counts the
    # other writable mappings by their contents.
    It '<Way>: a <Kind> is not registered, and a guard region installed there returns' -ForEach $GuardCases {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $t = Start-ImgTarget
        try {
            $anon = Send-ImgTarget $t 'map 8'
            $null = Send-ImgTarget $t "fill $anon 8 2"
            $image = New-ImagePath
            if ($Way -like 'mapped after*') {
                $null = Enable-WriteTracking -Id $t.Id
                $null = Save-MemoryImage -Id $t.Id -Path $image -Method WriteProtect
                $hex = New-KindMapping $t $Make ([bool]$Copy)
                $null = Save-MemoryImage -Id $t.Id -Path (New-ImagePath) -Parent $image -Method WriteProtect
            } else {
                $hex = New-KindMapping $t $Make ([bool]$Copy)
                if ($Way -eq 'Enable-WriteTracking') { $null = Enable-WriteTracking -Id $t.Id }
                else { $null = Save-MemoryImage -Id $t.Id -Path $image -Method WriteProtect }
            }
            Get-VmFlags $t.Id $anon | Should -Contain 'uw' -Because 'the tracking registers private anonymous memory'
            Get-VmFlags $t.Id $hex | Should -Not -Contain 'uw' -Because "the tracking leaves a $Kind unregistered"
            Send-Within $t "guard $hex 2 2" | Should -Be 'OK' -Because 'MADV_GUARD_INSTALL returns (hang guard: a minute)'
            Send-Within $t "guard $anon 2 2" | Should -Be 'OK' -Because 'a guard region in tracked anonymous memory is installed as ever'
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue # (ends a spin: the target can then be killed and reaped at once)
            Stop-ImgTarget $t
        }
    }

    It 'the target registers a file mapping with a userfaultfd of its own while it is tracked; its anonymous memory is EBUSY, as the help says' {
        # Before, the tracking held the file mapping too, and the target's own UFFDIO_REGISTER of it failed with EBUSY.
        $t = Start-ImgTarget
        try {
            $anon = Send-ImgTarget $t 'map 8'
            $file = New-KindMapping $t 'mapfile FILE 8 0' $false
            $null = Enable-WriteTracking -Id $t.Id
            Send-Within $t "uffdwp $anon 8" | Should -Be 'ERR uffdwp 16' -Because 'one userfaultfd registers a mapping (EBUSY)'
            Send-Within $t "uffdwp $file 8" | Should -Match '^OK' -Because 'the tracking leaves the file mapping to the process'
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-ImgTarget $t
        }
    }

    It 'a hugetlb mapping is not registered' -Skip:([bool]($KindSkip['hugetlb'])) {
        $t = Start-ImgTarget
        try {
            $hex = ((Send-ImgTarget $t 'hugetlb 1') -split ' ')[0]
            $null = Send-ImgTarget $t "write $hex 0 1"
            $null = Enable-WriteTracking -Id $t.Id
            Get-VmFlags $t.Id $hex | Should -Not -Contain 'uw'
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-ImgTarget $t
        }
    }
}

Describe 'Round 23: a WriteProtect chain and watch of mappings the tracking leaves unregistered' -Tag 'WriteTracking', 'Security', 'Round23Guard' -Skip:([bool]$WtSkip) {
    # Those mappings are compared by content now: what the target writes there, copies on write, drops or guards between
    # a parent and its increment must be what a full image of that moment holds, and a watch must see each write.
    It 'an increment after writes, copies, MADV_DONTNEED and guard regions in file and memfd mappings restores what a full image of that moment restores' -ForEach @(@{ GuardSkip = $GuardSkip }) {
        $t = Start-ImgTarget
        try {
            $maps = @(foreach ($k in 'shm 8', 'memfd 8 0', 'mapfile FILE 8 1', 'mapfile FILE 8 0') { New-KindMapping $t $k $false })
            $anon = Send-ImgTarget $t 'map 8'
            $null = Send-ImgTarget $t "fill $anon 8 2"
            $chain = New-ImagePath
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method WriteProtect
            foreach ($hex in $maps + $anon) { $null = Send-ImgTarget $t "write $hex 1 3" }
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect
            foreach ($hex in $maps) { $null = Send-ImgTarget $t "write $hex 5 1" }
            $null = Send-ImgTarget $t "dontneed $($maps[3]) 1 1"            # a copy of the private file mapping dropped: the file's page again
            $null = Send-ImgTarget $t "dontneed $($maps[1]) 2 1"            # and of the private memfd mapping
            if (-not $GuardSkip) { foreach ($hex in $maps) { Send-Within $t "guard $hex 6 1" | Should -Be 'OK' } }
            $null = Save-MemoryImage -Id $t.Id -Path "$chain/2" -Parent "$chain/1" -Method WriteProtect -WarningVariable warned
            $full = New-ImagePath
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash
            $warned | Should -BeNullOrEmpty
            Test-MemoryImage -Path "$chain/2" | Should -BeTrue
            Compare-RestoredImage "$chain/2" $full $root | Should -BeNullOrEmpty
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-ImgTarget $t
        }
    }

    It 'a WriteProtect watch of a tracking Enable-WriteTracking kept: sample 2 has the pages written in a private file mapping' {
        $t = Start-ImgTarget
        try {
            $hex = New-KindMapping $t 'mapfile FILE 8 0' $false
            $null = Enable-WriteTracking -Id $t.Id
            $base = [Convert]::ToUInt64($hex, 16)
            $done = $false
            $samples = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 3 -Interval 1 | ForEach-Object {
                    if (-not $done) { $done = $true; $null = Send-ImgTarget $t "write $hex 4 2" }
                    $_
                })
            $pages = @(foreach ($r in $samples[1].Ranges) { for ($a = [Math]::Max($r.Start, $base); $a -lt [Math]::Min($r.End, $base + 8 * 4096); $a += 4096) { ($a - $base) / 4096 } })
            $pages | Should -Contain 4
            $pages | Should -Contain 5
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-ImgTarget $t
        }
    }
}

Describe 'Round 23: a MAP_DROPPABLE mapping of this PowerShell under a WriteProtect watch of itself' -Tag 'WriteTracking', 'Security', 'Round23Guard' {
    # The kernel refuses to register a MAP_DROPPABLE mapping (Linux 6.11+) for userfaultfd. Another process's tracking
    # counted such a range's present pages at every look; this PowerShell's own tracker left it out: a watch of itself
    # never counted a write there (measured: sample 2 had none of the 3 pages written in its interval, a plain anonymous
    # mapping written alike had all 3). Now its present pages count at every look, and the watch says so once.
    BeforeAll {
        if (-not ('R23Mmap' -as [type])) {
            Add-Type -TypeDefinition @'
public static class R23Mmap {
    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    public static extern System.IntPtr mmap(System.IntPtr addr, System.UIntPtr length, int prot, int flags, int fd, System.IntPtr offset);
}
'@
        }
        $k = Get-SoftDirtySupport
        $script:SelfSkip = if (-not $k.PagemapScan -or -not $k.UffdWriteProtectAsync) { "no PAGEMAP_SCAN or userfaultfd WP_ASYNC here: $($k.PagemapScanReason) $($k.UffdWriteProtectAsyncReason)" }
        # PROT_READ | PROT_WRITE; MAP_ANONYMOUS (0x20) | MAP_DROPPABLE (0x08), and MAP_PRIVATE (0x02) for the plain mapping.
        $script:Length = 16 * 4096
        $script:Dropped = [R23Mmap]::mmap([IntPtr]::Zero, [UIntPtr]::new($Length), 3, 0x28, -1, [IntPtr]::Zero)
        $e = [Runtime.InteropServices.Marshal]::GetLastPInvokeError()
        if (-not $SelfSkip -and $Dropped -eq [IntPtr]-1) { $script:SelfSkip = "mmap(MAP_DROPPABLE) is refused here (errno $e; Linux 6.11+)" }
        $script:Plain = [R23Mmap]::mmap([IntPtr]::Zero, [UIntPtr]::new($Length), 3, 0x22, -1, [IntPtr]::Zero)
        # Writes one byte at the start of pages $From..$To of the mapping at $At.
        function Write-Pages([IntPtr] $At, [int] $From, [int] $To, [byte] $Value) {
            for ($i = $From; $i -le $To; $i++) { [Runtime.InteropServices.Marshal]::WriteByte($At, $i * 4096, $Value) }
        }
        # The page indexes of the mapping at $At that a sample's ranges cover.
        function Get-SamplePages($Sample, [IntPtr] $At) {
            $base = [uint64]$At.ToInt64()
            @(foreach ($r in $Sample.Ranges) { for ($a = [Math]::Max($r.Start, $base); $a -lt [Math]::Min($r.End, $base + $Length); $a += 4096) { [int](($a - $base) / 4096) } })
        }
    }

    It 'sample 2 has the pages written in the droppable mapping in its interval, and the watch warns once of the over-count' {
        if ($SelfSkip) { Set-ItResult -Skipped -Because $SelfSkip; return }
        Write-Pages $Dropped 0 15 1
        Write-Pages $Plain 0 15 1
        $n = 0
        $samples = @(Watch-DirtyPage -Id $PID -Method WriteProtect -Count 3 -Interval 1 -WarningVariable warned -WarningAction SilentlyContinue | ForEach-Object {
                if ($n++ -eq 0) { Write-Pages $Dropped 2 4 7; Write-Pages $Plain 2 4 7 }
                $_
            })
        $samples.Count | Should -Be 3
        Get-SamplePages $samples[1] $Plain | Should -Be @(2, 3, 4) -Because 'the plain mapping is tracked exactly'
        $inDropped = Get-SamplePages $samples[1] $Dropped
        foreach ($p in 2..4) { $inDropped | Should -Contain $p -Because "page $p of the droppable mapping was written in sample 2's interval" }
        @($warned | Where-Object { "$_" -like '*MAP_DROPPABLE*' }).Count | Should -Be 1
    }
}
