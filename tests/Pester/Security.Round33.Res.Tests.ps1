#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 33 (Res): resources starved at the worst moment, of this PowerShell and of the target.
# Found: the kernel memory write tracking makes the target spend. Its first reset marks every never-used page of a
# registered mapping (WP_UNPOPULATED), which makes the page tables of all of it, 2 MiB a GiB, kept until the mapping goes;
# round 25 capped each mapping at 64 GiB, but not the mappings together: a process with four 64 GiB MAP_NORESERVE mappings
# (each its own VMA) grew from 72 KiB to 513 MiB of page tables at Enable-WriteTracking, kept after Disable-WriteTracking,
# and two hundred such mappings would have taken 25 GiB (this machine has 24). The tracking now registers 64 GiB in all
# (the mappings registered already first, then in address order); the rest is compared by its present pages, as a mapping
# the tracking does not register; a watch or a migration compares those by content (ContentSelection), as it does the
# mappings larger than 64 GiB. The first test failed before (page tables grew by 262,624 KiB, the bound 132,096); the
# others guard the fix: with the budget alone, an idle process's watch counted the present pages past it at every sample
# (4, not 0). The increment and the migration run where pagemap shows frame numbers (root): elsewhere a save reads every
# uffd-wp marker of the 64 GiB registered (round 28's limit), which on this kernel (no shared zero page) faults it in.
# Found: a process whose memory cgroup is at its limit with nothing the kernel can reclaim (anonymous memory, no swap) was
# killed by Enable-WriteTracking, a WriteProtect save or migration that enabled tracking for itself: the injected
# userfaultfd() charges its inode to the process's cgroup, whose OOM killer then killed the process in the middle of the
# injection (the command said ProcessExited). Enabling now looks at the cgroup and each one above it first (room below the
# limit plus its file pages) and says ResourceLimit, nothing injected, where under 256 KiB is left (MemoryCgroupRoom). The
# three cases failed before (each: the process killed, ProcessExited); a cgroup at its limit holding clean page cache is
# the guard (enabled, as before).
# Targets: tests/native/regionset.c, imgtarget.

BeforeDiscovery {
    $R33ResWtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    # A save or a migration's first round reads what pagemap shows: without CAP_SYS_ADMIN it hides frame numbers, so a uffd-wp
    # marker reads as a swapped page and is read (round 28's Cgroup file), which for 64 GiB of markers on a kernel without a
    # shared zero page (this one) faults in 64 GiB. Probed as round 28 does: the frame of a present page of this process.
    $R33ResFrameSkip = if ($R33ResWtSkip) { $R33ResWtSkip } else {
        $first = @(Get-MemoryMapping -Id $PID)[0]
        if (-not @(Get-PageMap -Id $PID -Address $first.Start -Length ($first.End - $first.Start) -Present | Select-Object -First 1).Pfn) {
            'pagemap hides frame numbers here (CAP_SYS_ADMIN), so a save reads each of the 64 GiB of uffd-wp markers as a swapped page (round 28: README, the write tracking''s markers)'
        }
    }
    # A memory cgroup the test may make (root): cgroup v1's memory hierarchy, or v2 with the memory controller enabled for
    # children of the root (as round 28's Cgroup file); and no swap, with which reclaim may swap and the module refuses nothing.
    $R33ResMemcgSkip = if ($R33ResWtSkip) { $R33ResWtSkip } elseif ((id -u) -ne '0') { 'only root may make a memory cgroup and move a process into it' }
    elseif (-not (Test-Path /sys/fs/cgroup/memory/cgroup.procs) -and -not ((Test-Path /sys/fs/cgroup/cgroup.subtree_control) -and (Get-Content /sys/fs/cgroup/cgroup.subtree_control) -match '\bmemory\b')) { 'no writable memory cgroup hierarchy here (v1 memory, or v2 with memory in the root''s subtree_control)' }
    elseif ((Get-Content /proc/meminfo | Where-Object { $_ -like 'SwapTotal:*' }) -notmatch ':\s+0 kB') { 'the machine has swap: a cgroup at its limit may swap, and enabling is not refused there' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state33res'
    $script:R33ResRoot = New-Item -ItemType Directory (Join-Path $TestDrive 'r33res')
    $script:R33ResExe = (Resolve-Path (Join-Path $PSScriptRoot '../native/bin/regionset')).Path
    $script:R33ResPage = [uint64][Environment]::SystemPageSize

    # regionset: $Count private anonymous mappings of $Bytes each (MAP_NORESERVE, a PROT_NONE page between two), the first page
    # of each written; $null (and why in $script:R33ResFailed) where they cannot be mapped (an overcommit policy, ulimit -v).
    function Start-R33ResTarget([int] $Count, [uint64] $Bytes) {
        $psi = [Diagnostics.ProcessStartInfo]::new($R33ResExe)
        foreach ($a in "$Count", "$Bytes") { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardInput = $true
        $psi.RedirectStandardOutput = $true
        $p = [Diagnostics.Process]::Start($psi)
        $ready = $p.StandardOutput.ReadLine()
        if ($ready -notmatch '^READY ([0-9a-f]+) ([0-9a-f]+)$') {
            $script:R33ResFailed = "regionset $Count $Bytes could not map its regions: $ready"
            $p.WaitForExit(5000) | Out-Null
            return $null
        }
        [pscustomobject]@{ Process = $p; Id = $p.Id; Start = [Convert]::ToUInt64($Matches[1], 16); Stride = [Convert]::ToUInt64($Matches[2], 16) }
    }
    function Stop-R33ResTarget($Target) {
        if (-not $Target) { return }
        try { $Target.Process.StandardInput.WriteLine('quit') } catch { }
        if (-not $Target.Process.WaitForExit(10000)) { $Target.Process.Kill(); $Target.Process.WaitForExit(5000) | Out-Null }
    }
    function Send-R33ResTarget($Target, [string] $Line) {
        $Target.Process.StandardInput.WriteLine($Line)
        $Target.Process.StandardInput.Flush()
        $Target.Process.StandardOutput.ReadLine()
    }
    function Get-R33ResPageTableKiB($Target) { [uint64]((Get-Content "/proc/$($Target.Id)/status" | Where-Object { $_ -like 'VmPTE:*' }) -replace '\D', '') }
}

Describe 'Write tracking registers 64 GiB of a process in all, however many mappings hold it' -Tag 'Security', 'Round33Res', 'WriteTracking' -Skip:([bool]$R33ResWtSkip) {
    It 'four 32 GiB mappings: Enable-WriteTracking grows the page tables by no more than the markers of 64 GiB' {
        $t = Start-R33ResTarget 4 32GB
        if (-not $t) { Set-ItResult -Skipped -Because $R33ResFailed; return }
        try {
            $before = Get-R33ResPageTableKiB $t
            # The first reset, at enabling, puts the markers (WP_UNPOPULATED) in every registered page never used.
            $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
            $grown = (Get-R33ResPageTableKiB $t) - $before
            # The rule: a registered GiB takes 2 MiB of page tables (512 tables of 512 entries) and one page above them (the
            # table of those), so 64 GiB at most take 131,328 KiB; 768 KiB more for the tables of up to three more levels
            # that a registration crossing their bounds may make. All four mappings registered took twice that.
            $bound = 64 * (2048 + 4) + 768
            $grown | Should -BeLessOrEqual $bound -Because "the markers of 64 GiB take at most $bound KiB of page tables; they grew by $grown KiB"
            Disable-WriteTracking -Id $t.Id -Confirm:$false
            @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { "$($_.LinkTarget)" -like '*userfaultfd*' }).Count | Should -Be 0
        }
        finally {
            Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue
            Stop-R33ResTarget $t
        }
    }

    It 'four 32 GiB mappings: a WriteProtect increment holds every write of each, registered or not' -Skip:([bool]$R33ResFrameSkip) {
        $t = Start-R33ResTarget 4 32GB
        if (-not $t) { Set-ItResult -Skipped -Because $R33ResFailed; return }
        try {
            $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
            $full = Save-MemoryImage -Id $t.Id -Path (Join-Path $R33ResRoot "full-$($t.Id)") -Method WriteProtect -Confirm:$false -WarningAction SilentlyContinue
            # A write into each mapping: the page used before (1 -> 2) and one never used (0 -> 3).
            foreach ($piece in 0..3) {
                Send-R33ResTarget $t "write $piece 0 2" | Should -Be 'OK'
                Send-R33ResTarget $t "write $piece 5 3" | Should -Be 'OK'
            }
            $inc = Save-MemoryImage -Id $t.Id -Path (Join-Path $R33ResRoot "inc-$($t.Id)") -Parent $full.Path -Method WriteProtect -Confirm:$false -WarningAction SilentlyContinue
            Test-MemoryImage -Path $inc.Path | Should -BeTrue
            $e = New-EmulatedProcess
            $null = Restore-MemoryImage -Path $inc.Path -Emulator $e
            foreach ($piece in 0..3) {
                $base = $t.Start + [uint64]$piece * $t.Stride
                foreach ($want in @{ Page = 0; Value = 2 }, @{ Page = 5; Value = 3 }, @{ Page = 6; Value = 0 }) {
                    ($e | Read-EmulatedMemory -Address ($base + [uint64]$want.Page * $R33ResPage) -Length 1 -AsByteArray)[0] | Should -Be $want.Value -Because "page $($want.Page) of mapping $piece"
                }
            }
        }
        finally {
            Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue
            Stop-R33ResTarget $t
            Get-ChildItem -LiteralPath $R33ResRoot | Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
        }
    }

    It 'a watch of an idle process reports no page of the mappings past the budget (compared by content, not counted whole)' {
        $t = Start-R33ResTarget 4 32GB
        if (-not $t) { Set-ItResult -Skipped -Because $R33ResFailed; return }
        try {
            $samples = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 3 -Interval 0.1 -Address $t.Start -Length (4 * $t.Stride) -WarningVariable said -WarningAction SilentlyContinue)
            $samples.Count | Should -Be 3
            foreach ($s in $samples) { $s.DirtyPages | Should -Be 0 -Because "regionset writes nothing while it waits for a line (sample $($s.Index); warnings: $said)" }
            $said | Should -BeNullOrEmpty -Because 'no mapping is counted whole'
        }
        finally { Stop-R33ResTarget $t }
    }

    It 'a WriteProtect migration of the four mappings converges, its final image holding every page' -Skip:([bool]$R33ResFrameSkip) {
        $t = Start-R33ResTarget 4 32GB
        if (-not $t) { Set-ItResult -Skipped -Because $R33ResFailed; return }
        try {
            foreach ($piece in 0..3) { Send-R33ResTarget $t "write $piece 3 $(4 + $piece)" | Should -Be 'OK' }
            $dest = Join-Path $R33ResRoot "mig-$($t.Id)"
            $out = @(Invoke-PreCopyMigration -Id $t.Id -Bandwidth 1GB -MaxIterations 3 -StopThreshold 0 -Destination $dest -Method WriteProtect -Confirm:$false -WarningAction SilentlyContinue)
            $out[-1].StopReason | Should -Be 'Converged'
            Test-MemoryImage -Path $out[-1].FinalImage | Should -BeTrue
            $e = New-EmulatedProcess
            $null = Restore-MemoryImage -Path $out[-1].FinalImage -Emulator $e
            foreach ($piece in 0..3) {
                $base = $t.Start + [uint64]$piece * $t.Stride
                foreach ($want in @{ Page = 0; Value = 1 }, @{ Page = 3; Value = 4 + $piece }, @{ Page = 4; Value = 0 }) {
                    ($e | Read-EmulatedMemory -Address ($base + [uint64]$want.Page * $R33ResPage) -Length 1 -AsByteArray)[0] | Should -Be $want.Value -Because "page $($want.Page) of mapping $piece"
                }
            }
            @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { "$($_.LinkTarget)" -like '*userfaultfd*' }).Count | Should -Be 0 -Because 'the migration disabled the tracking it enabled'
        }
        finally {
            Stop-R33ResTarget $t
            Get-ChildItem -LiteralPath $R33ResRoot | Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
        }
    }
}

Describe 'Enabling write tracking in a process whose memory cgroup is at its limit' -Tag 'Security', 'Round33Res', 'WriteTracking' -Skip:([bool]$R33ResMemcgSkip) {
    BeforeAll {
        $v1 = Test-Path /sys/fs/cgroup/memory/cgroup.procs
        $script:R33ResCgroup = $(if ($v1) { '/sys/fs/cgroup/memory' } else { '/sys/fs/cgroup' }) + "/softdirty-r33res-$([guid]::NewGuid().ToString('n'))"
        $script:R33ResLimitFile = if ($v1) { 'memory.limit_in_bytes' } else { 'memory.max' }
        $script:R33ResUsageFile = if ($v1) { 'memory.usage_in_bytes' } else { 'memory.current' }
        $null = New-Item -ItemType Directory $R33ResCgroup
        # Room for $Bytes above what the cgroup holds now.
        function Set-R33ResRoom([uint64] $Bytes) { Set-Content "$R33ResCgroup/$R33ResLimitFile" ([uint64](Get-Content "$R33ResCgroup/$R33ResUsageFile") + $Bytes) }
        function Get-R33ResTargetState($Target) {
            $state = ((Get-Content "/proc/$($Target.Id)/stat") -split ' ')[2]
            $tracer = (Get-Content "/proc/$($Target.Id)/status" | Where-Object { $_ -like 'TracerPid:*' }) -replace '\D', ''
            $uffd = @(Get-ChildItem "/proc/$($Target.Id)/fd" | Where-Object { "$($_.LinkTarget)" -like '*userfaultfd*' }).Count
            "$state $tracer $uffd"
        }
    }
    # rmdir, once the processes in it have exited (what they charged moves to the parent).
    AfterAll { if ($R33ResCgroup -and (Test-Path $R33ResCgroup)) { [IO.Directory]::Delete($R33ResCgroup) } }

    It 'with a page of room and nothing to reclaim: <Command> says ResourceLimit, the process lives on as it was; with room, tracking works' -ForEach @(
        @{ Command = 'Enable-WriteTracking' }, @{ Command = 'Save-MemoryImage' }, @{ Command = 'Invoke-PreCopyMigration' }
    ) {
        # Before, the injected userfaultfd's inode was charged to the cgroup, whose OOM killer killed the process (Enable: ProcessExited).
        $t = Start-ImgTarget
        try {
            $a = Send-ImgTarget $t 'map 16'
            $null = Send-ImgTarget $t "fill $a 16 3"
            $full = Save-MemoryImage -Id $t.Id -Path (Join-Path $R33ResRoot "mc-full-$($t.Id)") -Method Hash
            Set-Content "$R33ResCgroup/cgroup.procs" $t.Id
            Set-R33ResRoom 4096
            $commandRun = @{
                'Enable-WriteTracking' = { Enable-WriteTracking -Id $t.Id -Confirm:$false }
                'Save-MemoryImage' = { Save-MemoryImage -Id $t.Id -Path (Join-Path $R33ResRoot "mc-wp-$($t.Id)") -Method WriteProtect -Confirm:$false }
                'Invoke-PreCopyMigration' = { Invoke-PreCopyMigration -Id $t.Id -Bandwidth 1GB -MaxIterations 2 -StopThreshold 0 -Destination (Join-Path $R33ResRoot "mc-mig-$($t.Id)") -Method WriteProtect -Confirm:$false }
            }[$Command]
            $id = Get-ErrorId $commandRun
            $t.Process.HasExited | Should -BeFalse -Because "the cgroup's OOM killer killed nothing ($Command said $id)"
            $id | Should -Be "ResourceLimit,SoftDirty.Commands.$($Command -replace '-', '')Command"
            $state, $tracer, $uffd = (Get-R33ResTargetState $t) -split ' '
            $state | Should -Not -BeIn 't', 'T'
            $tracer | Should -Be '0'
            $uffd | Should -Be '0' -Because 'nothing was injected'
            Set-R33ResRoom 64MB
            $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
            (Get-R33ResTargetState $t) -split ' ' | Select-Object -Last 1 | Should -Be '1'
            $null = Send-ImgTarget $t "fill $a 4 5"
            $inc = Save-MemoryImage -Id $t.Id -Path (Join-Path $R33ResRoot "mc-inc-$($t.Id)") -Parent $full.Path -Method WriteProtect -Confirm:$false
            Test-MemoryImage -Path $inc.Path | Should -BeTrue
            Disable-WriteTracking -Id $t.Id -Confirm:$false
            $t.Process.HasExited | Should -BeFalse
        }
        finally {
            Stop-ImgTarget $t
            Set-Content "$R33ResCgroup/$R33ResLimitFile" $(if ($R33ResLimitFile -eq 'memory.max') { 'max' } else { '-1' })
            Get-ChildItem -LiteralPath $R33ResRoot | Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
        }
    }

    It 'at its limit with file pages to reclaim: Enable-WriteTracking works and the process lives on' {
        # 8 MiB written to a file by a process of the cgroup, and synced: clean page cache charged to the cgroup, which reclaim drops.
        $file = Join-Path $R33ResRoot 'cache.bin'
        sh -c "echo `$`$ > '$R33ResCgroup/cgroup.procs' && head -c 8388608 /dev/urandom > '$file' && sync '$file'"
        $LASTEXITCODE | Should -Be 0
        $t = Start-ImgTarget
        try {
            $a = Send-ImgTarget $t 'map 16'
            $null = Send-ImgTarget $t "fill $a 16 3"
            Set-Content "$R33ResCgroup/cgroup.procs" $t.Id
            Set-R33ResRoom 4096
            $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
            $t.Process.HasExited | Should -BeFalse
            (Get-R33ResTargetState $t) -split ' ' | Select-Object -Last 1 | Should -Be '1'
            Disable-WriteTracking -Id $t.Id -Confirm:$false
        }
        finally {
            Stop-ImgTarget $t
            Set-Content "$R33ResCgroup/$R33ResLimitFile" $(if ($R33ResLimitFile -eq 'memory.max') { 'max' } else { '-1' })
            Get-ChildItem -LiteralPath $R33ResRoot | Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
        }
    }
}
