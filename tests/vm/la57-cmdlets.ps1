# The cmdlets against mappings at the ends of a 5-level (LA57) user address space (issue 13, round 29; an x86-64 guest of
# tests/vm/la57-cmdlets.sh, whose prints are recorded in tests/vm/recorded/la57-cmdlets.<id>.txt). sdtarget maps four
# regions: 'low' (an ordinary mapping), 'edge47' (MAP_FIXED_NOREPLACE across 2^47: the top page of a 4-level space,
# 0x7ffffffff000, and the first page above it), 'high' (a hint of 2^52, 16 pages of which every other one is written) and
# 'top56' (MAP_FIXED_NOREPLACE, the last 16 pages below the 5-level task size, 2^56 - 4 KiB). The truth is what sdtarget was
# told to write (page i of a 'write' holds 1 + i in its first byte, the rest zeros); each cmdlet's answer is compared
# with it. Each line is "<what> <result>", with no address, id or time that differs between runs; a cmdlet that refuses
# prints its ErrorId.
#   -Module   the SoftDirty.psd1 to import; -Target  tests/native/bin/sdtarget; -Work  an empty folder
param([Parameter(Mandatory)] [string] $Module, [Parameter(Mandatory)] [string] $Target, [Parameter(Mandatory)] [string] $Work)
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
Import-Module $Module
function Say([string] $Line) { [Console]::Out.WriteLine($Line); [Console]::Out.Flush() }
function Get-Refusal([scriptblock] $Command) {
    $errs = $null
    try { $null = & $Command -ErrorVariable errs -ErrorAction SilentlyContinue } catch { return ($_.FullyQualifiedErrorId -split ',')[0] }
    if ($errs) { return ($errs[0].FullyQualifiedErrorId -split ',')[0] }
    'none'
}

$ps = [uint64][Environment]::SystemPageSize
Say "pagesize $ps la57 $([bool](Select-String -Path /proc/cpuinfo -Pattern '\bla57\b' -Quiet))"
$support = Get-SoftDirtySupport
Say "support softdirty $($support.SoftDirty) pagemapscan $($support.PagemapScan) wpasync $($support.UffdWriteProtectAsync)"

$psi = [Diagnostics.ProcessStartInfo]::new($Target)
$psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true; $psi.UseShellExecute = $false
$t = [Diagnostics.Process]::Start($psi)
$null = $t.StandardOutput.ReadLine()
$tid = $t.Id
function Send([string] $Command) {
    $t.StandardInput.WriteLine($Command); $t.StandardInput.Flush()
    $reply = $t.StandardOutput.ReadLine()
    if ($reply -notlike 'OK*') { throw "sdtarget: $Command -> $reply" }
    ($reply -split ' ', 2)[1]
}

# The regions and the truth: the first byte of each page written (0: never written, not present).
$regions = [ordered]@{}
function Add-Region([string] $Name, [string] $Command, [uint64] $Pages) {
    $t.StandardInput.WriteLine($Command); $t.StandardInput.Flush()
    $reply = $t.StandardOutput.ReadLine()
    if ($reply -notlike 'OK *') { Say "region $Name refused: $reply"; return }
    $start = [Convert]::ToUInt64(($reply -split ' ')[1], 16)
    $script:regions[$Name] = [pscustomobject]@{ Name = $Name; Start = $start; Pages = $Pages; End = $start + $Pages * $ps; Bytes = [byte[]]::new($Pages) }
}
Add-Region low 'map 8 anon rw' 8
Add-Region edge47 'mapat 7fffffffe000 4 fixed' 4
Add-Region high 'mapat 10000000000000 16' 16
Add-Region top56 'mapat fffffffffef000 16 fixed' 16
foreach ($r in $regions.Values) { Say ("region {0} 0x{1:x}-0x{2:x} pages {3}" -f $r.Name, $(if ($r.Name -eq 'low') { 0 } else { $r.Start }), $(if ($r.Name -eq 'low') { 0 } else { $r.End }), $r.Pages) }
function Write-Page($r, [uint64] $Index, [uint64] $Count = 1, [uint64] $Stride = 1) {
    $null = Send ("write {0:x} {1} {2} {3}" -f $r.Start, $Index, $Count, $Stride)
    for ($i = 0; $i -lt $Count; $i++) { $r.Bytes[$Index + $i * $Stride] = [byte](1 + $i) }
}
foreach ($r in $regions.Values) { if ($r.Name -eq 'high') { Write-Page $r 0 8 2 } else { Write-Page $r 0 $r.Pages } }

function Get-Truth($r) { -join ($r.Bytes | ForEach-Object { [int]($_ -ne 0) }) }
function Get-Bits($r, [string] $Read, [string] $Property) {
    $pages = @(Get-PageMap -Id $tid -Address $r.Start -Length ($r.End - $r.Start) -ReadMethod $Read)
    if ($pages.Count -ne $r.Pages) { return "count $($pages.Count)" }
    -join ($pages | ForEach-Object { [int]$_.$Property })
}
# The whole process without -Address: the pages of each region that the answer holds.
function Get-Whole([string] $Read) {
    $all = @(Get-PageMap -Id $tid -ReadMethod $Read -Present)
    ($regions.Values | ForEach-Object { $r = $_; "$($r.Name) $(@($all | Where-Object { $_.Start -ge $r.Start -and $_.Start -lt $r.End }).Count)" }) -join ' '
}

$maps = @(Get-MemoryMapping -Id $tid)
foreach ($r in $regions.Values) { Say "mapping $($r.Name) $(@($maps | Where-Object { $_.Start -eq $r.Start -and $_.End -eq $r.End }).Count)" }
foreach ($read in 'Pread', 'PagemapScan') {
    foreach ($r in $regions.Values) {
        $id = Get-Refusal { Get-PageMap -Id $tid -Address $r.Start -Length ($r.End - $r.Start) -ReadMethod $read }
        Say "getpagemap $read $($r.Name) $(if ($id -eq 'none') { "present $(Get-Bits $r $read Present) truth $(Get-Truth $r)" } else { $id })"
    }
    $id = Get-Refusal { Get-PageMap -Id $tid -ReadMethod $read -Present }
    Say "getpagemap $read whole $(if ($id -eq 'none') { Get-Whole $read } else { $id })"
}
foreach ($r in $regions.Values) {
    $found = $null
    $id = Get-Refusal { $script:found = @(Search-PageMap -Id $tid -Address $r.Start -Length ($r.End - $r.Start) -Category Present) }
    Say "searchpagemap $($r.Name) $(if ($id -eq 'none') { "pages $(($found | Measure-Object PageCount -Sum).Sum)" } else { $id })"
}
Say "clearsoftdirty $(Get-Refusal { Clear-SoftDirty -Id $tid })"
foreach ($r in $regions.Values) { Write-Page $r 2 }
foreach ($r in $regions.Values) { Say "softdirty after clear and a write to page 2 $($r.Name) $(Get-Bits $r Pread SoftDirty)" }

# Images: bytes of a restored region against the truth (every page: its first byte, the rest zeros).
function Test-Region($r, [string] $Into) {
    $file = Get-ChildItem $Into -Filter ('{0:x12}-{1:x12}.bin' -f $r.Start, $r.End) | Select-Object -First 1
    if (-not $file) { return 'no-file' }
    $bytes = [IO.File]::ReadAllBytes($file.FullName)
    if ([uint64]$bytes.Length -ne $r.End - $r.Start) { return "size $($bytes.Length)" }
    $want = [byte[]]::new($bytes.Length)
    for ($i = 0; $i -lt $r.Pages; $i++) { $want[$i * $ps] = $r.Bytes[$i] }
    [Linq.Enumerable]::SequenceEqual($bytes, $want)
}
function Test-Restored([string] $Image, [string] $Into) {
    $null = Restore-MemoryImage $Image $Into
    ($regions.Values | ForEach-Object { "$($_.Name) $(Test-Region $_ $Into)" }) -join ' '
}
$n = 0
foreach ($method in 'Hash', 'SoftDirty', 'WriteProtect', 'Auto') {
    $n++
    $full = Join-Path $Work "$method-0"
    $id = Get-Refusal { $script:saved = Save-MemoryImage $tid $full -Method $method }
    if ($id -ne 'none') { Say "save $method full $id"; continue }
    Say "save $method full method $($saved.Method) valid $(Test-MemoryImage $full) mappings-in-image $((Get-MemoryImage $full).MappingCount -ge 4) restored $(Test-Restored $full (Join-Path $Work "$method-0r"))"
    $parent = $full
    foreach ($step in 1, 2) {
        foreach ($r in $regions.Values) { Write-Page $r (($n + $step) % $r.Pages) }
        $inc = Join-Path $Work "$method-$step"
        $id = Get-Refusal { $script:saved = Save-MemoryImage $tid $inc -Parent $parent -Method $method }
        if ($id -ne 'none') { Say "save $method increment $step $id"; break }
        Say "save $method increment $step method $($saved.Method) valid $(Test-MemoryImage $inc) restored $(Test-Restored $inc (Join-Path $Work "$method-${step}r"))"
        $parent = $inc
    }
}
# An image of these mappings restored into the emulator (4-level: its task size is 2^47 - 4 KiB).
$emulated = New-EmulatedProcess -Name la57
Say "restore into the emulator $(Get-Refusal { Restore-MemoryImage (Join-Path $Work 'Hash-0') -Emulator $emulated }) mappings after $(@($emulated | Get-MemoryMapping).Count)"

# Watch-DirtyPage, 2 samples of 2 s per method over 'high' and 'top56', while a shell writes k + 1 into page 15 of each
# (a 'write' of pages 15 - k to 15) every half second, k = 0 to 15 in turn: page 15 changes every step and takes a
# value again only after 16 steps (8 s or more), so the hashes see it change as the other methods do. Then a known value
# into every page.
$stop = Join-Path $Work 'writer.stop'
$watched = @('high', 'top56') | Where-Object { $regions.Contains($_) }
$writes = ($watched | ForEach-Object { 'echo "write {0:x} $((15 - k)) $((k + 1))" > /proc/{1}/fd/0;' -f $regions[$_].Start, $tid }) -join ' '
$shell = [Diagnostics.ProcessStartInfo]::new('/bin/sh')
foreach ($a in '-c', "k=0; while [ ! -e $stop ]; do $writes k=`$(((k + 1) % 16)); sleep 0.5; done") { $shell.ArgumentList.Add($a) }
$writer = [Diagnostics.Process]::Start($shell)
foreach ($method in 'Auto', 'SoftDirty', 'WriteProtect', 'Hash') {
    foreach ($name in $watched) {
        $r = $regions[$name]
        $page = $r.Start + 15 * $ps
        $samples = $null
        $id = Get-Refusal { $script:samples = @(Watch-DirtyPage -Id $tid -Method $method -Interval 2 -Count 2 -Address $r.Start -Length ($r.End - $r.Start)) }
        $seen = @($samples | ForEach-Object { $_.Ranges } | Where-Object { $_.Start -le $page -and $page -lt $_.End }).Count -gt 0
        $outside = @($samples | ForEach-Object { $_.Ranges } | Where-Object { $_.Start -lt $r.Start -or $_.End -gt $r.End }).Count
        Say "watch $method $name $(if ($id -eq 'none') { "method $(@($samples)[0].Method) written-page-seen $seen ranges-outside $outside" } else { $id })"
    }
}
$null = New-Item -ItemType File $stop
$writer.WaitForExit()
$t.StandardInput.WriteLine('ping'); $t.StandardInput.Flush()
while (($line = $t.StandardOutput.ReadLine()) -ne "OK $tid") { if ($null -eq $line) { throw 'sdtarget ended' } }
foreach ($name in $watched) { Write-Page $regions[$name] 0 16 }

foreach ($method in 'Auto', 'SoftDirty', 'WriteProtect', 'Hash') {
    $to = Join-Path $Work "migrate-$method"
    $id = Get-Refusal { $script:result = Invoke-PreCopyMigration $tid -Destination $to -Method $method -Bandwidth 1GB }
    if ($id -ne 'none') { Say "migrate $method $id"; continue }
    $summary = @($result)[-1]
    Say "migrate $method method $($summary.Method) converged $($summary.Converged) valid $(Test-MemoryImage $summary.FinalImage) restored $(Test-Restored $summary.FinalImage "$to-r")"
}
Say "enable-writetracking $(Get-Refusal { Enable-WriteTracking -Id $tid })"
Say "disable-writetracking $(Get-Refusal { Disable-WriteTracking -Id $tid })"
# The truth again, read from the process itself at the end (reads fault in zero pages: nothing above reads after this).
$mem = [IO.File]::OpenRead("/proc/$tid/mem")
foreach ($r in $regions.Values) {
    $live = [byte[]]::new($r.End - $r.Start)
    $null = $mem.Seek([long]$r.Start, 'Begin'); $mem.ReadExactly($live, 0, $live.Length)
    $ok = $true
    for ($i = 0; $i -lt $r.Pages; $i++) { if ($live[$i * $ps] -ne $r.Bytes[$i]) { $ok = $false } }
    Say "truth $($r.Name) matches the live bytes $ok"
}
$mem.Dispose()
$null = Send 'exit'
$t.WaitForExit()
Say 'done'
