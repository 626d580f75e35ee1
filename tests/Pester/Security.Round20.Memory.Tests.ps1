#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twentieth attack round (memory): memory kinds of newer kernels and target states no earlier round tried,
# hunting silent data loss, hangs and wrong diagnoses. New cases only (rounds 2-19: Security.Round*.Tests.ps1; mseal,
# MAP_DROPPABLE, guard regions, memfd_secret, MADV_FREE and reclaim, KSM, mremap, userfaultfd MISSING ranges and the
# target's own userfaultfd were done). Target: tests/native/wttarget.c. Each feature is probed and skipped with the reason.

BeforeDiscovery {
    $WtSkip = if ($IsLinux) { Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force; Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
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
