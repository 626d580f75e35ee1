#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, thirteenth attack round: unusual environments of the PowerShell that saves, restores and receives (its
# resource limits, working directory and environment variables), and unusual targets, with real processes (new cases
# only; earlier rounds are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    # prlimit (util-linux) sets a limit of a running process: a pwsh started under a small RLIMIT_FSIZE cannot even load
    # its runtime (CoreCLR writes a larger file at start), so the child lowers its own limit once it runs.
    $script:NoPrlimit = if (-not (Get-Command prlimit -ErrorAction Ignore)) { 'prlimit (util-linux) is not installed' }
    $script:WtSkip = if ($IsLinux) { Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $script:IsRoot = $IsLinux -and (id -u) -eq '0'
    $script:RootSkip = if (-not $IsRoot) { 'needs root (to mount a filesystem or chown a folder to another user)' }
    # 2,000 threads: the system's and this user's thread limits must allow them, with room to spare.
    $threadsMax = if ($IsLinux) { [long](Get-Content /proc/sys/kernel/threads-max) } else { 0 }
    $nproc = if ($IsLinux) { ((Get-Content /proc/self/limits | Where-Object { $_ -like 'Max processes*' }) -split '\s+')[2] } else { '0' }
    $script:ThreadSkip = if ($WtSkip) { $WtSkip } elseif ($threadsMax -lt 8000) { "threads-max is $threadsMax" } elseif ($nproc -ne 'unlimited' -and [long]$nproc -lt 8000) { "this user may run $nproc processes and threads" }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r13env')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    # The threads of a process that have a tracer (TracerPid in their status), as "TID:TRACER".
    function Get-TracedThread([int] $Id) {
        foreach ($task in Get-ChildItem "/proc/$Id/task" -ErrorAction SilentlyContinue) {
            $tracer = (Get-Content "$($task.FullName)/status" -ErrorAction SilentlyContinue | Where-Object { $_ -like 'TracerPid:*' }) -replace '\D', ''
            if ($tracer -and $tracer -ne '0') { "$($task.Name):$tracer" }
        }
    }
    # Waits (hang guard) until thread $Id of the target sleeps in vfork (state D) and returns the child it waits for.
    function Wait-VforkChild([int] $Id) {
        $deadline = [DateTime]::UtcNow.AddSeconds(30)
        while ([DateTime]::UtcNow -lt $deadline) {
            $state = ((Get-Content -Raw "/proc/$Id/task/$Id/stat") -replace '^.*\) ', '').Substring(0, 1)
            $children = "$(Get-Content -Raw "/proc/$Id/task/$Id/children" -ErrorAction SilentlyContinue)".Trim()
            if ($state -eq 'D' -and $children) { return [int]($children -split ' ')[-1] }
            Start-Sleep -Milliseconds 20
        }
        throw "thread $Id never waited in vfork"
    }
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Runs a script file in a child pwsh like this one (the module under test imported), through sh so that the
    # child can start with SIGXFSZ ignored; returns its exit code and its output lines.
    function Invoke-LimitedChild([string] $Script, [string[]] $Arguments, [switch] $IgnoreXfsz) {
        $pwsh = Get-PwshCommandLine
        $trap = if ($IgnoreXfsz) { "trap '' XFSZ; " } else { '' }
        $out = sh -c "$trap exec ""`$@""" sh @pwsh -NoProfile -NonInteractive -File $Script @Arguments 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Lines = @($out | ForEach-Object { "$_" }) }
    }
}

Describe 'A PowerShell whose file-size limit (ulimit -f) is smaller than what it writes' -Tag 'Security', 'Round13Env' {
    # A file written past RLIMIT_FSIZE makes the kernel send SIGXFSZ, whose default action ends the process: a save,
    # restore or receive killed PowerShell outright half-way (exit 153), leaving a hidden partial folder and no word of
    # why; with SIGXFSZ ignored the write failed with EFBIG, which .NET reports as a System.ArgumentOutOfRangeException
    # (the error id System.ArgumentOutOfRangeException,...). Both now say ImageWriteError (EFBIG) naming the limit,
    # and leave nothing behind, as a full disk does.
    BeforeAll {
        $script:big = New-FilledEmulator 64     # 256 KiB of memory: past a 64 KiB limit
        $script:bigImg = New-Dest
        $null = Save-MemoryImage -Emulator $big.Emulator -Path $bigImg -Confirm:$false
        $script:small = New-FilledEmulator 1    # 4 KiB: within it
        $script:smallImg = New-Dest
        $null = Save-MemoryImage -Emulator $small.Emulator -Path $smallImg -Confirm:$false
        $script:childScript = Join-Path $root 'fsize-child.ps1'
        @'
param([string] $Big, [string] $Small, [string] $Out)
Import-Module $env:SOFTDIRTY_MODULE
$ErrorActionPreference = 'Stop'
& prlimit --pid $PID --fsize=65536:unlimited   # the soft limit only: raised again below
if ($LASTEXITCODE -ne 0) { 'PRLIMIT FAILED'; exit 3 }
$cases = [ordered]@{
    save    = { Save-MemoryImage -Id $PID -Path "$Out/save" -Confirm:$false }
    restore = { Restore-MemoryImage -Path $Big -Destination "$Out/restore" }
    receive = { Get-Item "$Big/pages.bin", "$Big/index.bin", "$Big/manifest.json" | Receive-MemoryImage -Path "$Out/recv" }
}
foreach ($name in $cases.Keys) {
    $id = try { $null = & $cases[$name]; 'none' } catch { "$($_.FullyQualifiedErrorId)|$($_.CategoryInfo.Category)|$($_.Exception.Message)" }
    "CASE $name $id"
}
$fits = try { $null = Restore-MemoryImage -Path $Small -Destination "$Out/fits"; 'none' } catch { $_.FullyQualifiedErrorId }
"CASE fits $fits"
# A chart of a few samples is some 16 KiB: past a limit of 8 KiB.
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 1MB
$samples = $e | Watch-DirtyPage -Count 3 -Interval 0.1 -Workload @{ Address = $m.Start; Length = 1MB; Pattern = 'HotSet'; AccessesPerSecond = 4000; WriteRatio = 1; Seed = 5 }
& prlimit --pid $PID --fsize=8192:
$chart = try { $null = $samples | Export-DirtyPageChart -Path "$Out/chart.svg"; 'none' } catch { "$($_.FullyQualifiedErrorId)|$($_.CategoryInfo.Category)|$($_.Exception.Message)" }
"CASE chart $chart"
'CHILD DONE'
# PowerShell itself writes its start-up profile (StartupProfileData-NonInteractive, past 64 KiB) as it exits.
& prlimit --pid $PID --fsize=unlimited
'@ | Set-Content -LiteralPath $childScript
    }

    It 'with SIGXFSZ <Label>: Save, Restore and Receive say ImageWriteError (EFBIG, naming the limit) and leave nothing; what fits is written' -Skip:([bool]$NoPrlimit) -ForEach @(
        @{ Label = 'at its default (the kernel would kill PowerShell)'; Ignore = $false }
        @{ Label = 'ignored (the kernel would fail the write with EFBIG)'; Ignore = $true }
    ) {
        $out = New-Item -ItemType Directory (New-Dest)
        $r = Invoke-LimitedChild $childScript @($bigImg, $smallImg, $out.FullName) -IgnoreXfsz:$Ignore
        $text = $r.Lines -join "`n"
        $r.ExitCode | Should -Be 0 -Because "the child must not be killed by SIGXFSZ (exit 153): $text"
        $text | Should -BeLike '*CHILD DONE*'
        foreach ($name in 'save', 'restore', 'receive') {
            $line = $r.Lines | Where-Object { $_ -like "CASE $name *" }
            $line | Should -Not -BeNullOrEmpty -Because $name
            $id, $category, $message = ($line -replace "^CASE $name ", '') -split '\|', 3
            ($id -split ',')[0] | Should -Be 'ImageWriteError' -Because "$name (not a System.* id): $line"
            $category | Should -Be 'WriteError' -Because $name
            $message | Should -BeLike '*file-size limit (ulimit -f) of 65536 bytes*EFBIG*' -Because $name
        }
        $r.Lines | Should -Contain 'CASE fits none' -Because 'a restore within the limit is written as ever'
        $chart = ($r.Lines | Where-Object { $_ -like 'CASE chart *' }) -replace '^CASE chart ', ''
        $id, $category, $message = $chart -split '\|', 3
        ($id -split ',')[0] | Should -Be 'ChartWriteError' -Because "the chart: $chart"
        $message | Should -BeLike '*file-size limit (ulimit -f) of 8192 bytes*EFBIG*'
        Test-Path -LiteralPath "$out/fits/mappings.json" | Should -BeTrue
        @(Get-ChildItem -LiteralPath $out -Force | Where-Object Name -ne 'fits').Name | Should -BeNullOrEmpty -Because 'no partial folder or half-written image is left'
    }
}

Describe 'A target whose thread waits in vfork() for its child' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$WtSkip) {
    # A thread in vfork() sleeps (killable only) until its child execs or exits: PTRACE_INTERRUPT cannot stop it. -Freeze
    # and syscall injection waited 10 s, said ProcIOError, and left the thread seized with the interrupt pending (a thread
    # that is not stopped cannot be detached): once the child was done, the thread stopped in a trap of this PowerShell
    # and stayed stopped for as long as PowerShell ran, so the target hung. Such a thread is now found first: -Freeze is
    # refused at once, and injection uses another thread (or is refused where there is none), nothing left attached.
    It 'with another thread: Save -Freeze is ProcIOError naming vfork, Enable-WriteTracking uses the other thread, and the target runs on after the child' {
        $t = Start-TestTarget -Path $wtExe
        $child = 0
        try {
            $r = $t.Send('map 8')
            $null = $t.Send('threads 1')
            $null = $t.Send('vfork 600000')
            $child = Wait-VforkChild $t.Id
            $e = $null
            try { $null = Save-MemoryImage -Id $t.Id -Freeze -Path (New-Dest) -Confirm:$false -ErrorAction Stop } catch { $e = $_ }
            ($e.FullyQualifiedErrorId -split ',')[0] | Should -Be 'ProcIOError'
            Get-TracedThread $t.Id | Should -BeNullOrEmpty -Because 'no thread is left seized'
            $e.Exception.Message | Should -BeLike "*thread $($t.Id) *waits in vfork() for its child $child*nothing was attached*"
            $null = Enable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction Stop
            Get-TracedThread $t.Id | Should -BeNullOrEmpty
            Stop-Process -Id $child -Force
            $null = $t.Send("write $r 2 3")
            $t.Send('sum') | Should -Not -BeNullOrEmpty -Because 'the target answers once its vfork child is gone'
            Get-TracedThread $t.Id | Should -BeNullOrEmpty
            $d = Save-MemoryImage -Id $t.Id -Path (New-Dest) -Method WriteProtect -Confirm:$false -ErrorAction Stop
            Test-MemoryImage $d.Path | Should -BeTrue
            Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction Stop
        } finally {
            if ($child) { Stop-Process -Id $child -Force -ErrorAction SilentlyContinue }
            Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue
            Stop-TestTarget $t
        }
    }

    It 'with no other thread: Enable-WriteTracking is ProcIOError naming vfork, nothing attached, and the target runs on after the child' {
        $t = Start-TestTarget -Path $wtExe
        $child = 0
        try {
            $null = $t.Send('vfork 600000')
            $child = Wait-VforkChild $t.Id
            $e = $null
            try { $null = Enable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction Stop } catch { $e = $_ }
            ($e.FullyQualifiedErrorId -split ',')[0] | Should -Be 'ProcIOError'
            Get-TracedThread $t.Id | Should -BeNullOrEmpty -Because 'no thread is left seized'
            $e.Exception.Message | Should -BeLike "*waits in vfork() for its child $child*nothing was attached*"
            Stop-Process -Id $child -Force
            $t.Send('sum') | Should -Not -BeNullOrEmpty -Because 'the target answers once its vfork child is gone'
            Get-TracedThread $t.Id | Should -BeNullOrEmpty
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeFalse
        } finally {
            if ($child) { Stop-Process -Id $child -Force -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }
}

Describe 'A relative XDG_STATE_HOME' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$WtSkip) {
    # XDG_STATE_HOME=state (relative) put the write-tracking state under the working directory of each PowerShell: a
    # Disable-WriteTracking run from another directory found no state ("not enabled") and left the tracking in the target.
    # A relative value is invalid and ignored, as the XDG Base Directory specification says: ~/.local/state is used.
    It 'Enable-WriteTracking keeps its state in ~/.local/state, never in the working directory, and Disable from another directory finds it' {
        $home2 = New-Item -ItemType Directory (New-Dest)
        $work = New-Item -ItemType Directory (New-Dest)
        $other = New-Item -ItemType Directory (New-Dest)
        $script = Join-Path $root 'xdg-child.ps1'
        @"
Import-Module `$env:SOFTDIRTY_MODULE
`$ErrorActionPreference = 'Stop'
`$psi = [Diagnostics.ProcessStartInfo]::new('$wtExe'); `$psi.RedirectStandardInput = `$true; `$psi.RedirectStandardOutput = `$true
`$t = [Diagnostics.Process]::Start(`$psi); `$null = `$t.StandardOutput.ReadLine()
try {
    `$null = Enable-WriteTracking -Id `$t.Id -Confirm:`$false
    'STATE ' + ((Get-ChildItem -LiteralPath '$home2/.local/state/SoftDirty/write-tracking' -Filter '*.json' -ErrorAction SilentlyContinue).Name -join ',')
    [IO.Directory]::SetCurrentDirectory('$other')
    Disable-WriteTracking -Id `$t.Id -Confirm:`$false
    'UFFD ' + @(Get-ChildItem "/proc/`$(`$t.Id)/fd" | Where-Object { "`$(`$_.LinkTarget)" -like '*userfaultfd*' }).Count
    'TARGET ' + `$t.Id
} finally { `$t.Kill() }
"@ | Set-Content -LiteralPath $script
        $pwsh = Get-PwshCommandLine
        $out = @(sh -c 'cd "$1" && h="$2" && shift 2 && exec env -u SOFTDIRTY_STATE_DIR HOME="$h" XDG_STATE_HOME=relstate "$@"' sh $work.FullName $home2.FullName @pwsh -NoProfile -NonInteractive -File $script 2>&1 | ForEach-Object { "$_" })
        $text = $out -join "`n"
        $target = ($out | Where-Object { $_ -like 'TARGET *' }) -replace '^TARGET ', ''
        $target | Should -Not -BeNullOrEmpty -Because $text
        $out | Should -Contain "STATE $target.json" -Because "the state lies in ~/.local/state: $text"
        $out | Should -Contain 'UFFD 0' -Because 'Disable-WriteTracking from another directory found the state and closed the userfaultfd'
        Test-Path -LiteralPath (Join-Path $work 'relstate') | Should -BeFalse -Because 'nothing is made under the working directory'
    }
}

Describe 'A PowerShell whose open-file limit (ulimit -n) runs out' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$WtSkip) {
    # With no descriptor left (EMFILE), opening /proc/PID failed and the commands said ProcessNotFound, "No process with
    # id N", of a process that ran on (a wrong answer a script could act on), and opening a folder on the way to a
    # destination or the write-tracking state said ImageWriteError. Both are now ResourceLimit (raise ulimit -n), as an
    # image read already was: the limit is this process's, nothing is known about the process or the destination.
    It 'every command, at every limit from none left to enough, succeeds or says ResourceLimit; the target is left as it was' {
        $script = Join-Path $root 'nofile-child.ps1'
        @'
param([string] $Target, [string] $Out)
Import-Module $env:SOFTDIRTY_MODULE
$ErrorActionPreference = 'Stop'
$psi = [Diagnostics.ProcessStartInfo]::new($Target); $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
$t = [Diagnostics.Process]::Start($psi); $null = $t.StandardOutput.ReadLine()
$t.StandardInput.WriteLine('map 8'); $null = $t.StandardOutput.ReadLine()
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 64KB; $e | Write-EmulatedMemory -Address $m.Start -Length 64KB
$img = "$Out/img"; $null = Save-MemoryImage -Emulator $e -Path $img -Confirm:$false
$cases = [ordered]@{
    save = { Save-MemoryImage -Id $t.Id -Path "$Out/s$extra" -Confirm:$false }
    freeze = { Save-MemoryImage -Id $t.Id -Freeze -Path "$Out/f$extra" -Confirm:$false }
    pagemap = { Get-PageMap -Id $t.Id -Mapping '[stack]' }
    maps = { Get-MemoryMapping -Id $t.Id }
    support = { Get-SoftDirtySupport -Id $t.Id }
    enable = { Enable-WriteTracking -Id $t.Id -Confirm:$false }
    wpsave = { Save-MemoryImage -Id $t.Id -Method WriteProtect -Path "$Out/w$extra" -Confirm:$false }
    disable = { Disable-WriteTracking -Id $t.Id -Confirm:$false }
    restore = { Restore-MemoryImage $img "$Out/r$extra" }
}
# The soft limit is set in-process (setrlimit): at a low limit PowerShell could neither find nor start prlimit again.
Add-Type -Namespace R13 -Name Limit -MemberDefinition @"
[System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] private static extern int getrlimit(int resource, ulong[] limits);
[System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] private static extern int setrlimit(int resource, ulong[] limits);
// 7: RLIMIT_NOFILE (asm-generic/resource.h, x86-64 and arm64 alike).
public static int SetOpenFiles(ulong soft) { var l = new ulong[2]; if (getrlimit(7, l) != 0) return -1; l[0] = soft; return setrlimit(7, l); }
"@
try {
    # Every command once with descriptors to spare first: the runtime opens what it opens lazily (the console's standard
    # error, assemblies, the once-per-session warning) now, not at a limit that would end PowerShell itself.
    [Console]::Error.Flush()
    $WarningPreference = 'SilentlyContinue'
    foreach ($name in $cases.Keys) { $extra = 'warm'; try { $null = & $cases[$name] } catch { "WARMUP $name $($_.FullyQualifiedErrorId)" } }
    $open = @(Get-ChildItem "/proc/$PID/fd").Count
    $soft = [ulong](((Get-Content "/proc/$PID/limits" | Where-Object { $_ -like 'Max open files*' }) -split '\s+')[3])
    foreach ($extra in 0..24) {
        if ([R13.Limit]::SetOpenFiles([ulong]($open + $extra)) -ne 0) { throw 'setrlimit failed' }
        $lines = foreach ($name in $cases.Keys) {
            $id = try { $null = & $cases[$name]; 'ok' } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
            "CASE $extra $name $id"
        }
        $null = [R13.Limit]::SetOpenFiles($soft)
        $lines
        # Whatever a command left enabled at a low limit is disabled with descriptors to spare.
        try { Disable-WriteTracking -Id $t.Id -Confirm:$false } catch { if ($_.FullyQualifiedErrorId -notlike 'WriteTrackingNotEnabled,*') { "CLEANUP $($_.FullyQualifiedErrorId)" } }
    }
    'UFFD ' + @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { "$($_.LinkTarget)" -like '*userfaultfd*' }).Count
    'TRACER ' + ((Get-Content "/proc/$($t.Id)/status" | Where-Object { $_ -like 'TracerPid:*' }) -replace '\D', '')
    'CHILD DONE'
} finally { $t.Kill() }
'@ | Set-Content -LiteralPath $script
        $out = New-Item -ItemType Directory (New-Dest)
        $pwsh = Get-PwshCommandLine
        $lines = @(& $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -File $script (Resolve-Path $wtExe).Path $out.FullName 2>&1 | ForEach-Object { "$_" })
        $text = $lines -join "`n"
        $lines | Should -Contain 'CHILD DONE' -Because $text
        $cases = @($lines | Where-Object { $_ -like 'CASE *' })
        $cases.Count | Should -Be (25 * 9)
        # Disable-WriteTracking after an Enable-WriteTracking the limit stopped rightly says there is nothing to disable.
        $notEnabled = @($cases | Where-Object { $_ -like '* enable *' -and $_ -notlike '* ok' } | ForEach-Object { ($_ -split ' ')[1] })
        $wrong = @($cases | Where-Object {
            $f = $_ -split ' '
            $f[3] -notin 'ok', 'ResourceLimit' -and -not ($f[2] -eq 'disable' -and $f[3] -eq 'WriteTrackingNotEnabled' -and $f[1] -in $notEnabled)
        })
        $wrong | Should -BeNullOrEmpty -Because 'a limit of this PowerShell is ResourceLimit, never ProcessNotFound, ImageWriteError or another error'
        @($cases | Where-Object { $_ -like '* ResourceLimit' }) | Should -Not -BeNullOrEmpty -Because 'the lowest limits leave no descriptor'
        @($cases | Where-Object { $_ -like 'CASE 24 *' -and $_ -notlike '* ok' }) | Should -BeNullOrEmpty -Because 'with 24 descriptors to spare every command works'
        @($lines | Where-Object { $_ -like 'CLEANUP *' -or $_ -like 'WARMUP *' }) | Should -BeNullOrEmpty
        $lines | Should -Contain 'UFFD 0'
        $lines | Should -Contain 'TRACER 0'
    }
}

Describe 'Memory of unusual kinds: MAP_GROWSDOWN grown between images, mlock, sealed memfds' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$WtSkip) {
    It '-Method <Method>: the increment after the mapping grew down and each kind was written restores what a full image of that moment restores' -ForEach @(
        @{ Method = 'WriteProtect' }, @{ Method = 'Hash' }
    ) {
        $t = Start-TestTarget -Path $wtExe
        try {
            $addresses = $t.Send('oddmaps') -split ' '
            $addresses[4] | Should -Be '0' -Because 'mlock of 8 pages succeeds (within RLIMIT_MEMLOCK)'
            if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction Stop }
            $parent = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Method $Method -Path $parent -Confirm:$false -ErrorAction Stop
            $grown = $t.Send('oddwrite')
            ([Convert]::ToUInt64($grown, 16)) | Should -BeLessThan ([Convert]::ToUInt64($addresses[0], 16))
            $inc = New-Dest
            $i = Save-MemoryImage -Id $t.Id -Method $Method -Parent $parent -Path $inc -Confirm:$false -ErrorAction Stop -WarningVariable warned
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Confirm:$false -ErrorAction Stop
            Test-MemoryImage $inc | Should -BeTrue
            $i.UnreadablePages | Should -Be 0
            # The mappings under test only (the grown one, the mlock'd one, the two memfds). Elsewhere a clean page of a
            # private file mapping (libc's data) that reclaim drops between the two saves is in the chain and not in the
            # full image (seen once in CI on a busy machine; noted after round 16: images store present pages only).
            $ps = [uint64]$t.PageSize
            $ranges = @(@([Convert]::ToUInt64($grown, 16), 6), @([Convert]::ToUInt64($addresses[1], 16), 8), @([Convert]::ToUInt64($addresses[2], 16), 8), @([Convert]::ToUInt64($addresses[3], 16), 4)) |
                ForEach-Object { , @($_[0], ($_[0] + [uint64]$_[1] * $ps)) }
            $differ = @(Compare-RestoredImage $inc $full $root | Where-Object {
                    if ($_ -notmatch ': ([0-9a-f]+)-([0-9a-f]+)\.bin=') { return $true }
                    $s = [Convert]::ToUInt64($Matches[1], 16); $e = [Convert]::ToUInt64($Matches[2], 16)
                    @($ranges | Where-Object { $s -lt $_[1] -and $_[0] -lt $e }).Count -gt 0
                })
            $differ | Should -BeNullOrEmpty
        } finally {
            if ($Method -eq 'WriteProtect') { Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue }
            Stop-TestTarget $t
        }
    }
}

Describe 'A target of thousands of threads' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$ThreadSkip) {
    It '2,000 threads: Save -Freeze stops and resumes every one (none left stopped or traced), and write tracking counts their stacks and lets go' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $t.Send('sleepers 2000') | Should -Be '2000'
            $img = Save-MemoryImage -Id $t.Id -Freeze -Path (New-Dest) -Confirm:$false -ErrorAction Stop
            Test-MemoryImage $img.Path | Should -BeTrue
            $tasks = @(Get-ChildItem "/proc/$($t.Id)/task")
            $tasks.Count | Should -BeGreaterThan 2000
            @($tasks | Where-Object { ((Get-Content -Raw "$($_.FullName)/stat") -replace '^.*\) ', '').Substring(0, 1) -in 't', 'T' }) | Should -BeNullOrEmpty -Because 'every thread was resumed'
            Get-TracedThread $t.Id | Should -BeNullOrEmpty
            $samples = @(Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 2 -Interval 0.5 -ErrorAction Stop)
            $samples.Count | Should -Be 2
            $samples[1].DirtyPages | Should -BeGreaterThan 1000 -Because 'each of 2,000 threads writes its stack every 20 ms'
            Get-TracedThread $t.Id | Should -BeNullOrEmpty
            @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { "$($_.LinkTarget)" -like '*userfaultfd*' }) | Should -BeNullOrEmpty -Because 'the watch disabled the tracking it enabled'
            $t.Send('sum') | Should -Not -BeNullOrEmpty
        } finally { Stop-TestTarget $t }
    }
}

Describe 'A write-tracking state folder on a filesystem that is full' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$WtSkip -or [bool]$RootSkip) {
    # A reset recorded nowhere would let a chain counting from the last one miss the writes it takes away: with the state
    # filesystem full, the increment and the watch fail before re-protecting anything, and the next increment once there
    # is room again holds the page written meanwhile.
    It 'an increment and a watch say ProcIOError (no space), and the increment after is exact' {
        $mnt = New-Item -ItemType Directory (New-Dest)
        chmod 0755 $mnt
        mount -t tmpfs -o size=64k,mode=0755 tmpfs $mnt
        $saved = $env:SOFTDIRTY_STATE_DIR
        $t = $null
        try {
            $env:SOFTDIRTY_STATE_DIR = "$mnt/state"
            $t = Start-TestTarget -Path $wtExe
            $r = $t.Send('map 8')
            $null = Enable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction Stop
            $parent = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Method WriteProtect -Path $parent -Confirm:$false -ErrorAction Stop
            $null = dd if=/dev/zero "of=$mnt/filler" bs=4k count=64 2>&1
            $null = $t.Send("write $r 3")
            foreach ($case in @(
                @{ Name = 'increment'; Run = { Save-MemoryImage -Id $t.Id -Method WriteProtect -Parent $parent -Path (New-Dest) -Confirm:$false } }
                @{ Name = 'watch'; Run = { Watch-DirtyPage -Id $t.Id -Method WriteProtect -Count 1 -Interval 0.2 } }
            )) {
                $e = $null
                try { $null = & $case.Run -ErrorAction Stop } catch { $e = $_ }
                ($e.FullyQualifiedErrorId -split ',')[0] | Should -Be 'ProcIOError' -Because $case.Name
                $e.Exception.Message | Should -BeLike '*No space left on device*' -Because $case.Name
            }
            Remove-Item -LiteralPath "$mnt/filler"
            $null = $t.Send("write $r 5")
            $inc = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Method WriteProtect -Parent $parent -Path $inc -Confirm:$false -ErrorAction Stop
            $full = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Path $full -Confirm:$false -ErrorAction Stop
            Compare-RestoredImage $inc $full $root | Should -BeNullOrEmpty -Because 'page 3, written while the state could not be saved, is in the increment'
            Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction Stop
        } finally {
            if ($t) { Disable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction SilentlyContinue; Stop-TestTarget $t }
            $env:SOFTDIRTY_STATE_DIR = $saved
            umount $mnt
        }
    }
}

Describe 'HOME and XDG_STATE_HOME pointing into a folder of another user' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$WtSkip -or [bool]$RootSkip) {
    It '<Variable> in a folder of user 65534: Enable-WriteTracking is UnsafeDestination before touching the process, and nothing is made there' -ForEach @(
        @{ Variable = 'HOME' }, @{ Variable = 'XDG_STATE_HOME' }
    ) {
        $victim = New-Item -ItemType Directory (New-Dest)
        chmod 0755 $victim
        chown 65534:65534 $victim
        $script = Join-Path $root "foreign-$Variable.ps1"
        @"
Import-Module `$env:SOFTDIRTY_MODULE
`$psi = [Diagnostics.ProcessStartInfo]::new('$((Resolve-Path $wtExe).Path)'); `$psi.RedirectStandardInput = `$true; `$psi.RedirectStandardOutput = `$true
`$t = [Diagnostics.Process]::Start(`$psi); `$null = `$t.StandardOutput.ReadLine()
try {
    'ENABLE ' + (Get-ErrorId { Enable-WriteTracking -Id `$t.Id -Confirm:`$false })
    'UFFD ' + @(Get-ChildItem "/proc/`$(`$t.Id)/fd" | Where-Object { "`$(`$_.LinkTarget)" -like '*userfaultfd*' }).Count
} finally { `$t.Kill() }
"@ | Set-Content -LiteralPath $script
        $pwsh = Get-PwshCommandLine
        # PowerShell itself writes its caches under HOME; the module's state would be in .local/state/SoftDirty.
        $out = @(sh -c 'v="$1"; d="$2"; shift 2; exec env -u SOFTDIRTY_STATE_DIR "$v=$d" "$@"' sh $Variable $victim.FullName @pwsh -NoProfile -NonInteractive -Command "Import-Module '$((Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1'))'; & '$script'" 2>&1 | ForEach-Object { "$_" })
        $text = $out -join "`n"
        $out | Should -Contain 'ENABLE UnsafeDestination,SoftDirty.Commands.EnableWriteTrackingCommand' -Because $text
        $out | Should -Contain 'UFFD 0'
        # Names under the folder only: the temp folder above it may have any name.
        @(Get-ChildItem -LiteralPath $victim -Recurse -Force | Where-Object { $_.FullName.Substring($victim.FullName.Length) -like '*SoftDirty*' }) | Should -BeNullOrEmpty -Because 'no state folder is made in the other user''s folder'
    }
}

Describe 'A tracked target that then installs a seccomp filter failing close() with EPERM' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$WtSkip) {
    # Disable-WriteTracking injects close(): the filter would answer it with EPERM, so the module does not run it (the restore
    # code must be able to close the descriptor should PowerShell die) and says SeccompForbids; the tracking stays whole.
    It 'Disable-WriteTracking is SeccompForbids and leaves the tracking as it was; an increment is exact or SeccompForbids' {
        $t = Start-TestTarget -Path $wtExe
        try {
            $r = $t.Send('map 8')
            $null = Enable-WriteTracking -Id $t.Id -Confirm:$false -ErrorAction Stop
            $parent = New-Dest
            $null = Save-MemoryImage -Id $t.Id -Method WriteProtect -Path $parent -Confirm:$false -ErrorAction Stop
            $null = $t.Send('seccomperrno 3')   # close(2) on x86-64, the only architecture injection supports
            Get-ErrorId { Disable-WriteTracking -Id $t.Id -Confirm:$false } | Should -Be 'SeccompForbids,SoftDirty.Commands.DisableWriteTrackingCommand'
            (Get-SoftDirtySupport -Id $t.Id).Enabled | Should -BeTrue
            @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { "$($_.LinkTarget)" -like '*userfaultfd*' }).Count | Should -Be 1
            Get-TracedThread $t.Id | Should -BeNullOrEmpty
            $null = $t.Send("write $r 2")
            $inc = New-Dest
            $id = Get-ErrorId { Save-MemoryImage -Id $t.Id -Method WriteProtect -Parent $parent -Path $inc -Confirm:$false }
            $id | Should -BeIn 'none', 'SeccompForbids,SoftDirty.Commands.SaveMemoryImageCommand'
            if ($id -eq 'none') {
                $full = New-Dest
                $null = Save-MemoryImage -Id $t.Id -Path $full -Confirm:$false -ErrorAction Stop
                Compare-RestoredImage $inc $full $root | Should -BeNullOrEmpty
            }
            $t.Send('sum') | Should -Not -BeNullOrEmpty
        } finally { Stop-TestTarget $t }
    }
}

Describe 'XDG_RUNTIME_DIR pointing at a folder another user owns and every user may write to' -Tag 'Security', 'Round13Env', 'WriteTracking' -Skip:([bool]$WtSkip -or [bool]$RootSkip) {
    # The epoch folders are found from the user id (/run/user/UID, /tmp), never from the environment: a runtime folder
    # someone else chose gets nothing, whatever the commands do.
    It 'saves, watches, write tracking and soft-dirty clears write nothing there' {
        $victim = New-Item -ItemType Directory (New-Dest)
        chown 65534:65534 $victim
        chmod 0777 $victim
        $script = Join-Path $root 'xdg-runtime.ps1'
        @"
`$ErrorActionPreference = 'Stop'
`$t = Start-TestTarget -Path '$((Resolve-Path $wtExe).Path)'
try {
    `$null = `$t.Send('map 8')
    `$null = Save-MemoryImage -Id `$t.Id -Path '$(New-Dest)' -Confirm:`$false
    `$null = Watch-DirtyPage -Id `$t.Id -Method Hash -Count 1 -Interval 0.1
    `$null = Watch-DirtyPage -Id `$t.Id -Method WriteProtect -Count 1 -Interval 0.1
    `$null = Enable-WriteTracking -Id `$t.Id -Confirm:`$false
    `$null = Save-MemoryImage -Id `$t.Id -Method WriteProtect -Path '$(New-Dest)' -Confirm:`$false
    Disable-WriteTracking -Id `$t.Id -Confirm:`$false
    `$e = New-EmulatedProcess; `$null = `$e | Add-EmulatedMapping -Length 64KB; `$e | Clear-SoftDirty -Confirm:`$false
    'CHILD DONE'
} finally { Stop-TestTarget `$t }
"@ | Set-Content -LiteralPath $script
        $pwsh = Get-PwshCommandLine
        $out = @(sh -c 'd="$1"; shift; exec env XDG_RUNTIME_DIR="$d" "$@"' sh $victim.FullName @pwsh -NoProfile -NonInteractive -Command "Import-Module '$((Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1'))'; & '$script'" 2>&1 | ForEach-Object { "$_" })
        $out | Should -Contain 'CHILD DONE' -Because ($out -join "`n")
        @(Get-ChildItem -LiteralPath $victim -Recurse -Force) | Should -BeNullOrEmpty
    }
}
