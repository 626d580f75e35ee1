# The cmdlets under PowerShell on the machine that runs this (issue 13, round 28: arm64 guests of tests/vm/arm64-cmdlets.sh,
# which records what this prints in tests/vm/recorded/arm64-cmdlets.<id>.txt). Each line is "<what> <result>": results
# that do not depend on addresses, ids or timing, so that two runs on one kernel print the same. A cmdlet that refuses
# prints its ErrorId; "none" is no error.
#   -Module   the SoftDirty.psd1 to import; -Target  a native sdtarget of this machine's architecture; -Work  an empty folder
param([Parameter(Mandatory)] [string] $Module, [Parameter(Mandatory)] [string] $Target, [Parameter(Mandatory)] [string] $Work)
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
Import-Module $Module
function Say([string] $Line) { [Console]::Out.WriteLine($Line); [Console]::Out.Flush() }
# The ErrorId of a command's first error (terminating or not), or 'none'.
function Get-Refusal([scriptblock] $Command) {
    $errs = $null
    try { $null = & $Command -ErrorVariable errs -ErrorAction SilentlyContinue } catch { return ($_.FullyQualifiedErrorId -split ',')[0] }
    if ($errs) { return ($errs[0].FullyQualifiedErrorId -split ',')[0] }
    'none'
}

$ps = [Environment]::SystemPageSize
Say "arch $([Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture) pagesize $ps"
$support = Get-SoftDirtySupport
Say "support softdirty $($support.SoftDirty) pagemapscan $($support.PagemapScan) wpasync $($support.UffdWriteProtectAsync) pfn $($support.PfnVisible)"

# The target: sdtarget with 8 anonymous pages, each written once (page i holds i+1 in its first byte).
$psi = [Diagnostics.ProcessStartInfo]::new($Target)
$psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true; $psi.UseShellExecute = $false
$t = [Diagnostics.Process]::Start($psi)
$null = $t.StandardOutput.ReadLine()
function Send([string] $Command) {
    $t.StandardInput.WriteLine($Command); $t.StandardInput.Flush()
    $reply = $t.StandardOutput.ReadLine()
    if ($reply -notlike 'OK*') { throw "sdtarget: $Command -> $reply" }
    ($reply -split ' ', 2)[1]
}
$base = [Convert]::ToUInt64((Send 'map 8 anon rw'), 16)
$hex = '{0:x}' -f $base
$len = [uint64](8 * $ps)
$null = Send "write $hex 0 8"
$tid = $t.Id

# The live bytes of the 8 pages (through /proc/PID/mem), and whether a restored chain holds them.
function Read-Live {
    $buffer = [byte[]]::new($len)
    $mem = [IO.File]::OpenRead("/proc/$tid/mem")
    try { $null = $mem.Seek([long]$base, 'Begin'); $mem.ReadExactly($buffer, 0, $buffer.Length) } finally { $mem.Dispose() }
    , $buffer
}
function Test-Restored([string] $Image, [string] $Into) {
    $null = Restore-MemoryImage $Image $Into
    $file = Get-ChildItem $Into -Filter ('{0:x}-*.bin' -f $base) | Select-Object -First 1
    if (-not $file) { return 'no-file' }
    $bytes = [IO.File]::ReadAllBytes($file.FullName)
    [Linq.Enumerable]::SequenceEqual([byte[]]$bytes[0..($len - 1)], [byte[]](Read-Live))
}
function Get-Bits([string] $Read) {
    $pages = @(Get-PageMap -Id $tid -Address $base -Length $len -ReadMethod $Read)
    "present $(-join ($pages | ForEach-Object { [int]$_.Present })) softdirty $(-join ($pages | ForEach-Object { [int]$_.SoftDirty })) exclusive $(-join ($pages | ForEach-Object { [int]$_.Exclusive }))"
}

# Get-PageMap by pread and by PAGEMAP_SCAN; Clear-SoftDirty, and what a write sets after it.
foreach ($read in 'Pread', 'PagemapScan') {
    $id = Get-Refusal { Get-PageMap -Id $tid -Address $base -Length $len -ReadMethod $read }
    Say "getpagemap $read $(if ($id -eq 'none') { Get-Bits $read } else { $id })"
}
Say "clearsoftdirty $(Get-Refusal { Clear-SoftDirty -Id $tid })"
$null = Send "write $hex 3 1"
Say "after clear and a write to page 3: $(Get-Bits Pread)"

# Watch-DirtyPage while a shell writes page 6 of the target over and over (through the target's stdin), a value of 1 to 7
# in turn each half second, so that each method (hashes included) sees a change in a sample of 2 seconds.
$stop = Join-Path $Work 'writer.stop'
$shell = [Diagnostics.ProcessStartInfo]::new('/bin/sh')
foreach ($a in '-c', "while [ ! -e $stop ]; do for v in 1 2 3 4 5 6 7; do echo `"write $hex `$((7 - v)) `$v`" > /proc/$tid/fd/0; sleep 0.5; done; done") { $shell.ArgumentList.Add($a) }
$writer = [Diagnostics.Process]::Start($shell)
foreach ($method in 'Auto', 'SoftDirty', 'WriteProtect', 'Hash') {
    $samples = $null
    $id = Get-Refusal { $script:samples = @(Watch-DirtyPage -Id $tid -Method $method -Interval 2 -Count 2 -Address $base -Length $len) }
    $page6 = $base + [uint64](6 * $ps)
    $seen = @($samples | ForEach-Object { $_.Ranges } | Where-Object { $_.Start -le $page6 -and $page6 -lt $_.End }).Count -gt 0
    Say "watch $method $(if ($id -eq 'none') { "method $(@($samples)[0].Method) page6 $seen" } else { $id })"
}
$null = New-Item -ItemType File $stop
$writer.WaitForExit()
# The replies the writer caused: read up to a ping's.
$t.StandardInput.WriteLine('ping'); $t.StandardInput.Flush()
while (($line = $t.StandardOutput.ReadLine()) -ne "OK $tid") { if ($null -eq $line) { throw 'sdtarget ended' } }

# Image chains: a full image, an increment after a write, another after a second write; each tested and restored.
$n = 0
foreach ($method in 'Hash', 'SoftDirty', 'WriteProtect', 'Auto') {
    $n++
    $full = Join-Path $Work "$method-0"
    $id = Get-Refusal { $script:saved = Save-MemoryImage $tid $full -Method $method }
    if ($id -ne 'none') { Say "save $method full $id"; continue }
    Say "save $method full method $($saved.Method) kind $($saved.Kind) valid $(Test-MemoryImage $full) restored-equal $(Test-Restored $full (Join-Path $Work "$method-0r"))"
    $parent = $full
    foreach ($step in 1, 2) {
        $null = Send "write $hex $(($n + $step) % 8) $step"
        $inc = Join-Path $Work "$method-$step"
        $id = Get-Refusal { $script:saved = Save-MemoryImage $tid $inc -Parent $parent -Method $method }
        if ($id -ne 'none') { Say "save $method increment $step $id"; break }
        Say "save $method increment $step method $($saved.Method) kind $($saved.Kind) data $($saved.DataPages -gt 0) valid $(Test-MemoryImage $inc) restored-equal $(Test-Restored $inc (Join-Path $Work "$method-${step}r"))"
        $parent = $inc
    }
}
Say "save -Freeze $(Get-Refusal { Save-MemoryImage $tid (Join-Path $Work 'freeze') -Method Hash -Freeze })"
Say "enable-writetracking $(Get-Refusal { Enable-WriteTracking -Id $tid })"
Say "support of the target: $(Get-Refusal { Get-SoftDirtySupport -Id $tid })"

# Pre-copy migration to a folder, each method; the final image restored and compared.
foreach ($method in 'Auto', 'SoftDirty', 'WriteProtect', 'Hash') {
    $to = Join-Path $Work "migrate-$method"
    $id = Get-Refusal { $script:result = Invoke-PreCopyMigration $tid -Destination $to -Method $method -Bandwidth 1GB }
    if ($id -ne 'none') { Say "migrate $method $id"; continue }
    $summary = @($result)[-1]
    Say "migrate $method method $($summary.Method) converged $($summary.Converged) valid $(Test-MemoryImage $summary.FinalImage) restored-equal $(Test-Restored $summary.FinalImage "$to-r")"
}

# This process's own memory: WriteProtect with its own userfaultfd (no injection), while a thread job writes page 3 of
# a region of its own.
$region = [Runtime.InteropServices.Marshal]::AllocHGlobal(64 * $ps)
$own = ([uint64][int64]$region + [uint64]$ps - 1) -band (-bnot ([uint64]$ps - 1))
$ownStop = Join-Path $Work 'own.stop'
$job = Start-ThreadJob -ArgumentList ([IntPtr][int64]$own), ($ps * 3), $ownStop {
    param([IntPtr] $At, [int] $Offset, [string] $Stop)
    $v = 0
    while (-not [IO.File]::Exists($Stop)) { $v = $v % 200 + 1; [Runtime.InteropServices.Marshal]::WriteByte($At, $Offset, [byte]$v); Start-Sleep -Milliseconds 100 }
}
while ([Runtime.InteropServices.Marshal]::ReadByte([IntPtr][int64]$own, $ps * 3) -eq 0) { Start-Sleep -Milliseconds 100 }
foreach ($method in 'Auto', 'WriteProtect', 'Hash') {
    $samples = $null
    $id = Get-Refusal { $script:samples = @(Watch-DirtyPage -Id $PID -Method $method -Interval 2 -Count 2 -Address $own -Length ([uint64](8 * $ps))) }
    $page3 = $own + [uint64](3 * $ps)
    $seen = @($samples | ForEach-Object { $_.Ranges } | Where-Object { $_.Start -le $page3 -and $page3 -lt $_.End }).Count -gt 0
    Say "watch self $method $(if ($id -eq 'none') { "method $(@($samples)[0].Method) page3 $seen" } else { $id })"
}
$null = New-Item -ItemType File $ownStop
$null = $job | Wait-Job | Receive-Job
$null = Send 'exit'
$t.WaitForExit()
Say 'done'
