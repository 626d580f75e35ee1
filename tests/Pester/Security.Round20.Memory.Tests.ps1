#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twentieth attack round (memory): memory kinds of newer kernels and target states no earlier round tried,
# hunting silent data loss, hangs and wrong diagnoses. New cases only (rounds 2-19: Security.Round*.Tests.ps1; mseal,
# MAP_DROPPABLE, guard regions, memfd_secret, MADV_FREE and reclaim, KSM, mremap, userfaultfd MISSING ranges and the
# target's own userfaultfd were done). Target: tests/native/wttarget.c. Each feature is probed and skipped with the reason.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    # A FUSE file whose reads fusehold holds (tests/native/fusehold.c): mounting needs root here (it speaks to /dev/fuse itself,
    # without fusermount); root also sees pagemap's frames (CAP_SYS_ADMIN), which tell a uffd-wp marker from a swapped page.
    $FuseSkip = if ($WtSkip) { $WtSkip } else { Get-FuseHoldSkipReason }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r20m')
    function New-ImagePath([string] $Prefix = 'i') { Join-Path $root "$Prefix-$([guid]::NewGuid().ToString('n'))" }
}

AfterAll { Stop-TestTarget -All; Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Round 20: a target that write-protects the memory its write tracking registered' -Tag 'WriteTracking', 'Security', 'Round20Memory' -Skip:([bool]$WtSkip) {
    # The write tracking's userfaultfd registers the target's memory for asynchronous write-protect, and PAGEMAP_SCAN with
    # PM_SCAN_WP_MATCHING re-protects any such range for whoever asks: the target itself (/proc/self/pagemap), or another
    # tool (/proc/PID/pagemap). Seen: after the target took its 3 written pages so (wttarget "ownreset"), the WriteProtect
    # increment had none of them, no warning, Test-MemoryImage $true, and its restore differed from a full image of that
    # moment. Nothing in the process or /proc tells of such a reset (as of a clear_refs by another tool for soft-dirty): the
    # README's chain rule and Save-MemoryImage's help now name it, and its remedies, which must hold: -Verify, -Method Hash.
    It '<Case>: the increment after the target re-protected its written pages restores what a full image of that moment restores' -ForEach @(
        @{ Case = 'WriteProtect with -Verify'; Method = 'WriteProtect'; Verify = $true }
        @{ Case = 'Hash'; Method = 'Hash'; Verify = $false }
    ) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $hex = $t.Send('map 8')
            $null = $t.Send("write $hex 0 8")
            $full = New-ImagePath; $inc = New-ImagePath; $now = New-ImagePath
            # A WriteProtect full image arms the tracking (every page of the region protected), in both cases: the target's
            # own scan below then finds exactly the pages written since.
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method WriteProtect
            $null = $t.Send("write $hex 2 3")
            $t.TrySend("ownreset $hex 8") | Should -Be 'OK 3' -Because 'the target re-protected the 3 pages it wrote since the parent'
            $null = Save-MemoryImage -Id $t.Id -Path $inc -Parent $full -Method $Method -Verify:$Verify
            # The target waits for its next command: nothing changes between the increment and the full image.
            $null = Save-MemoryImage -Id $t.Id -Path $now -Method Hash
            Test-MemoryImage -Path $inc | Should -BeTrue
            Compare-RestoredImage $inc $now $root | Should -BeNullOrEmpty -Because "$Case compares every page's contents with the parent's"
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }
}

Describe 'Round 20: a MAP_PRIVATE mapping of a FUSE file whose server holds reads, its pages dropped under write tracking' -Tag 'WriteTracking', 'Security', 'Round20Memory' -Skip:([bool]$FuseSkip) {
    # Under userfaultfd write-protect the kernel leaves a uffd-wp marker where it drops a page of a file mapping (MADV_DONTNEED here),
    # which pagemap shows as swapped. Before, every save, watch and migration read such pages (to compare them by content),
    # which faults them in from the file: with the page cache dropped, a read the FUSE server never answers (a hostile
    # user's server, an unreachable network file system). Seen: a WriteProtect increment and a watch waited in that read,
    # and PowerShell.Stop (Ctrl+C) did not end them in 20 s; they ended once the server answered. Now a marker in a mapping
    # of a file or shared memory that pagemap's frame names as one (CAP_SYS_ADMIN) is what a page of a file mapping not
    # present is: the file's, in no image (zero where the chain had it), and nothing reads it.
    BeforeAll {
        $script:mnt = Join-Path ([IO.Path]::GetTempPath()) "r20fuse-$([guid]::NewGuid().ToString('n'))"
        $null = New-Item -ItemType Directory $mnt
        $script:fuse = Start-FuseHold $mnt
        $fuse.Ready | Should -BeTrue -Because "fusehold mounted in discovery ($($fuse.Reply))"
        # Runs $Script (the module imported, the state folder of this file) in a PowerShell of its own while fusehold holds
        # reads; returns whether it ended within a minute (a hang guard only), after letting the held reads go either way.
        function Test-EndsWhileHeld([string] $Script) {
            $fuse.Send('hold') | Should -Be 'OK'
            $ps = [PowerShell]::Create()
            try {
                $null = $ps.AddScript("Import-Module '$((Get-Module SoftDirty).Path)'; `$env:SOFTDIRTY_STATE_DIR = '$env:SOFTDIRTY_STATE_DIR'; $Script")
                $run = $ps.BeginInvoke()
                $ended = $run.AsyncWaitHandle.WaitOne([TimeSpan]::FromMinutes(1))
                if (-not $ended) { $null = $ps.BeginStop($null, $null) }
                $fuse.Process.StandardInput.WriteLine('go')
                if ($ended) { $null = $ps.EndInvoke($run) }
                $ps.Streams.Error | ForEach-Object { throw $_ }
                $ended
            } finally {
                $ps.Dispose()
                # 'go' answers with the count of reads let go, after the READ lines of the held ones: read up to it.
                while (($line = $fuse.Read()) -notlike 'GO *') { }
            }
        }
    }
    AfterAll { Stop-FuseHold $fuse; Remove-Item -LiteralPath $mnt -ErrorAction SilentlyContinue }

    It '<Case>: it ends while the server holds every read, and nothing it saves differs from a full image of that moment' -ForEach @(
        @{ Case = 'a WriteProtect increment' }
        @{ Case = 'a 2-sample WriteProtect watch' }
    ) {
        $t = Start-ImgTarget
        try {
            $hex = Send-ImgTarget $t "mapprivate $mnt/f 8"
            $null = Send-ImgTarget $t "touch $hex 0 8"
            $null = Send-ImgTarget $t "write $hex 6 2"
            $full = New-ImagePath; $inc = New-ImagePath; $now = New-ImagePath
            $null = Save-MemoryImage -Id $t.Id -Path $full -Method WriteProtect
            # (Round 23: the write tracking no longer registers a file mapping; the target's own userfaultfd, in the mode the
            # tracking used, leaves the markers now, as any program's may.)
            $null = Send-ImgTarget $t "uffdwp $hex 8"
            $null = Send-ImgTarget $t "dontneed $hex 0 8"
            Send-ImgTarget $t "dropcache $mnt/f" | Should -Be '0'
            $base = [Convert]::ToUInt64($hex, 16)
            foreach ($e in Get-PageMap -Id $t.Id -Address $base -Length (8 * 4096)) {
                ($e.Raw -shr 62) -band 1 | Should -Be 1 -Because 'each dropped page keeps a uffd-wp marker, which pagemap shows as swapped'
            }
            $script = if ($Case -like '*increment*') { "`$null = Save-MemoryImage -Id $($t.Id) -Path '$inc' -Parent '$full' -Method WriteProtect" }
            else { "`$null = Watch-DirtyPage -Id $($t.Id) -Method WriteProtect -Count 2 -Interval 0.2" }
            Test-EndsWhileHeld $script | Should -BeTrue -Because "$Case must not wait for the file system's answer (hang guard: a minute)"
            if ($Case -like '*increment*') {
                $null = Save-MemoryImage -Id $t.Id -Path $now -Method Hash
                Test-MemoryImage -Path $inc | Should -BeTrue
                Compare-RestoredImage $inc $now $root | Should -BeNullOrEmpty -Because 'the dropped pages are the file''s in both'
            }
        } finally {
            Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue
            Stop-ImgTarget $t
        }
    }
}
