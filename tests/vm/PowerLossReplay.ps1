# Power losses replayed from a log of the guest's disk writes (power-loss.sh with SOFTDIRTY_POWERLOSS_LOG): qemu's
# blklogwrites driver appended every write and flush the guest sent to its disk to LOG (dm-log-writes' format: a super
# sector, then per request a sector with sector, nr_sectors, flags, data_len, then its data). A disk with a volatile
# write cache may hold, after a power loss at request N, every write before the last flush F before N and any subset of
# the writes between F and N (a later write to a sector may reach the medium while an earlier one does not). STATES such
# states are built (seeded; a different flush each, as long as there are enough), from BASE (the disk as mkfs.ext4 left it): half cut at a flush (everything up to F), half
# torn (F plus a random half of the writes after it, up to a random N); each is repaired by e2fsck (journal replay),
# mounted read-only through a loop device and read by PowerLossCheck.ps1. A command counts as returned in a state where
# the disk holds its END mark (PowerLoss.ps1 writes it O_SYNC after the command returned). Prints the checker's lines,
# each state's header, and exits 1 when a state holds a defect.
param(
    [Parameter(Mandatory)] [string] $Log,
    [Parameter(Mandatory)] [string] $Base,
    [Parameter(Mandatory)] [string] $Console,
    [Parameter(Mandatory)] [string] $Module,
    [Parameter(Mandatory)] [string] $Work,
    [int] $States = 20,
    [int] $Seed = 1,
    [string] $GuestRoot = '/mnt/softdirty-powerloss'
)
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# The constants of dm-log-writes' format (drivers/md/dm-log-writes.c), which qemu's blklogwrites writes.
$LogMagic = 0x6a736677736872
$FlushFlag = 1; $DiscardFlag = 4
$MarkText = [Text.Encoding]::ASCII.GetBytes('PLMARK END ')
$stream = [IO.File]::OpenRead($Log)
$reader = [IO.BinaryReader]::new($stream)
if ($reader.ReadUInt64() -ne $LogMagic) { throw "$Log is not a blklogwrites log (no magic)" }
$null = $reader.ReadUInt64()
$null = $reader.ReadUInt64()
$sectorSize = [int64]$reader.ReadUInt32()
# The entries, read up to the end of the file (the super's count is written only now and then: qemu was killed).
$entries = [Collections.Generic.List[object]]::new()
$marks = @{}   # entry index -> the step whose END it carries
$at = $sectorSize
$length = $stream.Length
while ($at + $sectorSize -le $length) {
    $null = $stream.Seek($at, 'Begin')
    $sector = $reader.ReadUInt64(); $count = $reader.ReadUInt64(); $flags = $reader.ReadUInt64(); $dataLen = $reader.ReadUInt64()
    if ($count -eq 0 -and $flags -eq 0 -and $sector -eq 0) { break }
    $data = $at + $sectorSize
    $bytes = if ($flags -band $DiscardFlag) { 0 } else { [int64]$count * $sectorSize }
    if ($data + $bytes -gt $length) { break }   # cut short by the kill
    $index = $entries.Count
    $entries.Add([pscustomobject]@{ Sector = $sector; Bytes = $bytes; Flags = $flags; Data = $data })
    if ($bytes -gt 0 -and $bytes -le 65536) {
        $null = $stream.Seek($data, 'Begin')
        $buffer = $reader.ReadBytes([int]$bytes)
        for ($o = 0; $o -lt $buffer.Length; $o += 4096) {
            $same = $true
            for ($k = 0; $k -lt $MarkText.Length -and $same; $k++) { $same = $buffer[$o + $k] -eq $MarkText[$k] }
            if ($same) {
                $end = $o + $MarkText.Length; $n = 0
                while ($buffer[$end] -ge 48 -and $buffer[$end] -le 57) { $n = $n * 10 + $buffer[$end] - 48; $end++ }
                $marks[$index] = $n
            }
        }
    }
    $at = $data + [math]::Max($bytes, [int64]$dataLen)
    if ($at % $sectorSize) { $at += $sectorSize - $at % $sectorSize }
}
$flushes = @(for ($i = 0; $i -lt $entries.Count; $i++) { if ($entries[$i].Flags -band $FlushFlag) { $i } })
"replay: $($entries.Count) requests, $($flushes.Count) flushes, $($marks.Count) END marks in $Log"
if ($flushes.Count -lt 2) { 'replay: too few flushes to cut at'; exit 1 }

function Copy-Entries([IO.FileStream] $Disk, [int[]] $Indexes) {
    $buffer = [byte[]]::new(1MB)
    foreach ($i in $Indexes) {
        $e = $entries[$i]
        if ($e.Bytes -eq 0) { continue }
        $null = $stream.Seek($e.Data, 'Begin')
        $null = $Disk.Seek([int64]$e.Sector * $sectorSize, 'Begin')
        $left = $e.Bytes
        while ($left -gt 0) {
            $n = $stream.Read($buffer, 0, [int][math]::Min($left, $buffer.Length))
            if ($n -le 0) { throw 'the log ended inside a request' }
            $Disk.Write($buffer, 0, $n); $left -= $n
        }
    }
}

$random = [Random]::new($Seed)
# The states: (F, N, torn). Sorted by F, so that one working copy of the disk only moves forward.
# Each kind goes through the flushes in a shuffled order (all of them before any twice).
$orders = @(0, 1 | ForEach-Object { , @($flushes | Sort-Object { $random.Next() }) })
$plan = @(for ($s = 0; $s -lt $States; $s++) {
    $torn = $s % 2 -eq 1
    $order = $orders[[int]$torn]
    $f = $order[[math]::Floor($s / 2) % $order.Count]
    $next = @($flushes | Where-Object { $_ -gt $f } | Select-Object -First 1)
    $limit = if ($next) { $next[0] } else { $entries.Count }
    $n = if ($torn -and $limit -gt $f + 1) { $random.Next($f + 1, $limit) } else { $f }
    [pscustomobject]@{ F = $f; N = $n; Torn = $torn -and $n -gt $f; Seed = $random.Next() }
}) | Sort-Object F, N
$null = New-Item -ItemType Directory -Force $Work
$current = Join-Path $Work 'prefix.img'
& cp --sparse=always $Base $current
$done = -1
$bad = 0
$mount = Join-Path $Work 'mnt'
$null = New-Item -ItemType Directory -Force $mount
foreach ($p in $plan) {
    $disk = [IO.FileStream]::new($current, 'Open', 'ReadWrite')
    try { if ($p.F -gt $done) { Copy-Entries $disk @(($done + 1)..$p.F) } } finally { $disk.Dispose() }
    $done = $p.F
    $state = Join-Path $Work 'state.img'
    & cp --sparse=always $current $state
    $kept = @()
    if ($p.Torn) {
        $pick = [Random]::new($p.Seed)
        $kept = @(($p.F + 1)..$p.N | Where-Object { $pick.Next(2) -eq 1 })
        $disk = [IO.FileStream]::new($state, 'Open', 'ReadWrite')
        try { Copy-Entries $disk $kept } finally { $disk.Dispose() }
    }
    $returned = @($marks.Keys | Where-Object { $_ -le $p.F -or $_ -in $kept } | ForEach-Object { $marks[$_] } | Sort-Object)
    $fsck = & e2fsck -fy $state 2>&1
    $fsckRc = $LASTEXITCODE
    "state flush-request $($p.F) request $($p.N) $(if ($p.Torn) { "torn kept $($kept.Count) of $($p.N - $p.F)" } else { 'at-flush' }) returned [$($returned -join ',')] e2fsck $fsckRc"
    if ($fsckRc -ge 4) { "result 0 fs - - e2fsck-$fsckRc DEFECT $($fsck | Select-Object -Last 5)"; $bad++; continue }
    & mount -o ro,loop $state $mount
    if ($LASTEXITCODE -ne 0) { 'result 0 fs - - unmountable DEFECT'; $bad++; continue }
    try {
        & (Join-Path $PSScriptRoot 'PowerLossCheck.ps1') -Console $Console -Root $mount -GuestRoot $GuestRoot -Module $Module `
            -Scratch (Join-Path $Work 'scratch') -Returned $returned -UseReturned
        if ($LASTEXITCODE -ne 0) { $bad++ }
    } finally { & umount $mount }
    Remove-Item -LiteralPath $state
}
$stream.Dispose()
Remove-Item -LiteralPath $current
"replay: $($plan.Count) states, $bad with a defect"
if ($bad) { exit 1 }
