#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 34 (Nozero): looks that cost memory, what a save, a watch or a migration makes the target allocate.
# Found (round 33's open "machine harmed"): where pagemap hides frame numbers (no CAP_SYS_ADMIN), a uffd-wp marker (a
# registered page never used) looks like a swapped page (SWAP | UFFD_WP), so a WriteProtect save read every one through
# /proc/PID/mem, and on a kernel without a shared zero page each read faulted a new page into the target, charged to its
# memory cgroup: a full save of 4 x 32 GiB registered took the machine into global OOM, and in a memory cgroup the OOM killer
# killed the target. Such pages must still be read (a real swapped page looks the same: not reading it would lose its data),
# so their reads are bounded (MarkerReadBudget, where the kernel has no shared zero page: one that has maps it for each, at
# the cost of no page, and bounds nothing): an eighth of MemAvailable, and half of the room below the target's memory
# cgroup limit where the machine has no swap. At the first such page all of them are counted (PAGEMAP_SCAN: swapped and not
# written), and too many refuse the save with ResourceLimit before any is read. The cgroup test failed before (the target,
# 256 MiB of markers in a cgroup with 32 MiB of room, was killed by the cgroup's OOM killer during the save).
# Held (tried by hand as root, not kept as tests: they change the global hugetlb pool): a Hash and a WriteProtect save and a
# Hash watch of a MAP_PRIVATE hugetlb mapping with one huge page faulted fault no other (HugePages_Free and _Rsvd unchanged;
# the target then wrote both huge pages, no SIGBUS; the images hold the page as the process does); a save of a process mapping
# an 8 GiB MFD_HUGETLB memfd MAP_SHARED | MAP_NORESERVE never touched (empty pool) read no page of it; a WriteProtect
# increment after the target dropped 64 MiB (MADV_DONTNEED: the kernel freed its empty page tables) remade them from this
# process, not charged to the target's cgroup at its limit (no OOM kill).
# Targets: tests/native/regionset.c.

BeforeDiscovery {
    $R34NozeroWtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $R34NozeroMemcgSkip = if ($R34NozeroWtSkip) { $R34NozeroWtSkip } elseif ((id -u) -ne '0') { 'only root may make a memory cgroup and move a process into it' }
    elseif (-not (Get-Command setpriv -CommandType Application -ErrorAction SilentlyContinue)) { 'setpriv is needed to run the save without CAP_SYS_ADMIN' }
    elseif (-not (Test-Path /sys/fs/cgroup/memory/cgroup.procs) -and -not ((Test-Path /sys/fs/cgroup/cgroup.subtree_control) -and (Get-Content /sys/fs/cgroup/cgroup.subtree_control) -match '\bmemory\b')) { 'no writable memory cgroup hierarchy here (v1 memory, or v2 with memory in the root''s subtree_control)' }
    elseif ((Get-Content /proc/meminfo | Where-Object { $_ -like 'SwapTotal:*' }) -notmatch ':\s+0 kB') { 'the machine has swap: the cgroup''s room bounds nothing then' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state34nozero'
    $script:R34NozeroRoot = New-Item -ItemType Directory (Join-Path $TestDrive 'r34nozero')
    $script:R34NozeroExe = (Resolve-Path (Join-Path $PSScriptRoot '../native/bin/regionset')).Path
    $script:R34NozeroPage = [uint64][Environment]::SystemPageSize

    # regionset: one private anonymous mapping of $Bytes, its first page written (1), tracked, page 3 written (7); $null (why in $R34NozeroFailed) where it cannot be mapped.
    function Start-R34NozeroTarget([uint64] $Bytes) {
        $psi = [Diagnostics.ProcessStartInfo]::new($R34NozeroExe)
        foreach ($a in '1', "$Bytes") { $psi.ArgumentList.Add($a) }
        $psi.RedirectStandardInput = $true
        $psi.RedirectStandardOutput = $true
        $p = [Diagnostics.Process]::Start($psi)
        $ready = $p.StandardOutput.ReadLine()
        if ($ready -notmatch '^READY ([0-9a-f]+) ([0-9a-f]+)$') {
            $script:R34NozeroFailed = "regionset 1 $Bytes could not map its region: $ready"
            $p.WaitForExit(5000) | Out-Null
            return $null
        }
        $t = [pscustomobject]@{ Process = $p; Id = $p.Id; Start = [Convert]::ToUInt64($Matches[1], 16) }
        # Tracked (the first reset puts a marker on every page but the first), then page 3 written (7).
        $null = Enable-WriteTracking -Id $t.Id -Confirm:$false
        Send-R34NozeroTarget $t 'write 0 3 7' | Should -Be 'OK'
        $t
    }
    function Stop-R34NozeroTarget($Target) {
        if (-not $Target) { return }
        Disable-WriteTracking -Id $Target.Id -Confirm:$false -ErrorAction SilentlyContinue
        try { $Target.Process.StandardInput.WriteLine('quit') } catch { }
        if (-not $Target.Process.WaitForExit(10000)) { $Target.Process.Kill(); $Target.Process.WaitForExit(5000) | Out-Null }
    }
    function Send-R34NozeroTarget($Target, [string] $Line) {
        $Target.Process.StandardInput.WriteLine($Line)
        $Target.Process.StandardInput.Flush()
        $Target.Process.StandardOutput.ReadLine()
    }
    # Whether reads of $Bytes of markers fit the bound of MemAvailable (an eighth of it), with room to spare for a busy machine.
    function Test-R34NozeroFits([uint64] $Bytes) {
        $kib = [uint64]((Get-Content /proc/meminfo | Where-Object { $_ -like 'MemAvailable:*' }) -replace '\D', '')
        $kib * 1KB / 8 -ge 2 * $Bytes
    }
    function Get-R34NozeroRssAnon($Target) { [uint64]((Get-Content "/proc/$($Target.Id)/status" | Where-Object { $_ -like 'RssAnon:*' }) -replace '\D', '') }
    # The image restored: page 0 holds 1 (regionset's), page 3 holds 7 (the test's write), page 4 (a marker) zeros.
    function Assert-R34NozeroImage($Target, [string] $Path) {
        Test-MemoryImage -Path $Path | Should -BeTrue
        $e = New-EmulatedProcess
        $null = Restore-MemoryImage -Path $Path -Emulator $e
        foreach ($want in @{ Page = 0; Value = 1 }, @{ Page = 3; Value = 7 }, @{ Page = 4; Value = 0 }) {
            ($e | Read-EmulatedMemory -Address ($Target.Start + [uint64]$want.Page * $R34NozeroPage) -Length 1 -AsByteArray)[0] | Should -Be $want.Value -Because "page $($want.Page)"
        }
    }
    # A WriteProtect save of the target in a child pwsh without CAP_SYS_ADMIN (pagemap hides frame numbers from it); its error id or 'none'.
    function Invoke-R34NozeroHiddenFrameSave($Target, [string] $Path) {
        $script = Join-Path $TestDrive "r34nozero-save-$([guid]::NewGuid().ToString('n')).ps1"
        Set-Content -LiteralPath $script -Value @'
param([string] $ModulePath, [int] $TargetId, [string] $Path)
Import-Module $ModulePath
$pfn = (Get-SoftDirtySupport).PfnVisible
try { $null = Save-MemoryImage -Id $TargetId -Path $Path -Method WriteProtect -Confirm:$false -WarningAction SilentlyContinue -ErrorAction Stop; $id = 'none' }
catch { $id = $_.FullyQualifiedErrorId }
"RESULT $pfn $id"
'@
        $pwsh = Get-PwshCommandLine
        $out = & setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin @pwsh -NoProfile -NonInteractive -File $script -ModulePath $env:SOFTDIRTY_MODULE -TargetId $Target.Id -Path $Path 2>&1
        Remove-Item -LiteralPath $script -ErrorAction SilentlyContinue
        $line = @($out | Where-Object { "$_" -like 'RESULT *' }) | Select-Object -Last 1
        if (-not $line) { throw "the child pwsh printed no result: $($out -join ' | ')" }
        $null, $pfn, $id = "$line" -split ' ', 3
        $pfn | Should -Be 'False' -Because 'the child runs without CAP_SYS_ADMIN, so pagemap hides frame numbers from it'
        $id
    }
}

Describe 'Round 34: a save where pagemap hides frame numbers reads uffd-wp markers only within a bound' -Tag 'Security', 'Round34Nozero', 'WriteTracking' -Skip:([bool]$R34NozeroWtSkip) {
    It 'a registered mapping whose markers fit the bound saves whole: every written page, the rest zeros' {
        if (-not (Test-R34NozeroFits 64MB)) { Set-ItResult -Skipped -Because 'under 1 GiB of MemAvailable: 64 MiB of markers may not fit the bound'; return }
        $t = Start-R34NozeroTarget 64MB
        if (-not $t) { Set-ItResult -Skipped -Because $R34NozeroFailed; return }
        try {
            $img = Save-MemoryImage -Id $t.Id -Path (Join-Path $R34NozeroRoot "fit-$($t.Id)") -Method WriteProtect -Confirm:$false -WarningAction SilentlyContinue
            Assert-R34NozeroImage $t $img.Path
        }
        finally { Stop-R34NozeroTarget $t }
    }
}

Describe 'Round 34: a save without CAP_SYS_ADMIN of a process whose memory cgroup has little room' -Tag 'Security', 'Round34Nozero', 'WriteTracking' -Skip:([bool]$R34NozeroMemcgSkip) {
    BeforeAll {
        $v1 = Test-Path /sys/fs/cgroup/memory/cgroup.procs
        $script:R34NozeroCgroup = $(if ($v1) { '/sys/fs/cgroup/memory' } else { '/sys/fs/cgroup' }) + "/softdirty-r34nozero-$([guid]::NewGuid().ToString('n'))"
        $script:R34NozeroLimitFile = if ($v1) { 'memory.limit_in_bytes' } else { 'memory.max' }
        $script:R34NozeroUsageFile = if ($v1) { 'memory.usage_in_bytes' } else { 'memory.current' }
        $null = New-Item -ItemType Directory $R34NozeroCgroup
        function Set-R34NozeroRoom([uint64] $Bytes) { Set-Content "$R34NozeroCgroup/$R34NozeroLimitFile" ([uint64](Get-Content "$R34NozeroCgroup/$R34NozeroUsageFile") + $Bytes) }
    }
    AfterAll { if ($R34NozeroCgroup -and (Test-Path $R34NozeroCgroup)) { [IO.Directory]::Delete($R34NozeroCgroup) } }

    It '256 MiB of markers, 32 MiB of room: ResourceLimit before any is read (whole where the kernel maps its zero page), the target lives on as large as it was; with room, the save is whole' {
        # Before, each marker read faulted a page charged to the cgroup, whose OOM killer killed the target during the save.
        if (-not (Test-R34NozeroFits 256MB)) { Set-ItResult -Skipped -Because 'under 4 GiB of MemAvailable: 256 MiB of markers may not fit the bound once the cgroup has room'; return }
        $t = Start-R34NozeroTarget 256MB
        if (-not $t) { Set-ItResult -Skipped -Because $R34NozeroFailed; return }
        try {
            Set-Content "$R34NozeroCgroup/cgroup.procs" $t.Id
            Set-R34NozeroRoom 32MB
            $before = Get-R34NozeroRssAnon $t
            $id = Invoke-R34NozeroHiddenFrameSave $t (Join-Path $R34NozeroRoot "tight-$($t.Id)")
            $t.Process.HasExited | Should -BeFalse -Because "the cgroup's OOM killer killed nothing (the save said $id)"
            Get-R34NozeroRssAnon $t | Should -Be $before -Because 'no marker read faulted a page in'
            $zeroPage = ((Get-SoftDirtySupport).Rules | Where-Object Name -EQ 'SharedZeroPage').Value
            if ($zeroPage -eq 'True') {
                # A kernel with a shared zero page maps it for a marker's read, which allocates nothing: no bound, the save is whole.
                $id | Should -Be 'none' -Because 'SharedZeroPage is True here: the reads cost no page'
                Assert-R34NozeroImage $t (Join-Path $R34NozeroRoot "tight-$($t.Id)")
            }
            else {
                $id | Should -Be 'ResourceLimit,SoftDirty.Commands.SaveMemoryImageCommand' -Because "SharedZeroPage is $zeroPage here: each marker's read allocates a page"
                Test-Path (Join-Path $R34NozeroRoot "tight-$($t.Id)") | Should -BeFalse -Because 'a refused save leaves no image'
                # With room for the reads of every marker (twice them: the bound is half the room), the save reads them and is whole.
                Set-R34NozeroRoom 600MB
                (Invoke-R34NozeroHiddenFrameSave $t (Join-Path $R34NozeroRoot "room-$($t.Id)")) | Should -Be 'none'
                $t.Process.HasExited | Should -BeFalse
                Assert-R34NozeroImage $t (Join-Path $R34NozeroRoot "room-$($t.Id)")
            }
        }
        finally {
            Stop-R34NozeroTarget $t
            Set-Content "$R34NozeroCgroup/$R34NozeroLimitFile" $(if ($R34NozeroLimitFile -eq 'memory.max') { 'max' } else { '-1' })
            Get-ChildItem -LiteralPath $R34NozeroRoot | Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
        }
    }
}
