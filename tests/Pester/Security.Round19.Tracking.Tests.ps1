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
        $mem = [IO.FileStream]::new("/proc/$($Target.Id)/mem", 'Open', 'Read', 'ReadWrite', 1, $false)
        try { $mem.Position = [int64]$Region.Address; $now = [byte[]]::new($Region.Pages * $ps); $mem.ReadExactly($now, 0, $now.Length) } finally { $mem.Dispose() }
        for ($p = 0; $p -lt $Region.Pages; $p++) {
            if (-not [Linq.Enumerable]::SequenceEqual([ArraySegment[byte]]::new($restored, $offset + $p * $ps, $ps), [ArraySegment[byte]]::new($now, $p * $ps, $ps))) { "page $p" }
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
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = New-WtRegion $t 8
            $null = $t.Send("uringreg $($r.Hex) 2 4")
            $full = New-ImagePath; $inc1 = New-ImagePath; $inc2 = New-ImagePath
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method $Method
            $null = Save-MemoryImage -Id $t.Id -Path $inc1 -Parent $full -Method $Method
            [int]$t.Send("uringread $dataFile") | Should -Be (4 * $t.PageSize) -Because 'READ_FIXED read 4 pages of the file into the buffer'
            $t.Send('uringclose') | Should -Be '0'
            Wait-NothingPinned $t.Id | Should -BeTrue -Because 'the closed io_uring is freed and its buffer unpinned'
            $null = Save-MemoryImage -Id $t.Id -Path $inc2 -Parent $inc1 -Method $Method
            Test-MemoryImage -Path $inc2 | Should -BeTrue
            Compare-RegionWithProcess $t $inc2 $r | Should -BeNullOrEmpty -Because 'the pages READ_FIXED wrote after the parent''s reset must be in the increment'
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }
}
