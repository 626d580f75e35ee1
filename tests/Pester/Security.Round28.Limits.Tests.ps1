#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, round 28 (Limits): the limits of the PowerShell that runs the module (its open-file limit met at each step of
# a receive, a save, a restore and a chain deeper than the limit) and numbers past 2^31 and 2^32 (an image whose pages.bin
# is over 4 GiB: an opt-in proof, SOFTDIRTY_BIG_IMAGES, whose run is described in the round's report).
# Found: a file piped into Receive-MemoryImage whose folder could not be opened for want of a descriptor said ImageCorrupt
# (of the sender's image) where it is ResourceLimit; a save, restore or receive whose result was put in place and whose
# last check (that the path still names it) met the limit said ResourceLimit and left the result in place (a script that
# tried again met ImageExists); a restore held two descriptors per image of the chain (its folder and its pages.bin), so a
# chain that Test-MemoryImage and Save-MemoryImage -Parent read was ResourceLimit to a restore at the same limit, and the
# pages files it had opened before it met the limit stayed open until the garbage collector came; a thread the PowerShell
# may not start (ulimit -u, a pids cgroup) was System.OutOfMemoryException or TaskSchedulerException, and once met by the
# hold of .NET's child reaping (round 23) it left that hold counted with no thread for the rest of the session.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:PtraceSkip = if ($IsLinux) { Get-PtraceSkipReason } else { 'Linux only' }
    $isRoot = $IsLinux -and (id -u) -eq '0'
    # Root is exempt from ulimit -u (CAP_SYS_RESOURCE): it meets a thread limit in a pids cgroup, which it makes (v1 or v2).
    $script:NoThreadLimit = if ($isRoot -and -not (Test-Path /sys/fs/cgroup/pids/cgroup.procs) -and
        -not ((Test-Path /sys/fs/cgroup/cgroup.subtree_control) -and (Get-Content /sys/fs/cgroup/cgroup.subtree_control) -match '\bpids\b')) {
        'root meets no thread limit here: no pids cgroup hierarchy (v1), nor the pids controller enabled below the cgroup v2 root'
    }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = $IsLinux -and (id -u) -eq '0'
    $script:WtSkip = if ($IsLinux) { Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $script:wtExe = Join-Path $PSScriptRoot '../native/bin/wttarget'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r28limits')
    # What both children start with: the module, and the soft limits set in-process (setrlimit; at a low limit PowerShell
    # could start no prlimit). 7: RLIMIT_NOFILE, 6: RLIMIT_NPROC (asm-generic/resource.h, x86-64 and arm64 alike).
    $script:common = @'
$PSStyle.OutputRendering = 'PlainText'
Import-Module $env:SOFTDIRTY_MODULE
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
Add-Type -Namespace R28 -Name Limit -MemberDefinition @"
[System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] private static extern int getrlimit(int resource, ulong[] limits);
[System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] private static extern int setrlimit(int resource, ulong[] limits);
public const int OpenFiles = 7, Threads = 6;
public static ulong Soft(int resource) { var l = new ulong[2]; return getrlimit(resource, l) == 0 ? l[0] : 0; }
public static int Set(int resource, ulong soft) { var l = new ulong[2]; if (getrlimit(resource, l) != 0) return -1; l[0] = soft; return setrlimit(resource, l); }
public static int SetOpenFiles(ulong soft) { return Set(OpenFiles, soft); }
"@
'@
    # The descriptor helpers of the first child: the limit that leaves exactly N descriptors free below it (RLIMIT_NOFILE
    # bounds the descriptor's number, so holes count), and the descriptors open (the listing's own left out).
    $script:prelude = "param([string] `$Out)`n" + $common + "`n" + @'
Add-Type -Namespace R28 -Name Descriptors -MemberDefinition @"
public static System.Collections.Generic.HashSet<int> Open() {
    var used = new System.Collections.Generic.HashSet<int>();
    foreach (var f in System.IO.Directory.GetFiles("/proc/self/fd")) {
        var t = new System.IO.FileInfo(f).LinkTarget;
        if (t != null && t.StartsWith("/proc/") && t.EndsWith("/fd")) continue;
        used.Add(int.Parse(System.IO.Path.GetFileName(f)));
    }
    return used;
}
public static int LimitFor(int free) {
    var used = Open();
    for (int n = 0, seen = 0; ; n++) if (!used.Contains(n)) { if (seen == free) return n; seen++; }
}
"@
$soft = [R28.Limit]::Soft([R28.Limit]::OpenFiles)
function Invoke-AtLimit([int] $Free, [scriptblock] $Command) {
    $before = [R28.Descriptors]::Open().Count
    if ([R28.Limit]::SetOpenFiles([ulong][R28.Descriptors]::LimitFor($Free)) -ne 0) { throw 'setrlimit failed' }
    $id = try { $null = & $Command; 'ok' } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
    $null = [R28.Limit]::SetOpenFiles($soft)
    "$id $([R28.Descriptors]::Open().Count - $before)"
}
'@
    # One child runs every part (a PowerShell started and its module imported once), each in a folder of its own; its lines
    # come back prefixed with the part's name.
    $parts = [ordered]@{}
    $parts.receive = @'
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 64KB; $e | Write-EmulatedMemory -Address $m.Start -Length 64KB
$null = Save-MemoryImage -Emulator $e -Path "$Out/img" -Confirm:$false
$files = @(Get-Item "$Out/img/index.bin", "$Out/img/pages.bin", "$Out/img/manifest.json")
$null = $files | Receive-MemoryImage "$Out/warm" -Confirm:$false
# From no descriptor to spare up to the first limit at which every receive works (what a receive needs depends on the
# depth of the paths and on the user: probed, not assumed).
foreach ($free in 0..40) {
    $worked = 0
    foreach ($at in 0..2) {
        $dest = "$Out/r-$free-$at"
        $before = [R28.Descriptors]::Open().Count
        $id = try {
            $null = & { for ($i = 0; $i -lt 3; $i++) { if ($i -eq $at) { $null = [R28.Limit]::SetOpenFiles([ulong][R28.Descriptors]::LimitFor($free)) }; $files[$i] } } |
                Receive-MemoryImage $dest -Confirm:$false
            'ok'
        } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
        $null = [R28.Limit]::SetOpenFiles($soft)
        $valid = if (Test-Path $dest) { Test-MemoryImage $dest } else { 'absent' }
        "CASE $free $at $id $([R28.Descriptors]::Open().Count - $before) $valid"
        if ($id -eq 'ok') { $worked++ }
    }
    if ($worked -eq 3) { "ENOUGH $free"; break }
}
'LEFT ' + ((Get-ChildItem -Force $Out -Name | Where-Object { $_ -notmatch '^(img|warm|r-\d+-\d)$' }) -join ' ')
'CHILD DONE'
'@
    $parts.write = @'
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 64KB; $e | Write-EmulatedMemory -Address $m.Start -Length 64KB
$null = Save-MemoryImage -Emulator $e -Path "$Out/img" -Confirm:$false
$null = Save-MemoryImage -Emulator $e -Path "$Out/warm-s" -Parent "$Out/img" -Confirm:$false
$null = Restore-MemoryImage "$Out/img" "$Out/warm-r"
foreach ($free in 0..40) {
    $s = Invoke-AtLimit $free { Save-MemoryImage -Emulator $e -Path "$Out/s-$free" -Parent "$Out/img" -Confirm:$false }
    "CASE save $free $s $(Test-Path "$Out/s-$free")"
    $r = Invoke-AtLimit $free { Restore-MemoryImage "$Out/img" "$Out/r-$free" }
    "CASE restore $free $r $(Test-Path "$Out/r-$free")"
    if ($s -like 'ok *' -and $r -like 'ok *') { "ENOUGH $free"; break }
}
'LEFT ' + ((Get-ChildItem -Force $Out -Name | Where-Object { $_ -notmatch '^(img|warm-[sr]|[sr]-\d+)$' }) -join ' ')
'CHILD DONE'
'@
    $parts.deep = @'
$depth = 48
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 256KB; $e | Write-EmulatedMemory -Address $m.Start -Length 256KB -Value 1
$null = Save-MemoryImage -Emulator $e -Path "$Out/0" -Confirm:$false
for ($i = 1; $i -le $depth; $i++) {
    $e | Write-EmulatedMemory -Address ($m.Start + [uint64](($i % 64) * 4096)) -Length 4096 -Value ([byte]($i + 1))
    $null = Save-MemoryImage -Emulator $e -Path "$Out/$i" -Parent "$Out/$($i - 1)" -Confirm:$false
}
$null = Restore-MemoryImage "$Out/$depth" "$Out/reference"
$reference = (Get-ChildItem "$Out/reference" -Filter *.bin | Get-FileHash).Hash -join ','
$null = Test-MemoryImage "$Out/$depth"
foreach ($free in @(0, 1, ($depth / 2), $depth, ($depth + 2), ($depth + 4), ($depth + 8), ($depth + 12), ($depth + 16), ($depth + 24), (2 * $depth), (2 * $depth + 24))) {
    $r = Invoke-AtLimit $free { if (-not (Test-MemoryImage "$Out/$depth")) { throw "not valid" } }
    "CASE test $free $r"
    $r = Invoke-AtLimit $free { Save-MemoryImage -Emulator $e -Path "$Out/s-$free" -Parent "$Out/$depth" -Confirm:$false }
    "CASE save $free $r"
    $r = Invoke-AtLimit $free { Restore-MemoryImage "$Out/$depth" "$Out/r-$free" }
    $same = if (Test-Path "$Out/r-$free") { ((Get-ChildItem "$Out/r-$free" -Filter *.bin | Get-FileHash).Hash -join ',') -eq $reference } else { 'absent' }
    "CASE restore $free $r $same"
}
'CHILD DONE'
'@
    $child = $prelude + "`n" + (@(foreach ($name in $parts.Keys) {
        "try { & { param([string] `$Out) $($parts[$name]) } (New-Item -ItemType Directory `"`$Out/$name`").FullName | ForEach-Object { `"${name}: `$_`" } }"
        "catch { `"${name}: FAILED `$(`$_.FullyQualifiedErrorId) `$_`" }"
    }) -join "`n")
    $script = Join-Path $root 'child.ps1'
    Set-Content -LiteralPath $script -Value $child
    $pwsh = Get-PwshCommandLine
    $script:childLines = @(& $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -File $script $root.FullName 2>&1 | ForEach-Object { "$_" })
}


Describe 'Round 28: a PowerShell whose open-file limit runs out while it receives, saves or restores an image' -Tag 'Security', 'Round28Limits' {
    It 'each file piped into Receive-MemoryImage, the limit met at each step: ResourceLimit, never ImageCorrupt of the image read; a failed receive leaves nothing' {
        # The limit is set between the files of the pipeline (by the command that produces them), so that it is met where
        # the receiver opens the folder of the file it reads: that said "ImageCorrupt: FOLDER: EMFILE" of an image that is whole.
        $lines = @($childLines | Where-Object { $_ -like 'receive: *' } | ForEach-Object { $_.Substring('receive: '.Length) })
        $text = $lines -join "`n"
        $lines | Should -Contain 'CHILD DONE' -Because $text
        $cases = @($lines | Where-Object { $_ -like 'CASE *' })
        $enough = @($lines | Where-Object { $_ -like 'ENOUGH *' })
        $enough.Count | Should -Be 1 -Because "some limit up to 40 descriptors to spare lets every receive work`n$text"
        $cases.Count | Should -Be (3 * ([int]($enough[0] -split ' ')[1] + 1))
        foreach ($c in $cases) {
            $f = $c -split ' '
            $f[3] | Should -BeIn 'ok', 'ResourceLimit' -Because "a limit of this PowerShell is ResourceLimit, never ImageCorrupt of the image read ($c)"
            # A receive that failed leaves the destination as it was (absent); one that worked put a valid image there.
            $f[5] | Should -Be $(if ($f[3] -eq 'ok') { 'True' } else { 'absent' }) -Because $c
            $f[4] | Should -Be '0' -Because "no descriptor stays open after the command ($c)"
        }
        @($cases | Where-Object { $_ -like '* ResourceLimit *' }).Count | Should -BeGreaterThan 0 -Because 'the lowest limits leave no descriptor'
        $lines | Should -Contain 'LEFT ' -Because 'no private folder stays behind'
    }

    It 'Save-MemoryImage and Restore-MemoryImage at each limit: ok or ResourceLimit, and a command that failed put nothing in place' {
        # Round 13 swept these at every limit for their ErrorId; where the limit was met by the last check of a result already
        # renamed into place (that its path still names it), the command said ResourceLimit and the result stayed.
        $lines = @($childLines | Where-Object { $_ -like 'write: *' } | ForEach-Object { $_.Substring('write: '.Length) })
        $text = $lines -join "`n"
        $lines | Should -Contain 'CHILD DONE' -Because $text
        $cases = @($lines | Where-Object { $_ -like 'CASE *' })
        $enough = @($lines | Where-Object { $_ -like 'ENOUGH *' })
        $enough.Count | Should -Be 1 -Because "some limit up to 40 descriptors to spare lets both work`n$text"
        $cases.Count | Should -Be (2 * ([int]($enough[0] -split ' ')[1] + 1))
        foreach ($c in $cases) {
            $f = $c -split ' '
            $f[3] | Should -BeIn 'ok', 'ResourceLimit' -Because $c
            $f[5] | Should -Be $(if ($f[3] -eq 'ok') { 'True' } else { 'False' }) -Because "a failed command leaves the destination as it was ($c)"
            $f[4] | Should -Be '0' -Because "no descriptor stays open after the command ($c)"
        }
        @($cases | Where-Object { ($_ -split ' ')[3] -eq 'ResourceLimit' }).Count | Should -BeGreaterThan 0
        $lines | Should -Contain 'LEFT '
    }

    It 'a chain of 48 increments restores wherever Test-MemoryImage and Save-MemoryImage -Parent read it with a few descriptors to spare, and a failure keeps none open' {
        # A restore opened each image's pages.bin while it held each image's folder: twice the descriptors of the chain.
        $lines = @($childLines | Where-Object { $_ -like 'deep: *' } | ForEach-Object { $_.Substring('deep: '.Length) })
        $text = $lines -join "`n"
        $lines | Should -Contain 'CHILD DONE' -Because $text
        $cases = @($lines | Where-Object { $_ -like 'CASE *' })
        $cases.Count | Should -Be 36
        foreach ($c in $cases) {
            $f = $c -split ' '
            $f[3] | Should -BeIn 'ok', 'ResourceLimit' -Because $c
            $f[4] | Should -Be '0' -Because "no descriptor stays open after the command ($c)"
            if ($f[1] -eq 'restore') { $f[5] | Should -Be $(if ($f[3] -eq 'ok') { 'True' } else { 'absent' }) -Because $c }
        }
        # Where the chain is read with 16 to spare, it restores too: one descriptor per image, as reading it takes.
        $readable = @($cases | Where-Object { $_ -like 'CASE test * ok *' } | ForEach-Object { [int](($_ -split ' ')[2]) })
        $readable.Count | Should -BeGreaterThan 0 -Because $text
        $spare = @($readable | Where-Object { $_ -ge ($readable | Measure-Object -Minimum).Minimum + 16 })
        $spare.Count | Should -BeGreaterThan 1 -Because "the chain is read at limits with 16 and more to spare`n$text"
        foreach ($free in $spare) {
            $cases | Should -Contain "CASE restore $free ok 0 True" -Because "Test-MemoryImage read the chain with $free descriptors free`n$text"
            $cases | Should -Contain "CASE save $free ok 0" -Because $text
        }
        @($cases | Where-Object { ($_ -split ' ')[2] -eq '0' -and ($_ -split ' ')[3] -eq 'ok' }) | Should -BeNullOrEmpty -Because 'no descriptor left: nothing can be read'
    }
}

Describe 'Round 28: a PowerShell that may start no more threads (a pids cgroup as root, ulimit -u otherwise)' -Tag 'Security', 'Round28Limits' -Skip:([bool]$PtraceSkip -or [bool]$NoThreadLimit) {
    # .NET says a thread it may not start with System.OutOfMemoryException (Thread.Start) or TaskSchedulerException (a
    # long-running task): Save-MemoryImage -Freeze said the first, Restore-MemoryImage the second, as their error ids. And the
    # hold that keeps .NET from reaping a traced child (round 23) counted itself in force before its thread started: refused,
    # it stayed counted with no thread, and for the rest of the session every trace of a child went on without it.
    BeforeAll {
        $script:cgroup = $null
        if ($IsRoot) {
            $name = "softdirty-r28-$([guid]::NewGuid().ToString('n'))"
            $script:cgroup = if (Test-Path /sys/fs/cgroup/pids/cgroup.procs) { "/sys/fs/cgroup/pids/$name" } else { "/sys/fs/cgroup/$name" }
            $null = New-Item -ItemType Directory $cgroup
        }
    }
    # rmdir (a cgroup folder holds only its control files, and the child that used it has exited).
    AfterAll { if ($cgroup -and (Test-Path $cgroup)) { [IO.Directory]::Delete($cgroup) } }

    It 'each command meets the limit as ResourceLimit, leaves the target running and untraced, and the session works on when the limit is lifted' {
        if ($cgroup -and -not (Test-Path "$cgroup/pids.max")) { Set-ItResult -Skipped -Because "the pids controller is not enabled for new cgroups under $(Split-Path $cgroup)"; return }
        $script = Join-Path $root 'threads.ps1'
        "param([string] `$Target, [string] `$Out, [string] `$Cgroup, [string] `$Tracking)`n" + $common + "`n" + @'
$uid = (Get-Content /proc/self/status | Where-Object { $_ -like 'Uid:*' }) -split '\s+' | Select-Object -Index 1
function Get-UserThreads {
    $n = 0
    foreach ($p in [IO.Directory]::GetDirectories('/proc')) {
        if ((Split-Path $p -Leaf) -notmatch '^\d+$') { continue }
        try {
            $u = [IO.File]::ReadAllLines("$p/status") | Where-Object { $_ -like 'Uid:*' }
            if ((($u -split '\s+')[1]) -eq $uid) { $n += [IO.Directory]::GetDirectories("$p/task").Count }
        } catch { }
    }
    $n
}
$soft = [R28.Limit]::Soft([R28.Limit]::Threads)
function Set-Room([int] $Extra) {
    if ($Cgroup) { Set-Content "$Cgroup/pids.max" ([int](Get-Content "$Cgroup/pids.current") + $Extra) }
    elseif ([R28.Limit]::Set([R28.Limit]::Threads, [ulong]((Get-UserThreads) + $Extra)) -ne 0) { throw 'setrlimit failed' }
}
function Clear-Room { if ($Cgroup) { Set-Content "$Cgroup/pids.max" 'max' } else { $null = [R28.Limit]::Set([R28.Limit]::Threads, $soft) } }
$psi = [Diagnostics.ProcessStartInfo]::new($Target); $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
$t = [Diagnostics.Process]::Start($psi); $null = $t.StandardOutput.ReadLine()
$t.StandardInput.WriteLine('map 8'); $null = $t.StandardOutput.ReadLine()
$e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 64KB; $e | Write-EmulatedMemory -Address $m.Start -Length 64KB
$null = Save-MemoryImage -Emulator $e -Path "$Out/img" -Confirm:$false
$cases = [ordered]@{
    freeze = { Save-MemoryImage -Id $t.Id -Freeze -Path "$Out/f$x" -Confirm:$false }
    restore = { Restore-MemoryImage "$Out/img" "$Out/r$x" }
}
if ($Tracking) {
    $cases.enable = { Enable-WriteTracking -Id $t.Id -Confirm:$false }
    $cases.wpsave = { Save-MemoryImage -Id $t.Id -Method WriteProtect -Path "$Out/w$x" -Confirm:$false }
    $cases.disable = { Disable-WriteTracking -Id $t.Id -Confirm:$false }
}
$engine = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
function Get-Holds {
    foreach ($type in 'SoftDirty.Injection.ChildReapingHold', 'SoftDirty.Injection.ChildStopGuard') {
        $engine.GetType($type).GetField('_holders', [Reflection.BindingFlags]'NonPublic, Static').GetValue($null)
    }
}
try {
    foreach ($name in $cases.Keys) { $x = 'warm'; try { $null = & $cases[$name] } catch { "WARMUP $name $($_.FullyQualifiedErrorId)" } }
    if ($Cgroup) { Set-Content "$Cgroup/cgroup.procs" $PID }
    foreach ($extra in 0..3) {
        foreach ($name in $cases.Keys) {
            $x = "$extra"
            Set-Room $extra
            $id = try { $null = & $cases[$name]; 'ok' } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
            Clear-Room
            $state = ((Get-Content "/proc/$($t.Id)/stat") -split ' ')[2]
            $tracer = (Get-Content "/proc/$($t.Id)/status" | Where-Object { $_ -like 'TracerPid:*' }) -replace '\D', ''
            "CASE $extra $name $id $state $tracer $((Get-Holds) -join ',')"
        }
        if ($Tracking) { try { Disable-WriteTracking -Id $t.Id -Confirm:$false } catch { if ($_.FullyQualifiedErrorId -notlike 'WriteTrackingNotEnabled,*') { "CLEANUP $($_.FullyQualifiedErrorId)" } } }
    }
    $x = 'after'
    foreach ($name in $cases.Keys) { "AFTER $name $(try { $null = & $cases[$name]; 'ok' } catch { ($_.FullyQualifiedErrorId -split ',')[0] })" }
    'UFFD ' + @(Get-ChildItem "/proc/$($t.Id)/fd" | Where-Object { "$($_.LinkTarget)" -like '*userfaultfd*' }).Count
    'CHILD DONE'
} finally { Clear-Room; $t.Kill() }
'@ | Set-Content -LiteralPath $script
        $out = New-Item -ItemType Directory (Join-Path $root 'threads')
        $pwsh = Get-PwshCommandLine
        $lines = @(& $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -File $script (Resolve-Path $wtExe).Path $out.FullName "$cgroup" $(if ($WtSkip) { '' } else { 'yes' }) 2>&1 | ForEach-Object { "$_" })
        $text = $lines -join "`n"
        $lines | Should -Contain 'CHILD DONE' -Because $text
        @($lines | Where-Object { $_ -like 'WARMUP *' -or $_ -like 'CLEANUP *' }) | Should -BeNullOrEmpty -Because $text
        $cases = @($lines | Where-Object { $_ -like 'CASE *' })
        $cases.Count | Should -Be (4 * $(if ($WtSkip) { 2 } else { 5 }))
        $notEnabled = @($cases | Where-Object { ($_ -split ' ')[2] -eq 'enable' -and ($_ -split ' ')[3] -ne 'ok' } | ForEach-Object { ($_ -split ' ')[1] })
        foreach ($c in $cases) {
            $f = $c -split ' '
            ($f[3] -in 'ok', 'ResourceLimit' -or ($f[2] -eq 'disable' -and $f[3] -eq 'WriteTrackingNotEnabled' -and $f[1] -in $notEnabled)) | Should -BeTrue -Because "a thread limit of this PowerShell is ResourceLimit ($c)"
            $f[4] | Should -Not -Be 't' -Because "the target is never left stopped ($c)"
            $f[5] | Should -Be '0' -Because "the target is never left traced ($c)"
            $f[6] | Should -Be '0,0' -Because "no hold of .NET's reaping stays counted after a command ($c)"
        }
        @($cases | Where-Object { ($_ -split ' ')[3] -eq 'ResourceLimit' }).Count | Should -BeGreaterThan 0 -Because "no room for a thread: the freeze needs one`n$text"
        @($lines | Where-Object { $_ -like 'AFTER *' -and $_ -notlike '* ok' }) | Should -BeNullOrEmpty -Because "with the limit lifted every command works`n$text"
        $lines | Should -Contain 'UFFD 0'
    }
}

Describe 'Round 28: an image whose pages.bin is over 4 GiB (offsets past 2^31 and 2^32)' -Tag 'Security', 'Round28Limits' {
    # Opt-in (5 GiB written and read twice, about a minute): run with SOFTDIRTY_BIG_IMAGES set. It held in round 28.
    It 'saves, tests and restores 5 GiB of an emulated process page for page, and names a damaged page past 4 GiB at its offset' {
        if (-not $env:SOFTDIRTY_BIG_IMAGES) { Set-ItResult -Skipped -Because 'SOFTDIRTY_BIG_IMAGES is not set: this proof writes a 5 GiB image'; return }
        $dir = New-Item -ItemType Directory (Join-Path $root 'big')
        try {
            $e = New-EmulatedProcess; $m = $e | Add-EmulatedMapping -Length 5GB
            $e | Write-EmulatedMemory -Address $m.Start -Length 5GB -Value 7
            [uint64[]] $offsets = 0, (2GB - 4KB), 2GB, 4GB, (4GB + 8KB), (4GB + 12KB), (5GB - 8KB), (5GB - 4KB)
            $e | Write-EmulatedMemory -Address ($m.Start + $offsets[2]) -Length 4KB -Value 12
            $e | Write-EmulatedMemory -Address ($m.Start + $offsets[4]) -Length 4KB -Value 9
            $e | Write-EmulatedMemory -Address ($m.Start + $offsets[7]) -Length 4KB -Value 11
            $full = Save-MemoryImage -Emulator $e -Path "$dir/0" -Confirm:$false
            $full.DataPages | Should -Be (5GB / 4KB)
            (Get-Item "$dir/0/pages.bin").Length | Should -Be 5GB
            $e | Write-EmulatedMemory -Address ($m.Start + $offsets[5]) -Length 4KB -Value 13
            $e | Write-EmulatedMemory -Address ($m.Start + $offsets[7]) -Length 4KB -Value 0
            $increment = Save-MemoryImage -Emulator $e -Path "$dir/1" -Parent "$dir/0" -Confirm:$false
            $increment.DataPages | Should -Be 1
            $increment.ZeroPages | Should -Be 1
            (Test-MemoryImage "$dir/1" -Detailed).PagesChecked | Should -Be (5GB / 4KB + 2)
            $copy = New-EmulatedProcess
            $null = Restore-MemoryImage "$dir/1" -Emulator $copy
            foreach ($offset in $offsets) {
                $want = [byte[]]($e | Read-EmulatedMemory -Address ($m.Start + $offset) -Length 4KB -AsByteArray)
                $got = [byte[]]($copy | Read-EmulatedMemory -Address ($m.Start + $offset) -Length 4KB -AsByteArray)
                [Linq.Enumerable]::SequenceEqual($want, $got) | Should -BeTrue -Because "the page at offset $offset"
            }
            # The page at 4 GiB + 8 KiB lies at that offset of pages.bin (data pages in address order).
            $fs = [IO.File]::Open("$dir/0/pages.bin", 'Open', 'ReadWrite')
            try { $fs.Position = [long]$offsets[4] + 5; $fs.WriteByte(0x55) } finally { $fs.Dispose() }
            $result = Test-MemoryImage "$dir/1" -Detailed
            $result.Valid | Should -BeFalse
            $result.Problems[0].Offset | Should -Be $offsets[4]
        } finally { Remove-Item -LiteralPath $dir -Recurse -Force }
    }
}
