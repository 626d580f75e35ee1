# The guest side of tests/vm/power-loss.sh (tests/vm/README.md): ONE pwsh writes memory images, restores, receives and
# migrations onto the power-loss disk (ROOT, the guest's /dev/vda) over and over, until the host kills qemu (SIGKILL: a
# power loss of the guest). Each command is announced on the console before it starts and after it returns:
#   PL BEGIN <step> <kind> <path> <sha256 of the region the result must hold> [<parent>]
#   PL END <step> <seconds>
# kind: image (a save or a receive), restore (a folder of flat files), migration (a folder of round-NN images).
# Each END is also written to the disk, into ROOT/.marks (a file written whole and synced before the first command):
# one 4 KiB block "PLMARK END <step>" at offset step * 4 KiB, O_SYNC, after the command returned, so that a log of the
# disk's writes (power-loss.sh with SOFTDIRTY_POWERLOSS_LOG) shows where in it each command had returned.
# The host reads these lines after the kill and checks what the disk holds (PowerLossCheck.ps1). The region is a
# mapping of wftarget filled from SEED; between commands the script writes a few of its pages, so that every increment
# has something to store, and hashes the region through /proc/PID/mem: what a restore of the result must give.
param(
    [Parameter(Mandatory)] [string] $Root,
    [Parameter(Mandatory)] [int] $Seed,
    [int] $Pages = 2048
)
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
$repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
Import-Module (Join-Path $repo 'out/SoftDirty/SoftDirty.psd1')
Import-Module (Join-Path $repo 'tests/Pester/SoftDirty.TestSupport.psm1')

function Say([string] $Line) { [Console]::Out.WriteLine("PL $Line"); [Console]::Out.Flush() }
$t = Start-WfTarget
$region = New-WfRegion $t $Pages $Seed
$size = [uint64]$Pages * [uint64]$t.PageSize
Say "REGION $($t.Id) $('{0:x12}' -f $region.Address)-$('{0:x12}' -f ($region.Address + $size)).bin"
function Get-RegionHash {
    $mem = [IO.File]::OpenRead("/proc/$($t.Id)/mem")
    try {
        $null = $mem.Seek([int64]$region.Address, 'Begin')
        $buffer = [byte[]]::new($size)
        $done = 0
        while ($done -lt $size) { $n = $mem.Read($buffer, $done, $size - $done); if ($n -le 0) { throw 'short read' }; $done += $n }
        [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($buffer))
    } finally { $mem.Dispose() }
}
$random = [Random]::new($Seed)
$marks = [IO.FileStream]::new("$Root/.marks", 'CreateNew', 'Write', 'None', 4096, 'WriteThrough')
$marks.Write([byte[]]::new(1024 * 4096)); $marks.Flush($true)
function Mark([int] $Step) {
    $block = [byte[]]::new(4096)
    $text = [Text.Encoding]::ASCII.GetBytes("PLMARK END $Step`n")
    [Array]::Copy($text, $block, $text.Length)
    $null = $marks.Seek([int64]$Step * 4096, 'Begin'); $marks.Write($block); $marks.Flush($true)
}
function Step([string] $Kind, [string] $Path, [string] $Expect, [string] $Parent, [scriptblock] $Command) {
    $script:step++
    Say "BEGIN $step $Kind $Path $Expect $Parent".TrimEnd()
    $watch = [Diagnostics.Stopwatch]::StartNew()
    try { $null = & $Command; Mark $step; Say "END $step $([math]::Round($watch.Elapsed.TotalSeconds, 2))" }
    catch { Say "FAIL $step $($_.FullyQualifiedErrorId) $($_.Exception.Message)" }
}
$script:step = 0
$methods = @('SoftDirty', 'Hash')
Say ARM
for ($i = 1; ; $i++) {
    $h = Get-RegionHash
    $full = "$Root/full-$i"
    $fullHash = $h
    Step image $full $h '' { Save-MemoryImage -Id $t.Id -Path $full -Mapping '[anon]' -Method SoftDirty }
    $parent = $full
    foreach ($m in $methods) {
        $null = Send-WfTarget $t "write $($region.Hex) $($random.Next(0, $Pages - 64)) $($random.Next(1, 64))"
        $h = Get-RegionHash
        $inc = "$Root/inc-$i-$m"
        Step image $inc $h $parent { Save-MemoryImage -Id $t.Id -Path $inc -Parent $parent -Mapping '[anon]' -Method $m }
        $parent = $inc
    }
    $dest = "$Root/rest-$i"
    # Every other restore goes into an empty folder made and synced before: the old state it may leave.
    if ($i % 2 -eq 0) { $null = New-Item -ItemType Directory $dest; sync }
    Step restore $dest $h $parent { Restore-MemoryImage -Path $parent -Destination $dest }
    $recv = "$Root/recv-$i"
    Step image $recv $fullHash '' { Get-ChildItem -File -LiteralPath $full | Receive-MemoryImage -Path $recv -Confirm:$false }
    $null = Send-WfTarget $t "write $($region.Hex) $($random.Next(0, $Pages - 64)) $($random.Next(1, 64))"
    $h = Get-RegionHash
    $mig = "$Root/mig-$i"
    Step migration $mig $h '' { Invoke-PreCopyMigration -Id $t.Id -Destination $mig -Mapping '[anon]' -Method $methods[$i % 2] -Bandwidth 1e9 -MaxIterations 3 -StopThreshold 0 }
}
