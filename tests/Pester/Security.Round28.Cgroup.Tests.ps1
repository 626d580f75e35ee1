#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 28 (Cgroup): memory cgroups and the kernel's own memory work during tracking. The lead from round 27: a
# Save-MemoryImage -Method WriteProtect increment of a process held at its memory cgroup's limit made the kernel kill the
# process (the OOM invoked by the saving thread). Found: a reset of WriteProtect tracking (WP_UNPOPULATED) puts a uffd-wp
# marker on every never-populated page of a page table the process has, and the save read each marker of a private
# anonymous mapping, a read fault in the process: the kernel maps a page for it, here a new one charged to the process's
# memory cgroup (this machine's kernel maps no shared zero page: pvm_no_zero_page), so a save gave the process back every
# page that reclaim had taken and every page it never used. A marker holds no data; the save now leaves it out where
# pagemap names it (frame numbers: CAP_SYS_ADMIN). Targets: tests/native/wttarget.c.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    # pagemap names a uffd-wp marker by its swap type, in the frame field, which it shows only to CAP_SYS_ADMIN: without it a
    # marker cannot be told from a swapped page (or a migration entry) and is read as before.
    # Probed: the frame of a present page of this process's first mapping.
    $FrameSkip = if (-not $IsLinux) { 'Linux only' }
    else {
        $first = @(Get-MemoryMapping -Id $PID)[0]
        $frame = @(Get-PageMap -Id $PID -Address $first.Start -Length ($first.End - $first.Start) -Present | Select-Object -First 1).Pfn
        if (-not $frame) { 'pagemap shows frame numbers (and so the swap type that names a uffd-wp marker) only to CAP_SYS_ADMIN, and hid them here: without them a marker cannot be told from a swapped page and is read as before (README: the write tracking''s markers)' }
    }
    # Compaction on demand (root: /proc/sys/vm/compact_memory, CONFIG_COMPACTION).
    $CompactSkip = if (-not $IsLinux) { 'Linux only' } elseif ((id -u) -ne '0') { 'only root may ask for compaction (/proc/sys/vm/compact_memory)' }
    elseif (-not (Test-Path /proc/sys/vm/compact_memory)) { 'the kernel has no compaction (CONFIG_COMPACTION)' }
    # A memory cgroup the test may make (root): cgroup v1's memory hierarchy, or v2 with the memory controller enabled for
    # children of the root (as round 16).
    $MemcgSkip = if (-not $IsLinux) { 'Linux only' } elseif ((id -u) -ne '0') { 'only root may make a memory cgroup and move a process into it' }
    elseif (-not (Test-Path /sys/fs/cgroup/memory/cgroup.procs) -and -not ((Test-Path /sys/fs/cgroup/cgroup.subtree_control) -and (Get-Content /sys/fs/cgroup/cgroup.subtree_control) -match '\bmemory\b')) { 'no writable memory cgroup hierarchy here (v1 memory, or v2 with memory in the root''s subtree_control)' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state28c'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r28c')
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:PageSize = [uint64][Environment]::SystemPageSize
    # madvise(2) advice (include/uapi/asm-generic/mman-common.h).
    $script:MadvFree = 8
    function New-ImagePath([string] $Name) { Join-Path $root "$Name-$([guid]::NewGuid().ToString('n'))" }
    # Soft-dirty is left out of the comparisons: a property of the VMA's history (merges), not of what is tested here.
    $script:Compared = [SoftDirty.PagemapFlags]::Present -bor [SoftDirty.PagemapFlags]::Swapped -bor [SoftDirty.PagemapFlags]::FileOrSharedAnon -bor
    [SoftDirty.PagemapFlags]::Exclusive -bor [SoftDirty.PagemapFlags]::UffdWriteProtected -bor [SoftDirty.PagemapFlags]::Guard
    function Get-Flags($Entries) { @($Entries | ForEach-Object { [SoftDirty.PagemapFlags]([uint64]$_.Flags -band [uint64]$Compared) }) }
    function Get-PresentCount($Target, [string] $Hex, [int] $Pages) { @(Get-PageMap -Id $Target.Id -Address ([Convert]::ToUInt64($Hex, 16)) -Length ([uint64]$Pages * $PageSize) -Present).Count }
    function Assert-IsTheMoment($Target, [string] $Image, [string] $Because) {
        $now = New-ImagePath 'now'
        $null = Save-MemoryImage -Id $Target.Id -Path $now -Method Hash
        Test-MemoryImage -Path $Image | Should -BeTrue
        Compare-RestoredImage $Image $now $root | Should -BeNullOrEmpty -Because $Because
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 28: a WriteProtect save reads no uffd-wp marker of a private anonymous mapping' -Tag 'Workflows', 'Security', 'Round28Cgroup' -Skip:([bool]($WtSkip -or $FrameSkip)) {
    # Before the fix the full save made every one of the never-written pages present (16 MiB more of the process's memory
    # here; the zero page, with the uffd-wp bit, where the kernel maps one for a read).
    It 'the pages never written stay unpopulated through a full image and an increment, which restore what a Hash image restores' {
        $pages = 1024
        $t = Start-TestTarget -Path $wtExe
        $dir = New-ImagePath 'sparse'
        try {
            $hex = Send-TestTarget $t "map $pages"
            $null = Send-TestTarget $t "write $hex 0 16"
            # Counted, not assumed: with THP "always" the writes may have faulted in a whole huge page.
            $present = Get-PresentCount $t $hex $pages
            $present | Should -BeLessThan $pages
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method WriteProtect
            Get-PresentCount $t $hex $pages | Should -Be $present -Because 'a save reads no uffd-wp marker: it holds no data'
            # The reset left a marker on each page never written whose page table the process has.
            @(Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16)) -Length ([uint64]$pages * $PageSize) | Where-Object { $_.Swapped -and $_.UffdWriteProtected }).Count | Should -BeGreaterThan 0
            Assert-IsTheMoment $t "$dir/0" 'the never-written pages restore as zeros'
            $null = Send-TestTarget $t "write $hex 8 4"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/1" -Parent "$dir/0" -Method WriteProtect
            Get-PresentCount $t $hex $pages | Should -Be $present
            Assert-IsTheMoment $t "$dir/1" 'the increment has the new writes and the zeros'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }

    It 'a real process and the emulator (Host) show the same pagemap after a full image and an increment' {
        # The emulator's reads never faulted: its markers stayed markers, the real process's became pages. The first and the
        # last page are written so that every page table of the region exists on both sides (a reset marks none in a hole).
        $pages = 64
        $writes = 'write {0} 0 1', 'write {0} 63 1', 'write {0} 10 4'
        $t = Start-TestTarget -Path $wtExe
        $dir = New-ImagePath 'real'
        try {
            $hex = Send-TestTarget $t "map $pages"
            foreach ($w in $writes) { $null = Send-TestTarget $t ($w -f $hex) }
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method WriteProtect
            $real = @(Get-Flags (Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16)) -Length ([uint64]$pages * $PageSize)))
            $null = Send-TestTarget $t "write $hex 20 2"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/1" -Parent "$dir/0" -Method WriteProtect
            $real += Get-Flags (Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16)) -Length ([uint64]$pages * $PageSize))
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
        $e = New-EmulatedProcess -Kernel Host
        $m = $e | Add-EmulatedMapping -Length ([uint64]$pages * $PageSize)
        foreach ($w in $writes) { $a = $w -split ' '; $e | Write-EmulatedMemory -Address ($m.Start + [uint64]$a[2] * $PageSize) -Length ([uint64]$a[3] * $PageSize) }
        $chain = New-ImagePath 'emu'
        $null = $e | Save-MemoryImage -Path "$chain/0" -Method WriteProtect
        $emulated = @(Get-Flags ($e | Get-PageMap -Address $m.Start -Length ([uint64]$pages * $PageSize)))
        $e | Write-EmulatedMemory -Address ($m.Start + 20 * $PageSize) -Length (2 * $PageSize)
        $null = $e | Save-MemoryImage -Path "$chain/1" -Parent "$chain/0" -Method WriteProtect
        $emulated += Get-Flags ($e | Get-PageMap -Address $m.Start -Length ([uint64]$pages * $PageSize))
        ($emulated -join '; ') | Should -Be ($real -join '; ')
    }

    It 'Watch-DirtyPage -Method Hash of a process under write tracking leaves its never-written pages unpopulated' {
        # Round 25's limit: the Hash snapshot read each marker (as zeros). Before the fix it made all 1024 pages present.
        $pages = 1024
        $t = Start-TestTarget -Path $wtExe
        try {
            $hex = Send-TestTarget $t "map $pages"
            $null = Send-TestTarget $t "write $hex 0 8"
            $null = Enable-WriteTracking -Id $t.Id
            $present = Get-PresentCount $t $hex $pages
            $samples = @(Watch-DirtyPage -Id $t.Id -Method Hash -Address ([Convert]::ToUInt64($hex, 16)) -Length ([uint64]$pages * $PageSize) -Interval 0.1 -Count 2)
            $samples.Count | Should -Be 2
            $samples.DirtyPages | Should -Be @(0, 0)
            Get-PresentCount $t $hex $pages | Should -Be $present -Because 'a snapshot reads no uffd-wp marker'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'Round 28: pages migrated (compaction) while a WriteProtect chain is saved (root)' -Tag 'Workflows', 'Security', 'Round28Cgroup' -Skip:([bool]($WtSkip -or $FrameSkip -or $CompactSkip)) {
    # A page under migration is a migration entry, which pagemap shows as swapped, with the uffd-wp bit of the page it
    # stands for: it holds data, and must never be taken for a marker (its swap type differs). Compaction runs in a loop
    # beside the saves; each increment must restore what a Hash image of the same moment restores.
    It 'each increment restores what a full image of its moment restores' {
        $pages = 8192
        $t = Start-TestTarget -Path $wtExe
        $dir = New-ImagePath 'compact'
        $migrated = { [uint64]((Get-Content /proc/vmstat | Where-Object { $_ -like 'pgmigrate_success *' }) -split ' ')[1] }
        $before = & $migrated
        $job = Start-ThreadJob { for ($i = 0; $i -lt 200; $i++) { [IO.File]::WriteAllText('/proc/sys/vm/compact_memory', '1'); Start-Sleep -Milliseconds 20 } }
        try {
            $hex = Send-TestTarget $t "map $pages"
            $null = Send-TestTarget $t "write $hex 0 $pages"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method WriteProtect
            $random = [Random]::new(28)
            for ($i = 1; $i -le 4; $i++) {
                for ($k = 0; $k -lt 20; $k++) { $null = Send-TestTarget $t "write $hex $($random.Next(0, $pages - 8)) 8" }
                $null = Save-MemoryImage -Id $t.Id -Path "$dir/$i" -Parent "$dir/$($i - 1)" -Method WriteProtect
                Assert-IsTheMoment $t "$dir/$i" "increment $i"
            }
        } finally {
            Stop-Job $job; Remove-Job $job -Force
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t
        }
        if ((& $migrated) -eq $before) { Set-ItResult -Skipped -Because 'compaction migrated no page during the saves (nothing to move, or free memory already compact)' }
    }
}

Describe 'Round 28: without frame numbers a uffd-wp marker is read, as a swapped page must be (the kernel''s rule)' -Tag 'Workflows', 'Security', 'Round28Cgroup' -Skip:([bool]($WtSkip -or -not $FrameSkip)) {
    # pagemap gives a swap entry's type and offset only to CAP_SYS_ADMIN (the frame field): to anyone else a marker, a page
    # in swap and a page under migration are the same entry, SWAP | UFFD_WP, and the last two hold data. So the save reads
    # it (README: the write tracking's markers), and the read maps a page there; the image is still exact.
    It 'a marker''s entry is SWAP | UFFD_WP with no frame; the save reads it, and its image restores what a Hash image restores' {
        $pages = 64
        $t = Start-TestTarget -Path $wtExe
        $dir = New-ImagePath 'hidden'
        try {
            $hex = Send-TestTarget $t "map $pages"
            $null = Send-TestTarget $t "write $hex 0 1"
            $null = Send-TestTarget $t "write $hex 63 1"
            $null = Enable-WriteTracking -Id $t.Id
            $marker = Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16) + 5 * $PageSize) -Length $PageSize
            # Bits 62 (swapped) and 57 (uffd-wp); soft-dirty (55) is left out: a new VMA's, where the kernel has it.
            $expected = ([uint64]1 -shl 62) -bor ([uint64]1 -shl 57)
            '0x{0:x16}' -f ([uint64]$marker.Raw -band -bnot ([uint64]1 -shl 55)) | Should -Be ('0x{0:x16}' -f $expected) -Because 'pagemap hides the swap type that would name the marker'
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method WriteProtect
            (Get-PageMap -Id $t.Id -Address ([Convert]::ToUInt64($hex, 16) + 5 * $PageSize) -Length $PageSize).Present | Should -BeTrue -Because 'the save read the marker, which faulted a page in'
            Assert-IsTheMoment $t "$dir/0" 'the page read holds zeros'
        } finally { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue; Stop-TestTarget $t }
    }
}

Describe 'Round 28: a WriteProtect increment of a process held at its memory cgroup''s limit (root)' -Tag 'Workflows', 'Security', 'Round28Cgroup' -Skip:([bool]($WtSkip -or $MemcgSkip)) {
    # Round 16's case without lifting the limit: pages written, saved, lazily freed, then a limit of half of them makes
    # reclaim discard about half. Before the fix the increment read the discarded pages' markers, which faulted a page in
    # for each, charged to the cgroup: at the limit the kernel killed the target (memory.oom_control oom_kill 1).
    It 'the increment charges the cgroup nothing, the process lives, and the increment restores what a full image restores' {
        $v1 = Test-Path /sys/fs/cgroup/memory/cgroup.procs
        $cg = if ($v1) { "/sys/fs/cgroup/memory/r28cgroup-$PID" } else { "/sys/fs/cgroup/r28cgroup-$PID" }
        $limit = if ($v1) { 'memory.limit_in_bytes' } else { 'memory.max' }
        $usage = if ($v1) { 'memory.usage_in_bytes' } else { 'memory.current' }
        $pages = 4096
        $t = Start-TestTarget -Path $wtExe
        $dir = New-ImagePath 'memcg'
        try {
            $null = New-Item -ItemType Directory $cg
            Set-Content "$cg/cgroup.procs" $t.Id
            $hex = Send-TestTarget $t "map $pages"
            $null = Send-TestTarget $t "write $hex 0 $pages"
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/0" -Method WriteProtect
            $null = Send-TestTarget $t "madvise $hex 0 $pages $MadvFree"
            Set-Content "$cg/$limit" ([uint64]$pages * $PageSize / 2)
            $present = Get-PresentCount $t $hex $pages
            $present | Should -BeLessThan $pages -Because 'the limit made the kernel discard lazily freed pages'
            $before = [uint64](Get-Content "$cg/$usage")
            $null = Save-MemoryImage -Id $t.Id -Path "$dir/1" -Parent "$dir/0" -Method WriteProtect
            $t.HasExited | Should -BeFalse -Because 'tracking never gets the target killed'
            [uint64](Get-Content "$cg/$usage") | Should -BeLessOrEqual $before -Because 'the save faulted no page into the process'
            Get-PresentCount $t $hex $pages | Should -BeLessOrEqual $present
            # Compared under the limit: a discard now (reclaim of the pages still lazily freed) is a change without a write,
            # which a Hash image of this moment sees too; the pages the save left are zeros in both.
            Set-Content "$cg/$limit" $(if ($v1) { '-1' } else { 'max' })
            Assert-IsTheMoment $t "$dir/1" 'the discarded pages read as zeros'
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
            # An emptied cgroup is removed with rmdir(2); its processes leave it as they exit.
            for ($i = 0; $i -lt 100 -and (Test-Path $cg); $i++) { try { [System.IO.Directory]::Delete($cg) } catch [System.IO.IOException] { Start-Sleep -Milliseconds 20 } }
            Test-Path $cg | Should -BeFalse -Because 'the test removes the cgroup it made'
        }
    }
}
