#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-second attack round, on special and unusual mappings: what saves, watches and migrations say of memory
# the kernel or a device writes, or that the kernel maps for itself (a real process, tests/native/imgtarget.c).
# Found:
# - Watch-DirtyPage and a migration's live rounds said nothing of a VM_PFNMAP mapping (a perf_event ring buffer): pagemap
#   shows no page there, so no method sees a write (measured: the kernel wrote 32 KiB of samples into a 9-page ring, data_head
#   24 -> 32760, while the watch counted 0 pages there, with no warning). Round 21 made the save and a migration's round image
#   count those pages; now every tracker counts them as unreadable and the watch and the live rounds warn.
# - A process that hit a uprobe has the kernel's [uprobes] page (VM_IO: pagemap shows it present, /proc/PID/mem cannot read it):
#   every image of it counted that page unreadable and was not valid, and Watch-DirtyPage warned that writes went unseen. The
#   page holds the kernel's copies of probed instructions, not the process's data: it is left out as [vvar] is.
# Held (no defect found; the cases below): a KVM guest's memory written by the guest through its own page tables (EPT), the
# vCPU's run page, an AF_PACKET TPACKET_V2 ring the kernel fills, a System V segment removed while attached, and an mseal'd
# region, in frozen chains of three images (Hash and WriteProtect), each restore compared word by word with /proc/PID/mem.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason } else { 'Linux only' }
    $Methods = @(@{ Method = 'Hash'; WtSkip = $null }, @{ Method = 'WriteProtect'; WtSkip = $WtSkip })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r22s')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state22s'
    $script:PageSize = [Environment]::SystemPageSize
    $script:IsRoot = (id -u) -eq '0'
    function New-Dest([string] $Name = 'd') { Join-Path $root "$Name-$([guid]::NewGuid().ToString('n'))" }
    function New-Region([string] $Hex, [int] $Pages, [string] $Name) { [pscustomobject]@{ Address = [Convert]::ToUInt64($Hex, 16); Pages = $Pages; Hex = $Hex; Name = $Name } }
    # A perf_event ring of 1 + 8 pages in $Target, whose mapping is VM_PFNMAP: its address, or the reason it cannot be had here.
    function New-PerfRing($Target) {
        $line = Send-ImgTargetProbe $Target 'perf 8'
        if ($line -notlike 'OK *') { return @{ Skip = "perf_event_open or its mmap is refused here ($line; /proc/sys/kernel/perf_event_paranoid, a seccomp filter)" } }
        $ring = $line.Substring(3).Trim()
        $flags = @((Get-MemoryMapping -Id $Target.Id -WarningAction SilentlyContinue | Where-Object Start -EQ ([Convert]::ToUInt64($ring, 16))).VmFlags)
        if ($flags -notcontains 'pf') { return @{ Skip = "this kernel maps the perf ring with page structs (VmFlags $($flags -join ' ')), which pagemap shows" } }
        @{ Ring = $ring }
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 22: writes no tracker can see (VM_PFNMAP) are said by Watch-DirtyPage and a migration''s live rounds' -Tag 'Security', 'Round22Special' {
    It 'Watch-DirtyPage -Method <Method> over a perf_event ring: warns that its 9 pages cannot be read; a watch of [stack] alone says nothing' -ForEach $Methods {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $t = Start-ImgTarget
        try {
            $perf = New-PerfRing $t
            if ($perf.Skip) { Set-ItResult -Skipped -Because $perf.Skip; return }
            $null = @(Watch-DirtyPage -Id $t.Id -Method $Method -Count 2 -Interval 0.1 -WarningVariable w -WarningAction SilentlyContinue)
            @($w | Where-Object { "$_" -like '*VM_PFNMAP*' }).Count | Should -Be 1 -Because 'before round 22 the watch said nothing, while the kernel wrote samples there that no method sees (once, not at every sample)'
            "$w" | Should -BeLike '*9 present page(s)*could not be read at sample 1*'
            $null = @(Watch-DirtyPage -Id $t.Id -Method $Method -Mapping '[stack]' -Count 1 -Interval 0.1 -WarningVariable quiet -WarningAction SilentlyContinue)
            @($quiet | Where-Object { "$_" -like '*could not be read*' }) | Should -BeNullOrEmpty -Because 'the ring is not watched'
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }

    It 'Invoke-PreCopyMigration -Method <Method> without -Destination over a perf_event ring: the first round says the ring could not be sent' -ForEach $Methods {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $t = Start-ImgTarget
        try {
            $perf = New-PerfRing $t
            if ($perf.Skip) { Set-ItResult -Skipped -Because $perf.Skip; return }
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Bandwidth 1GB -MaxIterations 1 -Confirm:$false -WarningVariable w -WarningAction SilentlyContinue)
            $out[-1].FinalImage | Should -BeNullOrEmpty
            @($w | Where-Object { "$_" -like 'Round 1: 9 present page(s)*VM_PFNMAP*a destination would lack them*' }).Count | Should -Be 1 -Because 'before round 22 a migration without -Destination said nothing of the ring'
            @($w | Where-Object { "$_" -like '*could not be read at round 2*VM_PFNMAP*' }).Count | Should -Be 1 -Because 'its live round cannot see the writes there either'
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }
}

Describe 'Round 22: the kernel''s [uprobes] page is not the process''s data' -Tag 'Security', 'Round22Special' {
    It 'a process that hit a uprobe: its full image and increment (-Method <Method>) are valid and count no unreadable page; a Hash watch says nothing' -ForEach $Methods {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $t = Start-ImgTarget
        try {
            $line = Send-ImgTargetProbe $t 'uprobe'
            if ($line -ne 'OK') { Set-ItResult -Skipped -Because "a perf uprobe is refused here ($line; CAP_PERFMON, /proc/sys/kernel/perf_event_paranoid)"; return }
            $up = @(Get-MemoryMapping -Id $t.Id -WarningAction SilentlyContinue | Where-Object Path -EQ '[uprobes]')
            if (-not $up) { Set-ItResult -Skipped -Because 'the kernel mapped no [uprobes] page for the probe'; return }
            $a = Send-ImgTarget $t 'map 4'
            $null = Send-ImgTarget $t "fill $a 4 3"
            $chain = New-Dest 'u'
            $full = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method -Freeze -WarningVariable w0 -WarningAction SilentlyContinue
            $full.UnreadablePages | Should -Be 0 -Because 'before round 22 the [uprobes] page (VM_IO) counted as unreadable'
            $w0 | Should -BeNullOrEmpty
            Test-MemoryImage "$chain/0" | Should -BeTrue
            $null = Send-ImgTarget $t "write $a 1 2"
            $inc = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -Freeze -WarningAction SilentlyContinue
            $inc.UnreadablePages | Should -Be 0
            Test-MemoryImage "$chain/1" | Should -BeTrue
            Get-RestoredRegionWords "$chain/1" (New-Region $a 4 'anon') $PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id (New-Region $a 4 'anon') $PageSize)
            $null = @(Watch-DirtyPage -Id $t.Id -Method Hash -Count 1 -Interval 0.1 -WarningVariable ww -WarningAction SilentlyContinue)
            @($ww | Where-Object { "$_" -like '*could not be read*' }) | Should -BeNullOrEmpty
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }
}

Describe 'Round 22: kernel-written and special mappings in frozen chains (a real process)' -Tag 'Workflows', 'Security', 'Round22Special' {
    It '-Method <Method>: a KVM guest''s memory and run page, a packet ring, a removed System V segment and an mseal''d region restore the words the process holds' -ForEach $Methods {
        if ($WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        # In a network namespace of its own (user namespace too, unprivileged: CAP_NET_RAW there), the ring gets only the test's packets.
        $through = if (-not (Get-Command unshare -CommandType Application -ErrorAction SilentlyContinue)) { @() } elseif ($IsRoot) { @('unshare', '-n') } else { @('unshare', '-r', '-n') }
        $t = Start-ImgTarget -Through $through
        $regions = [System.Collections.Generic.List[object]]::new()
        $missing = [System.Collections.Generic.List[string]]::new()
        try {
            if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id }
            $line = Send-ImgTargetProbe $t 'kvm 8'
            if ($line -like 'OK *') { $m, $run = $line.Substring(3).Trim() -split ' '; $regions.Add((New-Region $m 8 'kvm guest memory')); $regions.Add((New-Region $run 3 'kvm run')) } else { $missing.Add("KVM ($line)") }
            $line = if ($through.Count) { Send-ImgTargetProbe $t 'packet 16' } else { 'no unshare(1) for a network namespace' }
            if ($line -like 'OK *') { $regions.Add((New-Region $line.Substring(3).Trim() 16 'packet ring')) } else { $missing.Add("AF_PACKET ring ($line)") }
            $line = Send-ImgTargetProbe $t 'sysvshm 8 1'
            $shm = if ($line -like 'OK *') { ($line.Substring(3).Trim() -split ' ')[0] }
            if ($shm) { $regions.Add((New-Region $shm 8 'System V segment, removed')) } else { $missing.Add("System V shared memory ($line)") }
            $sealed = Send-ImgTarget $t 'map 8'
            $null = Send-ImgTarget $t "fill $sealed 8 9"
            $line = Send-ImgTargetProbe $t "mseal $sealed 8"
            if ($line -eq 'OK') { $regions.Add((New-Region $sealed 8 'mseal''d')) } else { $missing.Add("mseal ($line)") }
            if ($regions.Count -eq 0) { Set-ItResult -Skipped -Because "none of the special mappings can be made here: $($missing -join '; ')"; return }
            $has = { param($name) [bool]($regions | Where-Object Name -EQ $name) }
            $steps = @(
                { if (& $has 'kvm guest memory') { $null = Send-ImgTarget $t 'kvmrun 0 2' }; if (& $has 'packet ring') { $null = Send-ImgTarget $t 'packetsend 1' }
                  if ($shm) { $null = Send-ImgTarget $t "write $shm 1 2" }; if (& $has 'mseal''d') { $null = Send-ImgTarget $t "write $sealed 1 2" } },
                { if (& $has 'kvm guest memory') { $null = Send-ImgTarget $t 'kvmrun 2 3'; $null = Send-ImgTarget $t 'kvmrun 0 1' }; if (& $has 'packet ring') { $null = Send-ImgTarget $t 'packetsend 2' }
                  if ($shm) { $null = Send-ImgTarget $t "write $shm 5 1" }; if (& $has 'mseal''d') { $null = Send-ImgTarget $t "write $sealed 6 1" } }
            )
            $chain = New-Dest 'k'
            for ($i = 0; $i -le 2; $i++) {
                if ($i -gt 0) { & $steps[$i - 1] }
                $parent = if ($i -gt 0) { @{ Parent = "$chain/$($i - 1)" } } else { @{} }
                $info = Save-MemoryImage -Id $t.Id -Path "$chain/$i" @parent -Method $Method -Freeze -WarningAction SilentlyContinue
                $info.UnreadablePages | Should -Be 0 -Because "image $i ($Method)"
                Test-MemoryImage "$chain/$i" | Should -BeTrue -Because "image $i ($Method)"
                foreach ($r in $regions) {
                    Get-RestoredRegionWords "$chain/$i" $r $PageSize $root | Should -Be @(Get-LiveRegionWords $t.Id $r $PageSize) -Because "the $($r.Name) in image $i ($Method), as /proc/PID/mem reads it (not made here: $($missing -join '; '))"
                }
            }
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-ImgTarget $t
        }
    }
}
