#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, eighteenth attack round: targets that run programs with posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK; the
# calling thread sleeps, killable only, until the child execs or exits, and the child writes the caller's memory until then)
# and targets whose threads come and go (their stacks unmapped by the C library while the module reads), under -Freeze
# saves, write tracking and migrations. New cases only (a vfork child that never execs: round 13; churn with job control:
# round 17; a sharer held by another tracer: round 15).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    $PtraceSkip = if ($yama -ge 3 -or ($yama -eq 2 -and (id -u) -ne '0')) { "Yama's ptrace_scope $yama forbids ptrace of a child here" } else { $null }
    $WtSkip = Get-WriteTrackingSkipReason -Relation Descendant
    $Methods = @(
        @{ Method = 'Hash'; Skip = $PtraceSkip }
        @{ Method = 'WriteProtect'; Skip = $WtSkip }
    )
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:Root = New-Item -ItemType Directory (Join-Path $TestDrive 'r18s')
    function New-ImagePath([string] $Prefix = 'i') { Join-Path $Root "$Prefix-$([guid]::NewGuid().ToString('n'))" }

    # What is wrong with the region in $Image: wftarget's "fill" makes every page's first word odd (never an all-zero page),
    # so a page the image lost restores as zero. Empty when every page is there.
    function Test-RegionWhole([string] $Image, $Region, [int] $PageSize) {
        $words = Get-RestoredRegionWords $Image $Region $PageSize $Root
        $lost = @(for ($p = 0; $p -lt $words.Count; $p++) { if (($words[$p] -band 1) -eq 0) { $p } })
        if ($lost.Count) { "pages $($lost -join ', ') of the region restore without their data" }
    }

    # The things left wrong after a command on $Target: a thread of it or of a child traced, the target not answering
    # (its spawning threads are stopped and joined: a child left stopped would keep one in waitpid), a child left over.
    function Test-TargetLetGo($Target, [string] $Stop) {
        Get-ThreadTracer $Target.Id
        $null = Send-WfTarget $Target $Stop
        $left = @(Get-ChildProcessId $Target.Id)
        if ($left.Count) { "children left after '$Stop': $($left -join ', ')" }
    }
}

AfterAll { Stop-TestTarget -All }

Describe 'Round 18: -Freeze and migrations of a process that runs programs with posix_spawn' -Tag 'Security', 'Round18Spawn' -Skip:([bool]$PtraceSkip) {
    # Before: the freeze refused a process with a thread in vfork at once (ProcIOError, VforkWait.Refusal): 17 of 20 -Freeze
    # saves of 'spawn 2' here, and every migration's stop-and-copy round. A vfork lasts until the child execs (posix_spawn:
    # at once), and the thread cannot be stopped before (PTRACE_INTERRUPT does not wake a killable sleep; the trap is taken
    # on the way out of clone), while the child writes this memory: the freeze now waits for the vfork to end (bounded) with
    # nothing attached, then stops the thread. Interleavings at the freeze, per spawning thread: in vfork (waited for; or its
    # child is held already as a process sharing the memory, and the thread then cannot run until that child is let go), in
    # waitpid for a child that exec'd, in its own code between. In all of them the save succeeds with the whole region, and
    # nothing is left traced or stopped.
    It 'Save-MemoryImage -Freeze -Method <Method>: every save of 6 succeeds, whole and valid, and the target and its children run on untraced' -ForEach $Methods {
        # Pester evaluates -Skip once, before the -ForEach data are bound: each case says why it cannot run here.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip }
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 64
            $null = Send-WfTarget $t 'spawn 3'
            for ($i = 0; $i -lt 6; $i++) {
                $image = New-ImagePath
                $info = Save-MemoryImage -Id $t.Id -Path $image -Freeze -Method $Method -ErrorAction Stop -WarningVariable warned -WarningAction SilentlyContinue
                $info.Frozen | Should -BeTrue
                $info.UnreadablePages | Should -Be 0 -Because "save $i"
                $warned | Should -BeNullOrEmpty -Because "save $i"
                Test-MemoryImage -Path $image | Should -BeTrue -Because "save $i"
                Test-RegionWhole $image $r $t.PageSize | Should -BeNullOrEmpty -Because "save $i"
                Get-ThreadTracer $t.Id | Should -BeNullOrEmpty -Because "after save $i"
            }
            Test-TargetLetGo $t 'spawn 0' | Should -BeNullOrEmpty
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-WfTarget $t
        }
    }

    It 'Invoke-PreCopyMigration -Method <Method>: the stop-and-copy round freezes it, the chain is valid and whole, nothing left traced' -ForEach $Methods {
        # Pester evaluates -Skip once, before the -ForEach data are bound: each case says why it cannot run here.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip }
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 64
            $null = Send-WfTarget $t 'spawn 3'
            for ($i = 0; $i -lt 2; $i++) {
                $out = @(Invoke-PreCopyMigration -Id $t.Id -Destination (New-ImagePath 'm') -MaxIterations 2 -StopThreshold 0 -Bandwidth 1GB -Method $Method -ErrorAction Stop -WarningVariable warned -WarningAction SilentlyContinue)
                $summary = $out[-1]
                $warned | Should -BeNullOrEmpty -Because "migration $i"
                $summary.FinalImage | Should -Not -BeNullOrEmpty
                Test-MemoryImage -Path $summary.FinalImage | Should -BeTrue -Because "migration $i"
                Test-RegionWhole $summary.FinalImage $r $t.PageSize | Should -BeNullOrEmpty -Because "migration $i"
                Get-ThreadTracer $t.Id | Should -BeNullOrEmpty -Because "after migration $i"
            }
            Test-TargetLetGo $t 'spawn 0' | Should -BeNullOrEmpty
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-WfTarget $t
        }
    }
}

Describe 'Round 18: Watch-DirtyPage of a process that runs programs with posix_spawn' -Tag 'Security', 'Round18Spawn' -Skip:([bool]$PtraceSkip) {
    # Held: sampling (no freeze) reads while spawn children come and go; glibc maps a stack for each child and unmaps it
    # once the child exec'd, so a sample may find such a stack present and then not read it (gone, not unreadable).
    # Interleavings: any sample against any point of a spawn; in all of them every sample comes, with no warning.
    It 'Watch-DirtyPage -Method <Method>: every sample comes, no page unreadable, nothing left traced' -ForEach $Methods {
        # Pester evaluates -Skip once, before the -ForEach data are bound: each case says why it cannot run here.
        if ($Skip) { Set-ItResult -Skipped -Because $Skip }
        $t = Start-WfTarget
        try {
            $null = New-WfRegion $t 64
            $null = Send-WfTarget $t 'spawn 3'
            $samples = @(Watch-DirtyPage -Id $t.Id -Method $Method -Interval 0.05 -Count 8 -ErrorAction Stop -WarningVariable warned -WarningAction SilentlyContinue)
            $samples.Count | Should -Be 8
            $warned | Should -BeNullOrEmpty
            Test-TargetLetGo $t 'spawn 0' | Should -BeNullOrEmpty
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-WfTarget $t
        }
    }
}

Describe 'Round 18: a process whose only thread runs programs with posix_spawn' -Tag 'Security', 'Round18Spawn' -Skip:([bool]$PtraceSkip) {
    # "wftarget spawn": one thread, in vfork about as often as not. Before: Enable-WriteTracking (syscall injection) and
    # -Freeze were refused whenever that thread was in vfork when looked at (ProcIOError: no other thread to use). Now both
    # wait for the vfork to end. Interleavings: the thread in vfork (waited for), in waitpid or its own code (attached at
    # once; one that enters vfork after it was picked stops when the vfork ends, which is what the interrupt waits for).
    BeforeAll {
        # Starts the single-threaded spawner; returns the Process.
        function Start-Spawner {
            $psi = [Diagnostics.ProcessStartInfo]::new((Join-Path $PSScriptRoot '../native/bin/wftarget'))
            $psi.ArgumentList.Add('spawn')
            $psi.RedirectStandardOutput = $true
            $p = [Diagnostics.Process]::Start($psi)
            if ($p.StandardOutput.ReadLine() -notmatch '^READY (\d+) (\d+)$') { throw 'wftarget spawn did not start' }
            $p
        }
    }

    It 'Save-MemoryImage -Freeze: 6 of 6 saves succeed, valid, and it runs on untraced' {
        $p = Start-Spawner
        try {
            for ($i = 0; $i -lt 6; $i++) {
                $image = New-ImagePath
                $info = Save-MemoryImage -Id $p.Id -Path $image -Freeze -Method Hash -ErrorAction Stop -WarningAction SilentlyContinue
                $info.UnreadablePages | Should -Be 0
                Test-MemoryImage -Path $image | Should -BeTrue -Because "save $i"
                Get-ThreadTracer $p.Id | Should -BeNullOrEmpty -Because "after save $i"
            }
            $p.HasExited | Should -BeFalse
        } finally { $p.Kill(); $p.WaitForExit(5000) | Out-Null }
    }

    It 'Enable-WriteTracking, two increments of a WriteProtect chain, Disable: all succeed, valid, nothing left traced' -Skip:([bool]$WtSkip) {
        $p = Start-Spawner
        try {
            for ($i = 0; $i -lt 3; $i++) {
                $null = Enable-WriteTracking -Id $p.Id -Confirm:$false -ErrorAction Stop
                $full = Save-MemoryImage -Id $p.Id -Path (New-ImagePath) -Method WriteProtect -ErrorAction Stop -WarningAction SilentlyContinue
                $inc = Save-MemoryImage -Id $p.Id -Path (New-ImagePath) -Parent $full.Path -Method WriteProtect -ErrorAction Stop -WarningAction SilentlyContinue
                Test-MemoryImage -Path $inc.Path | Should -BeTrue -Because "chain $i"
                Disable-WriteTracking -Id $p.Id -Confirm:$false -ErrorAction Stop
                Get-ThreadTracer $p.Id | Should -BeNullOrEmpty -Because "after chain $i"
            }
            $p.HasExited | Should -BeFalse
        } finally {
            Disable-WriteTracking -Id $p.Id -Confirm:$false -ErrorAction SilentlyContinue
            $p.Kill(); $p.WaitForExit(5000) | Out-Null
        }
    }
}

Describe 'Round 18: thread stacks unmapped while a save or a migration reads them' -Tag 'Security', 'Round18Spawn' {
    # 'churn 2': threads start detached threads back to back; glibc unmaps the stacks of exited ones (beyond its stack cache)
    # from the next thread's start. A stack listed in the mappings and found present, then unmapped before its pages were
    # read, counted as unreadable pages: 7 of 8 migrations here warned that a round image lacked present pages, and their
    # chains were not valid. Memory unmapped after it was found is gone, as memory unmapped before the pagemap scan is (the
    # scan leaves it out): it is in no image and never unreadable. Under -Freeze nothing unmaps (every thread is stopped
    # before the mappings are read); the incomplete frozen images of earlier rounds were increments over such a live round.
    # Interleavings per stack: unmapped before the listing (not listed), before the scan (left out), between the scan and
    # the read (gone: not counted), after the read (in the image), unmapped and mapped again at the same place by the next
    # thread (read again: that memory now). In all, the region is whole and no page is unreadable.
    It 'Invoke-PreCopyMigration -Method Hash (live rounds read while threads come and go): no round lacks pages, the chain is valid and whole' -Skip:([bool]$PtraceSkip) {
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 64
            $null = Send-WfTarget $t 'churn 2'
            for ($i = 0; $i -lt 2; $i++) {
                $out = @(Invoke-PreCopyMigration -Id $t.Id -Destination (New-ImagePath 'm') -MaxIterations 3 -StopThreshold 0 -Bandwidth 1GB -Method Hash -ErrorAction Stop -WarningVariable warned -WarningAction SilentlyContinue)
                $warned | Should -BeNullOrEmpty -Because "migration $i"
                foreach ($round in $out | Where-Object ImagePath) {
                    # (Get-MemoryImage gives the chain up to this round.)
                    @(Get-MemoryImage -Path $round.ImagePath | Where-Object UnreadablePages -ne 0) | Should -BeNullOrEmpty -Because "round $($round.Round) of migration $i"
                }
                Test-MemoryImage -Path $out[-1].FinalImage | Should -BeTrue -Because "migration $i"
                Test-RegionWhole $out[-1].FinalImage $r $t.PageSize | Should -BeNullOrEmpty -Because "migration $i"
            }
            Test-TargetLetGo $t 'churn 0' | Should -BeNullOrEmpty
        } finally { Stop-WfTarget $t }
    }

    It 'Save-MemoryImage without -Freeze, full then increments: none lacks pages, each chain is valid and whole' {
        $t = Start-WfTarget
        try {
            $r = New-WfRegion $t 64
            $null = Send-WfTarget $t 'churn 2'
            $parent = $null
            for ($i = 0; $i -lt 6; $i++) {
                $image = New-ImagePath
                $info = if ($parent) { Save-MemoryImage -Id $t.Id -Path $image -Parent $parent -Method Hash -ErrorAction Stop -WarningAction SilentlyContinue }
                else { Save-MemoryImage -Id $t.Id -Path $image -Method Hash -ErrorAction Stop -WarningAction SilentlyContinue }
                $info.UnreadablePages | Should -Be 0 -Because "save $i"
                Test-MemoryImage -Path $image | Should -BeTrue -Because "save $i"
                $parent = $image
            }
            Test-RegionWhole $parent $r $t.PageSize | Should -BeNullOrEmpty
            $null = Send-WfTarget $t 'churn 0'
        } finally { Stop-WfTarget $t }
    }
}
