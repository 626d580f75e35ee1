#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 31 (Hostile): targets whose memory fights back. tests/native/fighttarget.c registers a range with a
# userfaultfd that nobody serves (MISSING of private anonymous memory, or MINOR of a memfd mapped shared, whose dropped
# pages stay in the memfd) and then keeps that userfaultfd where /proc/PID/fd does not show it (a
# message in flight on a socketpair of its own, or a child that holds it and sleeps), while a thread drops the range's
# pages (MADV_DONTNEED) one by one from the top down. A page the pagemap walk saw present and the read finds dropped faults
# into the userfaultfd: process_vm_readv's fault waits, killable only, for a monitor that never answers. The module read
# smaps for such ranges only when the process held a userfaultfd, so before the fix every save, Hash snapshot and Hash
# watch of such a process (as root, whose userfaultfd may take faults from other processes) hung until the target exited,
# and Ctrl+C did not end it. An unprivileged user's userfaultfd is user-mode-only where vm.unprivileged_userfaultfd is 0,
# whose faults from other processes fail at once: there nothing can wait, and the cases check the image alone.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:R31HostileExe = Join-Path $PSScriptRoot '../native/bin/fighttarget'
    $script:R31HostileRoot = New-Item -ItemType Directory (Join-Path $TestDrive 'r31hostile')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state31hostile'
    $script:R31HostileWtSkip = Get-WriteTrackingSkipReason
    # 64 MiB, dropped a page each 20 microseconds from the top: the drop front meets the reads while the command runs.
    $script:R31HostilePages = 16384

    function Start-FightTarget {
        if (-not (Test-Path $R31HostileExe)) { throw "fighttarget is not built: run ./build.ps1 Native ($R31HostileExe)" }
        $psi = [System.Diagnostics.ProcessStartInfo]::new($R31HostileExe)
        $psi.RedirectStandardInput = $true
        $psi.RedirectStandardOutput = $true
        $p = [System.Diagnostics.Process]::Start($psi)
        if ($p.StandardOutput.ReadLine() -notmatch '^READY (\d+) (\d+)$') { throw 'fighttarget did not start' }
        [pscustomobject]@{ Process = $p; Id = [int]$Matches[1]; PageSize = [int]$Matches[2] }
    }
    function Send-FightTarget($Target, [string] $Command) {
        $Target.Process.StandardInput.WriteLine($Command)
        $Target.Process.StandardOutput.ReadLine()
    }
    function Stop-FightTarget($Target) { if ($Target -and -not $Target.Process.HasExited) { $Target.Process.Kill(); $Target.Process.WaitForExit(5000) | Out-Null } }

    # Of the region's pages in the restore of $Image: how many hold the bytes the target wrote, how many are zeros (not in
    # the image), and the indexes of any other (wrong data).
    function Compare-RegionPages([string] $Image, [uint64] $Address, [int] $Pages, [int] $PageSize, [string] $Expected) {
        $out = Join-Path $R31HostileRoot "r-$([guid]::NewGuid().ToString('n'))"
        $mapping = Restore-MemoryImage -Path $Image -Destination $out | Where-Object { $_.Start -le $Address -and $Address -lt $_.End }
        $restored = [IO.File]::ReadAllBytes($mapping.File)
        $want = [IO.File]::ReadAllBytes($Expected)
        $sha = [System.Security.Cryptography.SHA256]::Create()
        $zero = [Convert]::ToHexString($sha.ComputeHash([byte[]]::new($PageSize)))
        $first = [int](($Address - $mapping.Start) / $PageSize)
        $same = 0; $zeros = 0
        $wrong = [System.Collections.Generic.List[int]]::new()
        for ($i = 0; $i -lt $Pages; $i++) {
            $got = [Convert]::ToHexString($sha.ComputeHash($restored, ($first + $i) * $PageSize, $PageSize))
            if ($got -eq [Convert]::ToHexString($sha.ComputeHash($want, $i * $PageSize, $PageSize))) { $same++ }
            elseif ($got -eq $zero) { $zeros++ }
            else { $wrong.Add($i) }
        }
        [pscustomobject]@{ Same = $same; Zeros = $zeros; Wrong = @($wrong) }
    }
}

Describe 'Round 31: pages dropped under a userfaultfd the process no longer names' -Tag 'Security', 'Round31Hostile' {
    AfterEach { Stop-FightTarget $t }

    It '<Command>, <Mode> registration, the userfaultfd <Where>: it returns, and every page of the image is the target''s or said unreadable' -ForEach @(
        foreach ($where in @(@{ How = 0; Where = 'in flight on a socket' }, @{ How = 1; Where = 'held by a child only' })) {
            foreach ($mode in @(@{ Mode = 'a MISSING'; Map = 'map'; Minor = 0 }, @{ Mode = 'a memfd''s MINOR'; Map = 'shm'; Minor = 1 })) {
                @{ Command = 'Save-MemoryImage'; How = $where.How; Where = $where.Where; Method = 'Auto'; Mode = $mode.Mode; Map = $mode.Map; Minor = $mode.Minor }
                @{ Command = 'Save-MemoryImage -Method WriteProtect'; How = $where.How; Where = $where.Where; Method = 'WriteProtect'; Mode = $mode.Mode; Map = $mode.Map; Minor = $mode.Minor }
                # Round 33: an increment's page walk takes the userfaultfd registrations from its collection's smaps read.
                @{ Command = 'Save-MemoryImage -Parent -Method WriteProtect (mapped after Enable-WriteTracking)'; How = $where.How; Where = $where.Where; Method = 'Increment'; Mode = $mode.Mode; Map = $mode.Map; Minor = $mode.Minor }
                @{ Command = 'Watch-DirtyPage -Method Hash'; How = $where.How; Where = $where.Where; Method = 'Watch'; Mode = $mode.Mode; Map = $mode.Map; Minor = $mode.Minor }
            }
        }
    ) {
        $t = Start-FightTarget
        if ($Method -in 'WriteProtect', 'Increment' -and $R31HostileWtSkip) { Set-ItResult -Skipped -Because $R31HostileWtSkip; return }
        $parent = $null
        if ($Method -eq 'Increment') {
            $null = Enable-WriteTracking -Id $t.Id
            $parent = Join-Path $R31HostileRoot "p-$([guid]::NewGuid().ToString('n'))"
            $null = Save-MemoryImage -Id $t.Id -Path $parent -Method WriteProtect
        }
        $expected = Join-Path $R31HostileRoot "e-$([guid]::NewGuid().ToString('n'))"
        $answer = Send-FightTarget $t "$Map $R31HostilePages $expected"
        if ($answer -notlike 'OK *') { throw "fighttarget: $Map -> $answer" }
        $address = [Convert]::ToUInt64($answer.Substring(3), 16)
        $answer = Send-FightTarget $t ('hide {0:x} {1} {2} {3}' -f $address, $R31HostilePages, $How, $Minor)
        if ($answer -notlike 'OK *') { Set-ItResult -Skipped -Because "the target could not register a userfaultfd here ($answer)"; return }
        # 'OK 1': this user may make only a user-mode-only userfaultfd (vm.unprivileged_userfaultfd 0, no CAP_SYS_PTRACE),
        # whose faults from other processes fail at once: nothing can wait there, and the pages still vanish under the reads.
        $answer = Send-FightTarget $t ('drop {0:x} {1} 20' -f $address, $R31HostilePages)
        $answer | Should -Be 'OK'
        $img = Join-Path $R31HostileRoot "i-$([guid]::NewGuid().ToString('n'))"
        $job = Start-ThreadJob -ArgumentList $t.Id, $img, $Method, (Get-Module SoftDirty).Path, $parent {
            param($TargetId, $Img, $Method, $Module, $Parent)
            Import-Module $Module
            if ($Method -eq 'Watch') {
                $samples = @(Watch-DirtyPage -Id $TargetId -Method Hash -Count 3 -Interval 0.1 -WarningVariable warned -WarningAction SilentlyContinue)
                return [pscustomobject]@{ Info = $null; Samples = $samples.Count; Warned = "$warned" }
            }
            $info = if ($Parent) { Save-MemoryImage -Id $TargetId -Path $Img -Parent $Parent -Method WriteProtect -WarningVariable warned -WarningAction SilentlyContinue }
                else { Save-MemoryImage -Id $TargetId -Path $Img -Method $Method -WarningVariable warned -WarningAction SilentlyContinue }
            [pscustomobject]@{ Info = $info; Samples = 0; Warned = "$warned" }
        }
        $done = Wait-Job $job -Timeout 120
        if (-not $done) { Stop-FightTarget $t; $null = Wait-Job $job -Timeout 30 } # the fault ends when the userfaultfd closes
        $done | Should -Not -BeNullOrEmpty -Because 'a command must never wait for a userfaultfd monitor of the target'
        $result = Receive-Job $job -ErrorAction Stop
        if ($Method -eq 'Watch') {
            $result.Samples | Should -Be 3
            return
        }
        $pages = Compare-RegionPages $img $address $R31HostilePages $t.PageSize $expected
        $pages.Wrong | Should -BeNullOrEmpty -Because 'a page in the image holds what the target wrote there, or nothing'
        $pages.Same + $pages.Zeros | Should -Be $R31HostilePages
        # The pages dropped before the walk are zeros, as any page not present; those dropped between the walk and the read
        # are the monitor's: counted unreadable and said (zeros in the image too).
        if ($result.Info.UnreadablePages -gt 0) {
            $result.Warned | Should -Match 'could not be read.*userfaultfd'
            Test-MemoryImage $img | Should -BeFalse
        }
        $pages.Zeros | Should -BeGreaterOrEqual $result.Info.UnreadablePages
    }
}
