#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Get-SoftDirtySupport, Clear-SoftDirty and Clear-PageReference against a real child process.
# Soft-dirty tests branch on the probe: on a kernel without CONFIG_MEM_SOFT_DIRTY (this project's CI)
# they assert the refusal; on a kernel with it they take the positive path. A test that can only run on
# one kind of kernel says so in its name and is tagged Kernel.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $support = Get-SoftDirtySupport
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $PSDefaultParameterValues = @{ 'Get-PageMap:WarningAction' = 'SilentlyContinue' }
    $support = Get-SoftDirtySupport
    $t = Start-TestTarget
    $ps = $t.PageSize

    # The raw pagemap entry of one page, read without the module.
    function Read-RawEntry([int] $Id, [uint64] $Address) {
        $fs = [IO.FileStream]::new("/proc/$Id/pagemap", 'Open', 'Read', 'ReadWrite', 1, $false)
        try {
            $buf = [byte[]]::new(8)
            $fs.Position = [int64]($Address / $ps * 8)
            if ($fs.Read($buf, 0, 8) -ne 8) { throw 'short pagemap read' }
            [BitConverter]::ToUInt64($buf, 0)
        } finally { $fs.Dispose() }
    }
    # The CPUs the kernel may run on (/sys/devices/system/cpu/possible, e.g. "0-1" or "0,2-5"): each may hold a per-CPU part of a counter.
    function Get-PossibleCpuCount {
        $n = 0
        foreach ($part in (Get-Content /sys/devices/system/cpu/possible) -split ',') {
            $lo, $hi = $part -split '-'
            $n += if ($hi) { [int]$hi - [int]$lo + 1 } else { 1 }
        }
        $n
    }
    function Get-Referenced([uint64] $Address) { (Get-MemoryMapping -Id $t.Id -Address $Address).Referenced }
}

AfterAll {
    Stop-TestTarget -All
}

Describe 'Get-SoftDirtySupport' {
    BeforeAll { $fresh = Get-SoftDirtySupport -Refresh }

    It 'reports the running kernel release' {
        $fresh.KernelRelease | Should -Be (Get-Content /proc/sys/kernel/osrelease)
    }

    It 'agrees with a soft-dirty measurement made without the module (clear_refs 4, write, bit 55)' {
        $m = $t.Map(2)
        $t.Send("write $(Hex $m) 0 2")
        [IO.File]::WriteAllText("/proc/$($t.Id)/clear_refs", '4')
        $t.Send("write $(Hex $m) 1")
        $written = Read-RawEntry $t.Id ($m + $ps)
        $untouched = Read-RawEntry $t.Id $m
        $measured = [bool](($written -shr 55) -band 1) -and -not [bool](($untouched -shr 55) -band 1)
        $fresh.SoftDirty | Should -Be $measured
    }

    It 'gives a reason naming CONFIG_MEM_SOFT_DIRTY when soft-dirty is missing, and none when present' {
        if ($fresh.SoftDirty) { $fresh.SoftDirtyReason | Should -BeNullOrEmpty }
        else { $fresh.SoftDirtyReason | Should -Match 'CONFIG_MEM_SOFT_DIRTY' }
    }

    It 'reports PAGEMAP_SCAN exactly where the kernel has it (a plain scan by a process of its own pagemap)' {
        # Asked of the kernel, not read from its version (6.7): a backport has it.
        $w = Start-TestTarget -Path (Join-Path $PSScriptRoot '../native/bin/wttarget')
        try { $reply = $w.TrySend('scanprobe') } finally { Stop-TestTarget $w }
        $fresh.PagemapScan | Should -Be ($reply -eq 'OK 1') -Because "the target's own scan said '$reply'"
        if (-not $fresh.PagemapScan) { $fresh.PagemapScanReason | Should -Not -BeNullOrEmpty }
    }

    It 'reports PFNs visible exactly when this process has CAP_SYS_ADMIN' {
        $capEff = [Convert]::ToUInt64(((Get-Content /proc/$PID/status | Where-Object { $_ -like 'CapEff:*' }) -split '\s+')[1], 16)
        $fresh.PfnVisible | Should -Be ([bool](($capEff -shr 21) -band 1))
    }

    It 'lists every measured rule with its value and evidence, agreeing with the properties' {
        $names = @($fresh.Rules.Name)
        foreach ($n in 'SoftDirtyEnabled', 'HasPagemapScan', 'HasUffdWriteProtectAsync', 'HasUffdWriteProtectUnpopulated',
            'UnprivilegedUserfaultfd', 'HasGuardRegions', 'SharedZeroPage', 'HugeZeroPage', 'TransparentHugePages', 'ThpOnFault',
            'ScanWrittenWithoutPageTable', 'PfnVisible', 'Swap') { $names | Should -Contain $n }
        $fresh.Rules | ForEach-Object { $_.Evidence | Should -Not -BeNullOrEmpty -Because $_.Name }
        ($fresh.Rules | Where-Object Name -EQ 'SoftDirtyEnabled').Value | Should -Be "$($fresh.SoftDirty)"
        ($fresh.Rules | Where-Object Name -EQ 'HasPagemapScan').Value | Should -Be "$($fresh.PagemapScan)"
        ($fresh.Rules | Where-Object Name -EQ 'PfnVisible').Value | Should -Be "$($fresh.PfnVisible)"
    }

    It 'reads the THP mode from sysfs and the swap areas from /proc/swaps' {
        $thp = '/sys/kernel/mm/transparent_hugepage/enabled'
        $mode = if (Test-Path $thp) { if ((Get-Content $thp) -match '\[(\w+)\]') { $Matches[1] } } else { 'never' }
        ($fresh.Rules | Where-Object Name -EQ 'TransparentHugePages').Value | Should -Be ((Get-Culture).TextInfo.ToTitleCase($mode))
        $areas = @(Get-Content /proc/swaps | Select-Object -Skip 1 | Where-Object { $_.Trim() })
        ($fresh.Rules | Where-Object Name -EQ 'Swap').Value | Should -Be "$($areas.Count -gt 0)"
    }

    It 'measures the zero page as the pagemap of a read page shows it (not exclusive: the zero page)' {
        $m = $t.Map(2)
        $t.Send("read $(Hex $m) 0")
        $raw = Read-RawEntry $t.Id $m
        $present = [bool](($raw -shr 63) -band 1)
        $exclusive = [bool](($raw -shr 56) -band 1)
        $present | Should -BeTrue
        ($fresh.Rules | Where-Object Name -EQ 'SharedZeroPage').Value | Should -Be "$(-not $exclusive)"
    }

    It 'caches the probe for the session unless -Refresh is given' {
        $a = Get-SoftDirtySupport
        $b = Get-SoftDirtySupport
        [object]::ReferenceEquals($a, $b) | Should -BeTrue
        [object]::ReferenceEquals($a, (Get-SoftDirtySupport -Refresh)) | Should -BeFalse
    }
}

Describe 'Clear-SoftDirty on a kernel without soft-dirty' -Tag Kernel {
    It 'refuses with a non-terminating SoftDirtyNotSupported error (needs a kernel without soft-dirty)' -Skip:($support.SoftDirty) {
        { Clear-SoftDirty -Id $t.Id -ErrorAction Stop } |
            Should -Throw -ErrorId 'SoftDirtyNotSupported,SoftDirty.Commands.ClearSoftDirtyCommand'
        Clear-SoftDirty -Id $t.Id -ErrorVariable ev -ErrorAction SilentlyContinue
        $ev | Should -HaveCount 1
        $ev[0].CategoryInfo.Category | Should -Be 'NotImplemented'
        $ev[0].TargetObject | Should -Be $t.Id
        "$($ev[0])" | Should -Match 'CONFIG_MEM_SOFT_DIRTY'
    }

    It 'still processes the next pid after refusing one (needs a kernel without soft-dirty)' -Skip:($support.SoftDirty) {
        $bad = Get-UnusedProcessId
        $out = Clear-SoftDirty -Id $t.Id, $bad -PassThru -ErrorVariable ev -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $ev | Should -HaveCount 2
        $ev[0].FullyQualifiedErrorId | Should -Be 'SoftDirtyNotSupported,SoftDirty.Commands.ClearSoftDirtyCommand'
        $ev[1].FullyQualifiedErrorId | Should -Be 'ProcessNotFound,SoftDirty.Commands.ClearSoftDirtyCommand'
        $ev[1].TargetObject | Should -Be $bad
    }
}

Describe 'Soft-dirty tracking on a kernel with soft-dirty' -Tag Kernel {
    BeforeAll {
        $m = $t.Map(16)
        $t.Send("write $(Hex $m) 0 16")
        $t.Send("read $(Hex $m) 0 16")
    }

    It 'a new mapping reads soft-dirty on every page and its VMA has sd (needs a soft-dirty kernel)' -Skip:(-not $support.SoftDirty) {
        $n = $t.Map(4)
        (Get-PageMap -Id $t.Id -Address $n -Length (4 * $ps)).SoftDirty | Should -Not -Contain $false
        (Get-MemoryMapping -Id $t.Id -Address $n).SoftDirty | Should -BeTrue
    }

    It 'after Clear-SoftDirty only written pages read soft-dirty, reads do not set it (needs a soft-dirty kernel)' -Skip:(-not $support.SoftDirty) {
        $p = Clear-SoftDirty -Id $t.Id -PassThru
        $p.Id | Should -Be $t.Id
        @(Get-PageMap -Id $t.Id -Address $m -Length (16 * $ps) -SoftDirty) | Should -HaveCount 0
        (Get-MemoryMapping -Id $t.Id -Address $m).SoftDirty | Should -BeFalse
        $t.Send("write $(Hex $m) 3 2")    # pages 3, 4
        $t.Send("write $(Hex $m) 9")      # page 9
        $t.Send("read $(Hex $m) 0 16")    # every page read: none may become soft-dirty by it
        $all = Get-PageMap -Id $t.Id -Address $m -Length (16 * $ps)
        Get-Index $m ($all | Where-Object SoftDirty) | Should -Be 3, 4, 9
        Get-Index $m (Get-PageMap -Id $t.Id -Address $m -Length (16 * $ps) -SoftDirty) | Should -Be 3, 4, 9
        Get-Index $m (Get-PageMap -Id $t.Id -Address $m -Length (16 * $ps) -SoftDirty:$false) | Should -Be 0, 1, 2, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15
        $ranges = @(Get-PageMap -Id $t.Id -Address $m -Length (16 * $ps) -AsRange | Where-Object SoftDirty)
        $ranges.PageCount | Should -Be 2, 1
        $ranges[0].Start | Should -Be ($m + 3 * $ps)
        $ranges[1].Start | Should -Be ($m + 9 * $ps)
        @(Get-PageMap -Id $t.Id -Address $m -Length (16 * $ps) -AsRange -SoftDirty).PageCount | Should -Be 2, 1
    }

    It 'the PAGEMAP_SCAN path finds the same soft-dirty pages as pread (needs a soft-dirty kernel with PAGEMAP_SCAN)' -Skip:(-not ($support.SoftDirty -and $support.PagemapScan)) {
        $null = Clear-SoftDirty -Id $t.Id
        $t.Send("write $(Hex $m) 7")
        $scan = Get-PageMap -Id $t.Id -SoftDirty -ReadMethod PagemapScan | ForEach-Object { '{0:x}:{1:x}' -f $_.Start, $_.Raw }
        $pread = Get-PageMap -Id $t.Id -SoftDirty -ReadMethod Pread | ForEach-Object { '{0:x}:{1:x}' -f $_.Start, $_.Raw }
        $scan | Should -Be $pread
        $scan | Should -Contain ('{0:x}:{1:x}' -f ($m + 7 * $ps), (Read-RawEntry $t.Id ($m + 7 * $ps)))
    }

    It 'Clear-SoftDirty -WhatIf clears nothing (needs a soft-dirty kernel)' -Skip:(-not $support.SoftDirty) {
        $t.Send("write $(Hex $m) 11")
        Clear-SoftDirty -Id $t.Id -WhatIf
        (Get-PageMap -Id $t.Id -Address ($m + 11 * $ps)).SoftDirty | Should -BeTrue
    }

    It 'Get-PageMap does not warn about the SoftDirty column (needs a soft-dirty kernel)' -Skip:(-not $support.SoftDirty) {
        $null = Get-PageMap -Id $t.Id -Address $m -WarningVariable wv -WarningAction SilentlyContinue
        $wv | Should -HaveCount 0
    }
}

Describe 'A soft-dirty image chain of a process that writes while it is saved' -Tag Kernel {
    # Soft-dirty has no atomic read-and-clear: a page written after an increment read the bits and before it
    # cleared them would be missing from that increment and every later one (its old bytes restored for good).
    # The module stops the process for that moment (SoftDirtyWindow). Here each page of a region is written once,
    # by threads of the target, a few milliseconds apart, while increments are saved back to back without -Freeze;
    # the last increment, frozen after every write, must restore the region exactly as the process holds it.
    It 'no write between reading soft-dirty and clearing it is lost to the chain (needs a soft-dirty kernel)' -Skip:(-not $support.SoftDirty) {
        $w = Start-WfTarget
        $chain = Join-Path $TestDrive 'sd-chain'
        try {
            $pages = 200
            $r = New-WfRegion $w $pages
            $null = Save-MemoryImage -Id $w.Id -Path "$chain/0000" -Method SoftDirty
            foreach ($i in 0..($pages - 1)) { $null = Send-WfTarget $w "after $($r.Hex) $i $(20 + 4 * $i)" } # each page once
            $until = [Diagnostics.Stopwatch]::StartNew()
            $n = 0; $prev = "$chain/0000"
            while ($until.Elapsed.TotalMilliseconds -lt 20 + 4 * $pages + 1000) {
                $next = Join-Path $chain ('{0:D4}' -f ++$n)
                $null = Save-MemoryImage -Id $w.Id -Path $next -Parent $prev -Method SoftDirty -WarningAction SilentlyContinue
                $prev = $next
            }
            $last = Join-Path $chain ('{0:D4}' -f ++$n)
            $null = Save-MemoryImage -Id $w.Id -Path $last -Parent $prev -Method SoftDirty -Freeze
            $restored = Restore-MemoryImage -Path $last -Destination (Join-Path $TestDrive 'sd-restored') | Where-Object Start -EQ $r.Address
            $mem = [IO.FileStream]::new("/proc/$($w.Id)/mem", 'Open', 'Read', 'ReadWrite', 1, $false)
            try { $mem.Position = [int64]$r.Address; $live = [byte[]]::new($pages * $w.PageSize); $mem.ReadExactly($live, 0, $live.Length) } finally { $mem.Dispose() }
            $bytes = [IO.File]::ReadAllBytes($restored.File)
            $stale = @(0..($pages - 1) | Where-Object { -not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($bytes, $_ * $w.PageSize, 8), [ArraySegment[byte]]::new($live, $_ * $w.PageSize, 8)) })
            $stale | Should -HaveCount 0 -Because "$n increments were saved while the pages were written; pages $($stale -join ', ') kept their old bytes"
            [Linq.Enumerable]::SequenceEqual($bytes, $live) | Should -BeTrue
        } finally { Stop-WfTarget $w }
    }
}

Describe 'Clear-PageReference' {
    It 'PeakRss: VmHWM drops to VmRSS after a big written region is unmapped, and -WhatIf changes nothing' {
        $pages = 4096   # 16 MiB with 4 KiB pages
        $big = $t.Map($pages)
        $t.Send("write $(Hex $big) 0 $pages")
        $t.Send("unmap $(Hex $big) $pages")
        $hwm = Get-ProcStatusKb $t.Id VmHWM
        $rss = Get-ProcStatusKb $t.Id VmRSS
        ($hwm - $rss) * 1KB | Should -BeGreaterOrEqual ($pages * $ps * 0.9)

        Clear-PageReference -Id $t.Id -Type PeakRss -WhatIf
        Get-ProcStatusKb $t.Id VmHWM | Should -Be $hwm

        $out = Clear-PageReference -Id $t.Id -Type PeakRss -PassThru
        $out.Id | Should -Be $t.Id
        # clear_refs 5 sets the hiwater mark to the RSS the kernel reads then, and VmHWM shows max(hiwater, RSS).
        # The target sits idle in its command read, so its RSS can only fall meanwhile (reclaim of its mapped
        # file pages on a busy machine; seen: 29 pages), never rise: the mark lies between the RSS read after the
        # clear and the one read before it. Both status fields from one read, so no counter moves between them.
        # But the mark is read without the per-CPU parts of the RSS counters (get_mm_rss: percpu_counter_read of the
        # file, anon and shmem counters), where VmRSS may add them up (get_mm_counter_sum, newer kernels): the two
        # differ by less than each counter's batch on each CPU (percpu_counter_batch, max(32, 2 x CPUs)); seen:
        # 31 pages above the RSS, unprivileged on a busy machine, the pages the unmap freed on a CPU not yet folded.
        $cpus = Get-PossibleCpuCount
        $unfoldedKb = 3 * [Math]::Max(32, 2 * $cpus) * $cpus * $ps / 1KB
        $status = Get-Content "/proc/$($t.Id)/status"
        $after = [uint64]((($status | Where-Object { $_ -like 'VmHWM:*' }) -split '\s+')[1])
        $rssNow = [uint64]((($status | Where-Object { $_ -like 'VmRSS:*' }) -split '\s+')[1])
        ($hwm - $after) * 1KB | Should -BeGreaterOrEqual ($pages * $ps * 0.9)
        $after | Should -BeGreaterOrEqual $rssNow
        $after | Should -BeLessOrEqual ($rss + $unfoldedKb) -Because 'the mark is the RSS at the clear (less its unfolded per-CPU parts), and the idle target only lost pages since the read before it'
    }

    It 'All: clears the referenced bits that a later access sets again' {
        $a = $t.Map(8)
        $t.Send("write $(Hex $a) 0 8")
        Get-Referenced $a | Should -Be (8 * $ps)
        Clear-PageReference -Id $t.Id -Type All
        Get-Referenced $a | Should -Be 0
        $t.Send("read $(Hex $a) 2 3")
        # The CPU sets accessed bits itself; on this virtual machine it does not always do so at once after
        # the TLB flush, so only an upper bound holds for the pages read.
        Get-Referenced $a | Should -BeLessOrEqual (3 * $ps)
    }

    It 'Anonymous clears anonymous mappings only, Mapped file mappings only' {
        $file = Join-Path ([IO.Path]::GetTempPath()) "softdirty refs $PID.bin"
        try {
            $a = $t.Map(4)
            $f = $t.Map(4, "file `"$file`"")
            $t.Send("write $(Hex $a) 0 4"); $t.Send("write $(Hex $f) 0 4")
            # Whether the CPU set an accessed bit for each access is not ours to assert (seen: 3 of 4); what
            # -Type selects is: the other kind of mapping keeps exactly what it had.
            $fileBefore = Get-Referenced $f
            Clear-PageReference -Id $t.Id -Type Anonymous
            Get-Referenced $a | Should -Be 0
            Get-Referenced $f | Should -Be $fileBefore
            $t.Send("read $(Hex $a) 0 4")
            $anonBefore = Get-Referenced $a
            Clear-PageReference -Id $t.Id -Type Mapped
            Get-Referenced $f | Should -Be 0
            Get-Referenced $a | Should -Be $anonBefore
        } finally { Remove-Item -LiteralPath $file -ErrorAction SilentlyContinue }
    }

    It 'refuses -Type SoftDirty at binding (the set it takes, so Tab never offers it) with a message that points to Clear-SoftDirty' {
        { Clear-PageReference -Id $t.Id -Type SoftDirty } |
            Should -Throw -ErrorId 'ParameterArgumentTransformationError,SoftDirty.Commands.ClearPageReferenceCommand' -ExpectedMessage '*Clear-SoftDirty*'
    }

    It 'binds Id from Get-Process' {
        $out = Get-Process -Id $t.Id | Clear-PageReference -Type All -PassThru
        $out.Id | Should -Be $t.Id
    }
}
