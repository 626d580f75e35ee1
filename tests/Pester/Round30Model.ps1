# Round 30 (issue 13), model-based testing of the image workflows: a seeded generator of operation sequences on an
# emulated process, a reference model of its memory (page by page: mapped or not, protection, shared object, content),
# and after every save the chain restored (into files and into an emulated process) and compared with what the model
# says the process held when that save read it. Dot-sourced by Security.Round30.Model.Tests.ps1; also runs alone:
#   dotnet pwsh -NoProfile -c '. tests/Pester/Round30Model.ps1; Import-Module ./out/SoftDirty/SoftDirty.psd1;
#     Invoke-R30ModelSeed -Seed 7 -Root /tmp/x -Verbose'
# A failure throws with the seed, the operations (replayable: Invoke-R30ModelOps) and the differences.

Set-StrictMode -Version 3.0

$script:R30PageSize = 4096
# The window every mapping lives in: 2,048 pages from a 2 MiB-aligned base, so that a huge-page slot fits.
$script:R30Base = [uint64]0x7e0000000000
$script:R30WindowPages = 2048
$script:R30Kernels = @('6.1', '6.12', '6.18', '6.19', '7.2', '7.3')
$script:R30Methods = @('Auto', 'SoftDirty', 'WriteProtect', 'Hash')
$script:R30Sha = [System.Security.Cryptography.SHA1]::Create()
$script:R30FillKeys = @{}
# The first message of each clean error (what failed, ErrorId), for a report of what a run was refused.
$script:R30ErrorTexts = @{}

function Get-R30PageKey([byte[]] $Bytes, [int] $Offset) {
    [Convert]::ToHexString($script:R30Sha.ComputeHash($Bytes, $Offset, $script:R30PageSize))
}

function Get-R30FillKey([byte] $Value) {
    if (-not $script:R30FillKeys.ContainsKey($Value)) {
        $b = [byte[]]::new($script:R30PageSize)
        if ($Value -ne 0) { [Array]::Fill($b, $Value) }
        $script:R30FillKeys[$Value] = Get-R30PageKey $b 0
    }
    $script:R30FillKeys[$Value]
}

# ---------------------------------------------------------------------------------------------------------------
# The model. A process model is a Dictionary page address -> entry; an entry is a hashtable
# @{ Prot = 0|1|3; Obj = -1 (private) or a shared object's id; Idx = page index in that object; Key = content of a
# private page; Freed = MADV_FREE pending }. Shared objects: $ctx.Shared[id] = Dictionary index -> key.

function New-R30Entry([int] $Prot, [int] $Obj, [int] $Idx, [string] $Key) {
    @{ Prot = $Prot; Obj = $Obj; Idx = $Idx; Key = $Key; Freed = $false; Guard = $false }
}

function Copy-R30Entry($e) { @{ Prot = $e.Prot; Obj = $e.Obj; Idx = $e.Idx; Key = $e.Key; Freed = $e.Freed; Guard = $e.Guard } }

function Get-R30Key($ctx, $e) {
    if ($e.Obj -lt 0) { return $e.Key }
    $o = $ctx.Shared[$e.Obj]
    if ($o.ContainsKey($e.Idx)) { $o[$e.Idx] } else { Get-R30FillKey 0 }
}

function Set-R30Key($ctx, $e, [string] $Key) {
    if ($e.Obj -lt 0) { $e.Key = $Key } else { $ctx.Shared[$e.Obj][$e.Idx] = $Key }
    $e.Freed = $false
}

function Get-R30Pages([uint64] $Addr, [int] $Pages) {
    for ($i = 0; $i -lt $Pages; $i++) { $Addr + [uint64]($i * $script:R30PageSize) }
}

function Test-R30AllMapped($map, [uint64] $Addr, [int] $Pages, [int] $MinProt = 0, [switch] $Private) {
    foreach ($p in Get-R30Pages $Addr $Pages) {
        if (-not $map.ContainsKey($p)) { return $false }
        $e = $map[$p]
        if (($e.Prot -band $MinProt) -ne $MinProt) { return $false }
        if ($MinProt -and $e.Guard) { return $false }
        if ($Private -and $e.Obj -ge 0) { return $false }
    }
    $true
}

function Remove-R30Range($map, [uint64] $Addr, [int] $Pages) {
    foreach ($p in Get-R30Pages $Addr $Pages) { $null = $map.Remove($p) }
}

# What the model says the process holds now: address -> "prot|s or p|key".
function Get-R30Snapshot($ctx, $map = $ctx.Map, [string] $Select) {
    $s = [System.Collections.Generic.Dictionary[uint64, string]]::new()
    foreach ($kv in $map.GetEnumerator()) {
        $e = $kv.Value
        if ($Select -and $Select -ne $(if ($e.Obj -ge 0) { '/dev/zero' } else { '[anon]' })) { continue }
        $s[$kv.Key] = '{0}|{1}|{2}' -f $e.Prot, $(if ($e.Obj -ge 0) { 's' } else { 'p' }), (Get-R30Key $ctx $e)
    }
    $s
}

function ConvertFrom-R30Permissions([string] $Perm) {
    $prot = 0
    if ($Perm[0] -eq 'r') { $prot = $prot -bor 1 }
    if ($Perm[1] -eq 'w') { $prot = $prot -bor 2 }
    '{0}|{1}' -f $prot, $(if ($Perm[3] -eq 's') { 's' } else { 'p' })
}

function Compare-R30Memory($expected, $actual) {
    $diff = [System.Collections.Generic.List[string]]::new()
    foreach ($kv in $expected.GetEnumerator()) {
        if (-not $actual.ContainsKey($kv.Key)) { $diff.Add(('0x{0:x} missing (model {1})' -f $kv.Key, $kv.Value)) }
        elseif ($actual[$kv.Key] -ne $kv.Value) { $diff.Add(('0x{0:x} model {1} restored {2}' -f $kv.Key, $kv.Value, $actual[$kv.Key])) }
    }
    foreach ($kv in $actual.GetEnumerator()) {
        if (-not $expected.ContainsKey($kv.Key)) { $diff.Add(('0x{0:x} restored but not mapped (restored {1})' -f $kv.Key, $kv.Value)) }
    }
    , $diff
}

# Memory as a restore into files gives it.
function Read-R30RestoredFiles([string] $Image, [string] $Destination) {
    $out = @(Restore-MemoryImage -Path $Image -Destination $Destination -ErrorAction Stop)
    $mem = [System.Collections.Generic.Dictionary[uint64, string]]::new()
    foreach ($m in $out) {
        $bytes = [IO.File]::ReadAllBytes($m.File)
        $pages = [int](($m.End - $m.Start) / $script:R30PageSize)
        if ($bytes.Length -ne $pages * $script:R30PageSize) { throw "restored file $($m.File) holds $($bytes.Length) bytes for $pages pages" }
        $pp = ConvertFrom-R30Permissions $m.Permissions
        for ($i = 0; $i -lt $pages; $i++) {
            $mem[$m.Start + [uint64]($i * $script:R30PageSize)] = '{0}|{1}' -f $pp, (Get-R30PageKey $bytes ($i * $script:R30PageSize))
        }
    }
    $mem
}

# Memory as a restore into a fresh emulated process gives it.
function Read-R30RestoredEmulator([string] $Image, [string] $Kernel) {
    $copy = Restore-MemoryImage -Path $Image -Emulator (New-EmulatedProcess -Kernel $Kernel -Name r30copy) -ErrorAction Stop
    $mem = [System.Collections.Generic.Dictionary[uint64, string]]::new()
    foreach ($m in @($copy | Get-MemoryMapping)) {
        $pp = ConvertFrom-R30Permissions $m.Permissions
        if ($m.Permissions[0] -ne 'r') { $copy | Set-EmulatedProtection -Address $m.Start -Length $m.Size -Protection Read -ErrorAction Stop }
        # Guard regions the image recorded are installed again (Restore-MemoryImage): a read there faults; the model
        # holds zeros there (round 31: a guard in a restored copy failed the read of the whole mapping).
        $guards = [System.Collections.Generic.HashSet[uint64]]::new()
        foreach ($pm in @($copy | Get-PageMap -Address $m.Start -Length $m.Size -ErrorAction Stop | Where-Object Guard)) { $null = $guards.Add($pm.Start) }
        $pages = [int]($m.Size / $script:R30PageSize)
        if ($guards.Count) { $bytes = [byte[]]::new($m.Size) } else { $bytes = $copy | Read-EmulatedMemory -Address $m.Start -Length $m.Size -AsByteArray -ErrorAction Stop }
        for ($i = 0; $guards.Count -and $i -lt $pages;) {
            # Each run of pages between guards, in one read.
            $n = 0
            while ($i + $n -lt $pages -and -not $guards.Contains($m.Start + [uint64](($i + $n) * $script:R30PageSize))) { $n++ }
            if ($n) {
                $run = $copy | Read-EmulatedMemory -Address ($m.Start + [uint64]($i * $script:R30PageSize)) -Length ([uint64]($n * $script:R30PageSize)) -AsByteArray -ErrorAction Stop
                [Array]::Copy($run, 0, $bytes, $i * $script:R30PageSize, $run.Length)
            }
            $i += $n + 1
        }
        for ($i = 0; $i -lt $pages; $i++) {
            $mem[$m.Start + [uint64]($i * $script:R30PageSize)] = '{0}|{1}' -f $pp, (Get-R30PageKey $bytes ($i * $script:R30PageSize))
        }
    }
    $mem
}

# ---------------------------------------------------------------------------------------------------------------
# Generation: one operation from the model's state and the random stream. An operation is a hashtable of plain values
# (replayable without the generator); Invoke-R30Op checks its precondition against the model and skips it where it does
# not hold (a shrunk sequence).

function Get-R30MappedRun($ctx, [System.Random] $r, [int] $MaxPages, $map = $ctx.Map, [switch] $Writable) {
    # A random run of mapped pages (within one model mapping or across neighbours); -Writable: starting at a page
    # that may be written.
    if ($map.Count -eq 0) { return $null }
    $keys = [uint64[]]@($map.Keys)
    if ($Writable) {
        $w = [uint64[]]@($keys | Where-Object { $map[$_].Prot -eq 3 -and -not $map[$_].Guard })
        if ($w.Length) { $keys = $w }
    }
    $start = $keys[$r.Next($keys.Length)]
    $n = 1
    $want = $r.Next(1, $MaxPages + 1)
    while ($n -lt $want -and $map.ContainsKey($start + [uint64]($n * $script:R30PageSize))) { $n++ }
    @{ Addr = $start; Pages = $n }
}

function Get-R30FreeSlot($ctx, [System.Random] $r, [int] $Pages, [switch] $AllowOverlap) {
    for ($try = 0; $try -lt 20; $try++) {
        $first = $r.Next(0, $script:R30WindowPages - $Pages)
        $addr = $script:R30Base + [uint64]($first * $script:R30PageSize)
        if ($AllowOverlap -or -not (@(Get-R30Pages $addr $Pages) | Where-Object { $ctx.Map.ContainsKey($_) })) { return $addr }
    }
    $null
}

function New-R30Op($ctx, [System.Random] $r) {
    $w = $r.Next(100)
    $run = Get-R30MappedRun $ctx $r 12
    if ($ctx.Map.Count -eq 0 -or $w -lt 8) {
        $pages = if ($r.Next(12) -eq 0) { 512 } else { $r.Next(1, 17) }
        $addr = if ($pages -eq 512) { $script:R30Base + [uint64](512 * $script:R30PageSize * $r.Next(0, 4)) } else { Get-R30FreeSlot $ctx $r $pages -AllowOverlap:($r.Next(5) -eq 0) }
        if ($null -eq $addr) { return @{ Op = 'read'; Addr = $script:R30Base; Pages = 1 } }
        $prot = @(3, 3, 3, 1, 0)[$r.Next(5)]
        return @{ Op = 'map'; Addr = $addr; Pages = $pages; Prot = $prot; Shared = ($r.Next(4) -eq 0) }
    }
    if ($w -lt 40) {
        $target = if ($ctx.Child -and $r.Next(3) -eq 0) { 'child' } else { 'parent' }
        $tmap = if ($target -eq 'child') { $ctx.ChildMap } else { $ctx.Map }
        $trun = Get-R30MappedRun $ctx $r 8 $tmap -Writable:($r.Next(5) -ne 0)
        if (-not $trun) { return @{ Op = 'read'; Addr = $run.Addr; Pages = 1 } }
        $kind = $r.Next(10)
        $value = $null; $offset = 0; $len = $trun.Pages * $script:R30PageSize
        if ($kind -lt 4) { $value = [byte]@(0, 0x11, 0x5a, 0xff)[$r.Next(4)] }          # a fill (the same bytes again, often)
        elseif ($kind -lt 6) {                                                                  # part of a page
            $value = [byte]$r.Next(256); $offset = $r.Next(1, $script:R30PageSize); $len = $r.Next(1, $script:R30PageSize * [Math]::Min(2, $trun.Pages) - $offset + 1)
        } elseif ($kind -eq 6 -and $ctx.Map.Count) {                                            # the same content the page has
            $value = 'same'
        }
        return @{ Op = 'write'; Target = $target; Addr = $trun.Addr + [uint64]$offset; Length = [uint64]$len; Value = $value; Pages = $trun.Pages }
    }
    if ($w -lt 46) { return @{ Op = 'read'; Addr = $run.Addr; Pages = $run.Pages } }
    if ($w -lt 50) { return @{ Op = 'unmap'; Addr = $run.Addr; Pages = $run.Pages } }
    if ($w -lt 55) {
        $newPages = @($run.Pages, $run.Pages, [Math]::Max(1, $run.Pages - $r.Next(1, 4)), $run.Pages + $r.Next(1, 5))[$r.Next(4)]
        $dest = Get-R30FreeSlot $ctx $r ([Math]::Max($run.Pages, $newPages))
        if ($null -eq $dest) { return @{ Op = 'read'; Addr = $run.Addr; Pages = 1 } }
        return @{ Op = 'move'; Addr = $run.Addr; Pages = $run.Pages; NewAddr = $dest; NewPages = $newPages }
    }
    if ($w -lt 60) { return @{ Op = 'protect'; Addr = $run.Addr; Pages = $run.Pages; Prot = @(3, 1, 0)[$r.Next(3)] } }
    if ($w -lt 66) {
        $adv = @('DontNeed', 'DontNeed', 'PageOut', 'WillNeed', 'Free', 'Collapse', 'Split', 'GuardInstall', 'GuardRemove')[$r.Next(9)]
        if ($adv -in 'Collapse', 'Split') { return @{ Op = 'madvise'; Addr = $script:R30Base + [uint64](512 * $script:R30PageSize * $r.Next(0, 4)); Pages = 512; Advice = $adv } }
        return @{ Op = 'madvise'; Addr = $run.Addr; Pages = $run.Pages; Advice = $adv }
    }
    if ($w -lt 70) { return @{ Op = 'workload'; Addr = $run.Addr; Pages = $run.Pages; Pattern = @('Random', 'Sequential', 'HotSet', 'Zipf')[$r.Next(4)]; Count = $r.Next(1, 40); WriteRatio = $r.NextDouble(); Seed = $r.Next() } }
    if ($w -lt 72) { return @{ Op = 'fork' } }
    if ($w -lt 73) { return @{ Op = 'savechild'; Method = $script:R30Methods[$r.Next(4)] } }
    if ($w -lt 76 -and $ctx.Child) { return @{ Op = 'save'; Chain = 'C'; Full = ($r.Next(8) -eq 0); Method = $script:R30Methods[$r.Next(4)]; Verify = ($r.Next(6) -eq 0); Emulator = ($r.Next(3) -eq 0) } }
    if ($w -lt 80) {
        $how = @('ClearSoftDirty', 'ClearRefs', 'Watch', 'RegisterWP', 'SearchWP', 'Migrate', 'MigrateWorkload', 'WatchWorkload')[$r.Next(8)]
        return @{ Op = 'clear'; How = $how; Method = $script:R30Methods[$r.Next(4)]; Addr = $run.Addr; Pages = $run.Pages; Type = @('All', 'Anonymous', 'Mapped', 'PeakRss')[$r.Next(4)] }
    }
    $chain = if ($r.Next(4) -eq 0) { 'B' } else { 'A' }
    # -Mapping: private anonymous memory only, or shared only (an increment of another selection than its parent's).
    $select = @($null, $null, $null, $null, '[anon]', '/dev/zero')[$r.Next(6)]
    # Back: the parent is an earlier image of the chain than its latest (a branch), 1 to 3 images back.
    $back = if ($r.Next(5) -eq 0) { $r.Next(1, 4) } else { 0 }
    @{ Op = 'save'; Chain = $chain; Full = ($r.Next(8) -eq 0); Method = $script:R30Methods[$r.Next(4)]; Verify = ($r.Next(6) -eq 0); Emulator = ($r.Next(3) -eq 0); Select = $select; Back = $back }
}

function Format-R30Op($op) {
    $parts = foreach ($k in @($op.Keys | Sort-Object)) {
        $v = $op[$k]
        if ($v -is [uint64] -and $v -ge 0x10000) { '{0}=0x{1:x}' -f $k, $v } else { "$k=$v" }
    }
    '@{ ' + ($parts -join '; ') + ' }'
}

# ---------------------------------------------------------------------------------------------------------------
# Execution.

function Assert-R30CleanError($err, [string] $What) {
    $id = $err.FullyQualifiedErrorId
    if ($err.Exception -is [System.Management.Automation.RuntimeException] -and $err.Exception.ErrorRecord) { $id = $err.Exception.ErrorRecord.FullyQualifiedErrorId }
    if ($id -match '^System\.|^(NullReference|InvalidOperation|IndexOutOfRange|ArgumentOutOfRange|Argument|Overflow|KeyNotFound)Exception' -or $id -notmatch ',SoftDirty\.Commands\.') {
        throw "$What failed with an error that is not a SoftDirty ErrorId: $id : $($err.Exception.Message)"
    }
    $short = ($id -split ',')[0]
    if (-not $script:R30ErrorTexts.ContainsKey("$What|$short")) { $script:R30ErrorTexts["$What|$short"] = $err.Exception.Message }
    $short
}

function Read-R30Back($ctx, $proc, $map, [uint64] $Addr, [int] $Pages) {
    $bytes = $proc | Read-EmulatedMemory -Address $Addr -Length ([uint64]($Pages * $script:R30PageSize)) -AsByteArray -ErrorAction Stop
    $i = 0
    foreach ($p in Get-R30Pages $Addr $Pages) { Set-R30Key $ctx $map[$p] (Get-R30PageKey $bytes ($i * $script:R30PageSize)); $i++ }
}

# After a workload: a page it wrote is present; read back the present ones (a read of a present page changes nothing).
function Update-R30Present($ctx, [uint64] $Addr, [int] $Pages) {
    $present = @($ctx.Emu | Get-PageMap -Address $Addr -Length ([uint64]($Pages * $script:R30PageSize)) -ErrorAction Stop | Where-Object Present)
    foreach ($pm in $present) { Read-R30Back $ctx $ctx.Emu $ctx.Map $pm.Start 1 }
}

function Invoke-R30Save($ctx, $op) {
    # Chains A and B are the parent's; C is the fork's child's (its memory shares the parent's shared mappings, which
    # the parent writes without touching the child's page tables).
    $proc = $ctx.Emu; $map = $ctx.Map
    if ($op.Chain -eq 'C') {
        if (-not $ctx.Child) { return 'skip' }
        $proc = $ctx.Child; $map = $ctx.ChildMap
    }
    $chain = $ctx.Chains[$op.Chain]
    $n = $chain.Images.Count
    $path = Join-Path $ctx.Root ('{0}{1:D2}' -f $op.Chain, $ctx.Saves++)
    $p = @{ Path = $path; Method = $op.Method; Verify = $op.Verify; ErrorAction = 'Stop'; WarningAction = 'SilentlyContinue' }
    $full = $op.Full -or $n -eq 0
    $back = if ($op.ContainsKey('Back')) { [Math]::Min([int]$op.Back, $n - 1) } else { 0 }
    if (-not $full) { $p.Parent = $chain.Images[$n - 1 - $back].Path }
    $select = if ($op.ContainsKey('Select')) { $op.Select } else { $null }
    if ($select) { $p.Mapping = $select }
    try { $null = $proc | Save-MemoryImage @p }
    catch {
        $id = Assert-R30CleanError $_ "save ($(Format-R30Op $op))"
        $ctx.Errors[$id] = 1 + [int]$ctx.Errors[$id]
        if (Test-Path -LiteralPath $path) { throw "a failed save ($id) left $path behind" }
        return
    }
    $snap = Get-R30Snapshot $ctx $map $select
    $chain.Images.Add(@{ Path = $path; Snapshot = $snap; Op = $op })
    $ctx.Checked.Saves++
    if (-not (Test-MemoryImage -Path $path)) { throw "Test-MemoryImage says $path is not valid: $((Test-MemoryImage -Path $path -Detailed).Problems | Out-String -Width 300)" }
    Assert-R30Image $ctx $path $snap
    if ($op.Emulator -and $full) {
        # The image's files through Receive-MemoryImage (as a migration's receiving end gets them), then restored.
        $copy = Join-Path $ctx.Root ('received{0}' -f $ctx.Saves)
        $null = Get-ChildItem -LiteralPath $path -File | Receive-MemoryImage -Path $copy -ErrorAction Stop
        Assert-R30Image $ctx $copy $snap
        $ctx.Checked.Receives++
    }
    if ($op.Emulator) {
        $diff = Compare-R30Memory $snap (Read-R30RestoredEmulator $path $ctx.Kernel)
        $ctx.Checked.EmulatorRestores++
        if ($diff.Count) { throw "restoring $path into an emulated process differs from the model in $($diff.Count) pages:`n$(($diff | Select-Object -First 12) -join "`n")" }
    }
}

function Assert-R30Image($ctx, [string] $Path, $Snapshot) {
    $dest = Join-Path $ctx.Root ('restore{0}' -f $ctx.Restores++)
    $diff = Compare-R30Memory $Snapshot (Read-R30RestoredFiles $Path $dest)
    Remove-Item -LiteralPath $dest -Recurse -Force
    $ctx.Checked.FileRestores++
    if ($diff.Count) { throw "restoring $Path differs from the model in $($diff.Count) pages:`n$(($diff | Select-Object -First 12) -join "`n")" }
}

function Invoke-R30Op($ctx, $op) {
    $e = $ctx.Emu
    $len = if ($op.ContainsKey('Pages')) { [uint64]($op.Pages * $script:R30PageSize) } else { 0 }
    switch ($op.Op) {
        'map' {
            $null = $e | Add-EmulatedMapping -Address $op.Addr -Length $len -Fixed -Protection $op.Prot -Shared:$op.Shared -ErrorAction Stop
            Remove-R30Range $ctx.Map $op.Addr $op.Pages
            $obj = -1
            if ($op.Shared) { $obj = $ctx.NextObj++; $ctx.Shared[$obj] = [System.Collections.Generic.Dictionary[int, string]]::new() }
            $i = 0
            foreach ($p in Get-R30Pages $op.Addr $op.Pages) { $ctx.Map[$p] = New-R30Entry $op.Prot $obj $i (Get-R30FillKey 0); $i++ }
        }
        'unmap' {
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
            $e | Remove-EmulatedMapping -Address $op.Addr -Length $len -ErrorAction Stop
            Remove-R30Range $ctx.Map $op.Addr $op.Pages
        }
        'read' {
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages 1)) { return 'skip' }
            $e | Read-EmulatedMemory -Address $op.Addr -Length $len -ErrorAction Stop
        }
        'write' {
            $child = $op.Target -eq 'child'
            if ($child -and -not $ctx.Child) { return 'skip' }
            $proc = if ($child) { $ctx.Child } else { $e }
            $map = if ($child) { $ctx.ChildMap } else { $ctx.Map }
            $first = $op.Addr - ($op.Addr % $script:R30PageSize)
            $pages = [int][Math]::Floor(($op.Addr + $op.Length - 1 - $first) / $script:R30PageSize) + 1
            if (-not (Test-R30AllMapped $map $first $pages 2)) {
                # Not writable everywhere: the emulator refuses it as the kernel's SIGSEGV would, and nothing changes.
                if (-not (Test-R30AllMapped $map $first $pages)) { return 'skip' }
                $threw = $null
                try { $proc | Write-EmulatedMemory -Address $op.Addr -Length $op.Length -Value 1 -ErrorAction Stop } catch { $threw = Assert-R30CleanError $_ 'write' }
                if ($threw -ne 'SegmentationFault') { throw "a write to memory that is not writable gave '$threw', not SegmentationFault" }
                return 'segv'
            }
            $value = $op.Value
            if ($value -is [string]) {
                # Write back the bytes the first page holds where it is uniform (the same content again).
                $b = $proc | Read-EmulatedMemory -Address $first -Length $script:R30PageSize -AsByteArray -ErrorAction Stop
                $value = $b[0]
                if ((Get-R30PageKey $b 0) -ne (Get-R30FillKey $value)) { $value = $null }
            }
            $wp = @{ Address = $op.Addr; Length = $op.Length; ErrorAction = 'Stop' }
            if ($null -ne $value) { $wp.Value = [byte]$value }
            $proc | Write-EmulatedMemory @wp
            Read-R30Back $ctx $proc $map $first $pages
        }
        'move' {
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
            $src = @(Get-R30Pages $op.Addr $op.Pages)
            $newEnd = $op.NewAddr + [uint64]($op.NewPages * $script:R30PageSize)
            if ($op.NewAddr -lt ($op.Addr + $len) -and $op.Addr -lt $newEnd) { return 'skip' }
            try {
                $null = $e | Move-EmulatedMapping -Address $op.Addr -Length $len -NewAddress $op.NewAddr -NewLength ([uint64]($op.NewPages * $script:R30PageSize)) -ErrorAction Stop
            } catch {
                # mremap of a range that is more than one VMA (EFAULT): the model does not track VMA boundaries.
                $id = Assert-R30CleanError $_ 'move'
                $ctx.Errors["move:$id"] = 1 + [int]$ctx.Errors["move:$id"]
                # A move of several VMAs (6.17+) stops with EFAULT at one registered with userfaultfd, the VMAs before
                # it moved already (mm/mremap.c remap_move): the model does not know VMA boundaries, so it asks which
                # leading pages left, and moves those (each VMA lands, unmapping only where it lands).
                $left = 0
                $now = @($e | Get-MemoryMapping)
                foreach ($p in $src) {
                    if (@($now | Where-Object { $_.Start -le $p -and $p -lt $_.End }).Count) { break }
                    $left++
                }
                if ($left -gt 0) {
                    if ($op.NewPages -ne $op.Pages) { throw "a refused mremap that changes the size moved $left pages" }
                    $moved = @(foreach ($p in $src[0..($left - 1)]) { $ctx.Map[$p] })
                    Remove-R30Range $ctx.Map $op.Addr $left
                    Remove-R30Range $ctx.Map $op.NewAddr $left
                    for ($i = 0; $i -lt $left; $i++) { $ctx.Map[$op.NewAddr + [uint64]($i * $script:R30PageSize)] = $moved[$i] }
                }
                # Before 6.17 mremap_to unmaps the destination and a shrinking move's tail before vma_to_resize finds
                # that the old range is more than one VMA (EFAULT): what the failed call unmapped is gone.
                foreach ($p in @(Get-R30Pages $op.NewAddr $op.NewPages) + $src) {
                    if ($ctx.Map.ContainsKey($p) -and -not @($now | Where-Object { $_.Start -le $p -and $p -lt $_.End }).Count) { $null = $ctx.Map.Remove($p) }
                }
                return 'refused'
            }
            $moved = @(foreach ($p in $src) { $ctx.Map[$p] })
            Remove-R30Range $ctx.Map $op.Addr $op.Pages
            Remove-R30Range $ctx.Map $op.NewAddr $op.NewPages
            $last = $moved[-1]
            for ($i = 0; $i -lt $op.NewPages; $i++) {
                $at = $op.NewAddr + [uint64]($i * $script:R30PageSize)
                if ($i -lt $op.Pages) { $ctx.Map[$at] = $moved[$i] }
                elseif ($last.Obj -ge 0) { $ctx.Map[$at] = New-R30Entry $last.Prot $last.Obj ($moved[0].Idx + $i) $null }
                else { $ctx.Map[$at] = New-R30Entry $last.Prot -1 0 (Get-R30FillKey 0) }
            }
        }
        'protect' {
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
            $e | Set-EmulatedProtection -Address $op.Addr -Length $len -Protection $op.Prot -ErrorAction Stop
            foreach ($p in Get-R30Pages $op.Addr $op.Pages) { $ctx.Map[$p].Prot = $op.Prot }
        }
        'madvise' {
            $private = $op.Advice -in 'Free', 'GuardInstall', 'GuardRemove'
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages -Private:$private)) { return 'skip' }
            if ($op.Advice -eq 'Free' -and $ctx.EverForked) { return 'skip' }
            try { $e | Invoke-EmulatedMadvise -Address $op.Addr -Length $len -Advice $op.Advice -ErrorAction Stop }
            catch {
                $id = Assert-R30CleanError $_ 'madvise'
                # THP advice needs a whole huge page of one VMA; guard regions need a 6.15+ profile (EINVAL before).
                if ($op.Advice -notin 'Collapse', 'Split', 'GuardInstall', 'GuardRemove') { throw "madvise $($op.Advice) of mapped memory failed: $id" }
                $ctx.Errors["madvise:$id"] = 1 + [int]$ctx.Errors["madvise:$id"]
                return 'refused'
            }
            foreach ($p in Get-R30Pages $op.Addr $op.Pages) {
                $x = $ctx.Map[$p]
                switch ($op.Advice) {
                    'DontNeed' { if ($x.Obj -lt 0) { $x.Key = Get-R30FillKey 0; $x.Freed = $false } }
                    'PageOut' { if ($x.Freed) { $x.Key = Get-R30FillKey 0; $x.Freed = $false } }
                    'Free' { $x.Freed = $true; $ctx.EverFreed = $true }
                    'GuardInstall' { $x.Key = Get-R30FillKey 0; $x.Freed = $false; $x.Guard = $true }
                    'GuardRemove' { $x.Guard = $false }
                }
            }
        }
        'workload' {
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages 3)) { return 'skip' }
            $null = $e | Invoke-EmulatedWorkload -Address $op.Addr -Length $len -Pattern $op.Pattern -Count $op.Count -WriteRatio $op.WriteRatio -Seed $op.Seed -ErrorAction Stop
            # A page the workload wrote is present; read back the present ones (a read of a present page changes nothing).
            Update-R30Present $ctx $op.Addr $op.Pages
        }
        'fork' {
            if ($ctx.EverFreed) { return 'skip' }
            $ctx.Child = $e | Copy-EmulatedProcess -Name r30child -ErrorAction Stop
            $ctx.ChildMap = [System.Collections.Generic.Dictionary[uint64, object]]::new()
            foreach ($kv in $ctx.Map.GetEnumerator()) {
                $c = Copy-R30Entry $kv.Value
                if ($c.Obj -lt 0) { $c.Key = $kv.Value.Key }
                $ctx.ChildMap[$kv.Key] = $c
            }
            $ctx.EverForked = $true
            $ctx.Chains['C'].Images.Clear()
        }
        'clear' {
            try {
                switch ($op.How) {
                    'ClearSoftDirty' { $e | Clear-SoftDirty -ErrorAction Stop }
                    'ClearRefs' { $e | Clear-PageReference -Type $op.Type -ErrorAction Stop }
                    'Watch' { $null = $e | Watch-DirtyPage -Interval 0.01 -Count 2 -Method $op.Method -ErrorAction Stop -WarningAction SilentlyContinue }
                    'RegisterWP' {
                        if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
                        $e | Register-EmulatedWriteProtect -Address $op.Addr -Length $len -ErrorAction Stop
                    }
                    'SearchWP' { $null = $e | Search-PageMap -Category Written -WriteProtect -ErrorAction Stop -WarningAction SilentlyContinue }
                    { $_ -in 'MigrateWorkload', 'WatchWorkload' } {
                        # A workload that writes while the rounds run: the last round (stop-and-copy) holds the memory
                        # as the workload left it.
                        if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages 3)) { return 'skip' }
                        $work = [SoftDirty.Workflows.EmulatedWorkloadSpec]@{ Address = $op.Addr; Length = $len; Pattern = 'Random'; AccessesPerSecond = 20000; WriteRatio = 0.5; Seed = [int]($op.Addr % 100000) }
                        if ($op.How -eq 'WatchWorkload') {
                            $null = $e | Watch-DirtyPage -Interval 0.001 -Count 2 -Method $op.Method -Workload $work -ErrorAction Stop -WarningAction SilentlyContinue
                            Update-R30Present $ctx $op.Addr $op.Pages
                        } else {
                            $dest = Join-Path $ctx.Root ('migration{0}' -f $ctx.Migrations++)
                            $null = $e | Invoke-PreCopyMigration -Method $op.Method -Bandwidth 64MB -MaxIterations 3 -Workload $work -Destination $dest -ErrorAction Stop -WarningAction SilentlyContinue
                            Update-R30Present $ctx $op.Addr $op.Pages
                            $last = @(Get-ChildItem -LiteralPath $dest -Directory | Sort-Object Name)[-1].FullName
                            Assert-R30Image $ctx $last (Get-R30Snapshot $ctx)
                            $ctx.Checked.Migrations++
                        }
                    }
                    'Migrate' {
                        $dest = Join-Path $ctx.Root ('migration{0}' -f $ctx.Migrations++)
                        $null = $e | Invoke-PreCopyMigration -Method $op.Method -Bandwidth 1e9 -MaxIterations 3 -Destination $dest -ErrorAction Stop -WarningAction SilentlyContinue
                        $last = @(Get-ChildItem -LiteralPath $dest -Directory | Sort-Object Name)[-1].FullName
                        Assert-R30Image $ctx $last (Get-R30Snapshot $ctx)
                        $ctx.Checked.Migrations++
                    }
                }
            } catch {
                $id = Assert-R30CleanError $_ "clear ($(Format-R30Op $op))"
                $ctx.Errors["$($op.How):$id"] = 1 + [int]$ctx.Errors["$($op.How):$id"]
                return 'refused'
            }
        }
        'save' { Invoke-R30Save $ctx $op }
        'savechild' {
            # An increment of the fork's child on the parent's chain: another process (pid, start time), refused; were it
            # taken, it would have to restore to the child's memory.
            $images = $ctx.Chains['A'].Images
            if (-not $ctx.Child -or $images.Count -eq 0) { return 'skip' }
            $path = Join-Path $ctx.Root ('child{0:D2}' -f $ctx.Saves++)
            try { $null = $ctx.Child | Save-MemoryImage -Path $path -Parent $images[$images.Count - 1].Path -Method $op.Method -ErrorAction Stop -WarningAction SilentlyContinue }
            catch {
                $id = Assert-R30CleanError $_ 'save of the child on the parent''s chain'
                $ctx.Errors["child:$id"] = 1 + [int]$ctx.Errors["child:$id"]
                if (Test-Path -LiteralPath $path) { throw "a failed save ($id) left $path behind" }
                return 'refused'
            }
            Assert-R30Image $ctx $path (Get-R30Snapshot $ctx $ctx.ChildMap)
        }
        default { throw "unknown operation $($op.Op)" }
    }
    'done'
}

# Counts what ran, by operation and its kind (how, advice, method) and result.
function Add-R30Count($ctx, $op, [string] $Result) {
    $k = $op.Op
    foreach ($f in 'How', 'Advice', 'Method') { if ($op.ContainsKey($f)) { $k += ":$($op[$f])"; break } }
    if ($op.Op -eq 'save') { $k += $(if ($op.Full) { ':full' } else { ':inc' }) }
    if ($Result -ne 'done') { $k += ":$Result" }
    $ctx.Counts[$k] = 1 + [int]$ctx.Counts[$k]
}

function New-R30Context([string] $Root, [string] $Kernel, [bool] $NoSoftDirty, [string] $Thp = 'Never') {
    if (Test-Path -LiteralPath $Root) { Remove-Item -LiteralPath $Root -Recurse -Force }
    $null = New-Item -ItemType Directory -Path $Root
    @{
        Root = $Root; Kernel = $Kernel
        Emu = New-EmulatedProcess -Kernel $Kernel -NoSoftDirty:$NoSoftDirty -TransparentHugePages $Thp -Name r30model
        Map = [System.Collections.Generic.Dictionary[uint64, object]]::new()
        Shared = @{}; NextObj = 0; Child = $null; ChildMap = $null; EverForked = $false; EverFreed = $false
        Chains = @{ A = @{ Images = [System.Collections.Generic.List[object]]::new() }; B = @{ Images = [System.Collections.Generic.List[object]]::new() }; C = @{ Images = [System.Collections.Generic.List[object]]::new() } }
        Saves = 0; Restores = 0; Migrations = 0; Errors = @{}; Counts = @{}
        Checked = @{ Saves = 0; FileRestores = 0; EmulatorRestores = 0; Migrations = 0; Receives = 0; Ops = 0; Skipped = 0 }
    }
}

# Runs a list of operations; returns the context, or throws with the step that failed.
function Invoke-R30ModelOps([object[]] $Ops, [string] $Root, [string] $Kernel = '6.18', [bool] $NoSoftDirty = $false, [string] $Thp = 'Never') {
    $ctx = New-R30Context $Root $Kernel $NoSoftDirty $Thp
    $i = 0
    foreach ($op in $Ops) {
        try { $r = Invoke-R30Op $ctx $op }
        catch { throw [System.Exception]::new("step $i $(Format-R30Op $op): $($_.Exception.Message)", $_.Exception) }
        if ($r -eq 'skip') { $ctx.Checked.Skipped++ } else { $ctx.Checked.Ops++ }
        $i++
    }
    # Every image of both chains once more, at the end: nothing later changed an earlier image.
    foreach ($c in $ctx.Chains.Values) { foreach ($img in $c.Images) { Assert-R30Image $ctx $img.Path $img.Snapshot } }
    $ctx
}

function Get-R30SeedSetup([int] $Seed) {
    $r = [System.Random]::new($Seed)
    $kernel = $script:R30Kernels[$r.Next($script:R30Kernels.Count)]
    $noSd = $r.Next(8) -eq 0
    $thp = @('Never', 'Madvise', 'Always')[$r.Next(3)]
    @{ Random = $r; Kernel = $kernel; NoSoftDirty = $noSd; Thp = $thp }
}

# Generates and runs one seed's sequence (generation follows the model as it runs).
function Invoke-R30ModelSeed([int] $Seed, [string] $Root, [int] $Length = 60) {
    $s = Get-R30SeedSetup $Seed
    $ctx = New-R30Context $Root $s.Kernel $s.NoSoftDirty $s.Thp
    $ops = [System.Collections.Generic.List[object]]::new()
    try {
        for ($i = 0; $i -lt $Length; $i++) {
            $op = New-R30Op $ctx $s.Random
            $ops.Add($op)
            $r = Invoke-R30Op $ctx $op
            if ($r -eq 'skip') { $ctx.Checked.Skipped++ } else { $ctx.Checked.Ops++; Add-R30Count $ctx $op $r }
        }
        $ops.Add(@{ Op = 'save'; Chain = 'A'; Full = $false; Method = 'Auto'; Verify = $false; Emulator = $true })
        Invoke-R30Op $ctx $ops[-1] | Out-Null
        foreach ($c in $ctx.Chains.Values) { foreach ($img in $c.Images) { Assert-R30Image $ctx $img.Path $img.Snapshot } }
    } catch {
        $err = [System.Exception]::new("seed $Seed (kernel $($s.Kernel)$(if ($s.NoSoftDirty) { ', no soft-dirty' }), THP $($s.Thp)), step $($ops.Count - 1): $($_.Exception.Message)", $_.Exception)
        $err.Data['Ops'] = $ops.ToArray()
        $err.Data['Kernel'] = $s.Kernel
        $err.Data['NoSoftDirty'] = $s.NoSoftDirty
        $err.Data['Thp'] = $s.Thp
        throw $err
    }
    $ctx
}

# Shrinks a list of operations while $Fails (a script block given the shorter list) still says it fails: removes chunks
# from the end backwards, halving the chunk when no removal fails; each try costs one of $Budget. Used by every model runner.
function Get-R30ShrunkList([object[]] $Ops, [scriptblock] $Fails, [int] $Budget) {
    $cur = [System.Collections.Generic.List[object]]::new([object[]]$Ops)
    $chunk = [Math]::Max(1, [int]($cur.Count / 2))
    while ($chunk -ge 1 -and $Budget -gt 0) {
        $changed = $false
        for ($at = $cur.Count - $chunk; $at -ge 0 -and $Budget -gt 0; $at -= $chunk) {
            $try = [System.Collections.Generic.List[object]]::new($cur)
            $try.RemoveRange($at, $chunk)
            $Budget--
            if (& $Fails $try.ToArray()) { $cur = $try; $changed = $true }
        }
        if (-not $changed) { $chunk = [int]($chunk / 2) }
    }
    , $cur.ToArray()
}

# Shrinks a failing sequence: removes chunks, then single operations, while it still fails (any failure).
function Get-R30ShrunkOps([object[]] $Ops, [string] $Root, [string] $Kernel, [bool] $NoSoftDirty, [string] $Thp = 'Never', [int] $Budget = 300) {
    $fails = {
        param($list)
        try { $null = Invoke-R30ModelOps $list $Root $Kernel $NoSoftDirty $Thp; $false } catch { $true }
    }
    Get-R30ShrunkList $Ops $fails $Budget
}

# ---------------------------------------------------------------------------------------------------------------
# The same against a real process: tests/native/bin/sdtarget (Start-TestTarget of SoftDirty.TestSupport.psm1), whose
# writes put a known byte into the first byte of each page (1 + (i & 0x7f) for the i-th page touched), so the model knows
# every byte. Only the pages the sequence mapped (and their guard pages) are compared; the rest of the process (its
# stack, libc) changes on its own.

function Get-R30ByteKey([byte] $Value) {
    $k = "b$Value"
    if (-not $script:R30FillKeys.ContainsKey($k)) {
        $b = [byte[]]::new($script:R30PageSize)
        $b[0] = $Value
        $script:R30FillKeys[$k] = Get-R30PageKey $b 0
    }
    $script:R30FillKeys[$k]
}

function New-R30RealOp($ctx, [System.Random] $r) {
    $w = $r.Next(100)
    $user = @($ctx.Map.Keys | Where-Object { -not $ctx.Map[$_].Guard })
    if ($user.Count -eq 0 -or $w -lt 10) {
        return @{ Op = 'map'; Pages = $r.Next(1, 13); How = @('anon', 'anon', 'shared')[$r.Next(3)]; Prot = @('rw', 'rw', 'rw', 'ro', 'none')[$r.Next(5)] }
    }
    $start = [uint64]$user[$r.Next($user.Count)]
    if ($w -lt 45 -and $r.Next(4) -ne 0) {
        # Writes mostly where they may write (the rest: a refusal the model must predict).
        $rw = @($user | Where-Object { $ctx.Map[$_].Prot -eq 3 })
        if ($rw.Count) { $start = [uint64]$rw[$r.Next($rw.Count)] }
    }
    $n = 1; $want = $r.Next(1, 9)
    while ($n -lt $want -and $ctx.Map.ContainsKey($start + [uint64]($n * $script:R30PageSize)) -and -not $ctx.Map[$start + [uint64]($n * $script:R30PageSize)].Guard) { $n++ }
    if ($w -lt 45) { return @{ Op = 'write'; Addr = $start; Pages = $n; Stride = $(if ($n -gt 2 -and $r.Next(3) -eq 0) { 2 } else { 1 }) } }
    if ($w -lt 50) { return @{ Op = 'read'; Addr = $start; Pages = $n } }
    if ($w -lt 54) { return @{ Op = 'unmap'; Addr = $start; Pages = $n } }
    if ($w -lt 60) { return @{ Op = 'protect'; Addr = $start; Pages = $n; Prot = @('rw', 'ro', 'none')[$r.Next(3)] } }
    if ($w -lt 65) { return @{ Op = 'madvise'; Addr = $start; Pages = $n } }
    if ($w -lt 67) { return @{ Op = 'fork' } }
    if ($w -lt 75) { return @{ Op = 'clear'; How = @('ClearSoftDirty', 'Watch', 'SearchWP', 'Enable', 'Disable')[$r.Next(5)]; Method = $script:R30Methods[$r.Next(4)] } }
    @{ Op = 'save'; Chain = $(if ($r.Next(4) -eq 0) { 'B' } else { 'A' }); Full = ($r.Next(8) -eq 0); Method = $script:R30Methods[$r.Next(4)]; Verify = ($r.Next(6) -eq 0); Back = $(if ($r.Next(5) -eq 0) { $r.Next(1, 4) } else { 0 }) }
}

function ConvertTo-R30RealProt([string] $Prot) { switch ($Prot) { 'rw' { 3 } 'ro' { 1 } default { 0 } } }

function Get-R30RealSnapshot($ctx) {
    $s = [System.Collections.Generic.Dictionary[uint64, string]]::new()
    foreach ($kv in $ctx.Map.GetEnumerator()) {
        $e = $kv.Value
        $s[$kv.Key] = '{0}|{1}|{2}' -f $e.Prot, $(if ($e.Shared) { 's' } else { 'p' }), (Get-R30ByteKey $e.B)
    }
    $s
}

function Read-R30RealRestore($ctx, [string] $Image) {
    $dest = Join-Path $ctx.Root ('restore{0}' -f $ctx.Restores++)
    $out = @(Restore-MemoryImage -Path $Image -Destination $dest -ErrorAction Stop)
    $mem = [System.Collections.Generic.Dictionary[uint64, string]]::new()
    $buf = [byte[]]::new($script:R30PageSize)
    foreach ($m in $out) {
        $pages = @($ctx.Tracked.Keys | Where-Object { $_ -ge $m.Start -and $_ -lt $m.End })
        if (-not $pages.Count) { continue }
        $pp = ConvertFrom-R30Permissions $m.Permissions
        $fs = [IO.File]::OpenRead($m.File)
        try {
            foreach ($p in $pages) {
                $fs.Position = [long]($p - $m.Start)
                $got = $fs.Read($buf, 0, $buf.Length)
                if ($got -ne $buf.Length) { throw "restored file $($m.File) ends before 0x$('{0:x}' -f $p)" }
                $mem[$p] = '{0}|{1}' -f $pp, (Get-R30PageKey $buf 0)
            }
        } finally { $fs.Dispose() }
    }
    Remove-Item -LiteralPath $dest -Recurse -Force
    $ctx.Checked.FileRestores++
    $mem
}

function Assert-R30RealImage($ctx, [string] $Path, $Snapshot, [uint64] $Unreadable = 0) {
    $diff = Compare-R30Memory $Snapshot (Read-R30RealRestore $ctx $Path)
    if ($Unreadable -gt 0) {
        # An image that says it is incomplete (pages of shared memory this user cannot read from the object: documented)
        # may differ there only: in pages of shared mappings, no more than it counted.
        $shared = @($diff | Where-Object { $_ -match '^0x[0-9a-f]+ model \d\|s\|' })
        if ($shared.Count -eq $diff.Count -and [uint64]$diff.Count -le $Unreadable) { return }
    }
    if ($diff.Count) { throw "restoring $Path differs from the model in $($diff.Count) pages:`n$(($diff | Select-Object -First 12) -join "`n")" }
}

function Invoke-R30RealOp($ctx, $op) {
    $t = $ctx.Target
    $hex = if ($op.ContainsKey('Addr')) { '{0:x}' -f $op.Addr } else { '' }
    switch ($op.Op) {
        'map' {
            $a = [Convert]::ToUInt64($t.Send("map $($op.Pages) $($op.How) $($op.Prot)"), 16)
            $prot = ConvertTo-R30RealProt $op.Prot
            foreach ($p in Get-R30Pages ($a - [uint64]$script:R30PageSize) ($op.Pages + 2)) {
                $guard = $p -lt $a -or $p -ge $a + [uint64]($op.Pages * $script:R30PageSize)
                $ctx.Map[$p] = @{ Prot = $(if ($guard) { 0 } else { $prot }); Shared = (-not $guard -and $op.How -eq 'shared'); B = [byte]0; Guard = $guard }
                $ctx.Tracked[$p] = 1
            }
        }
        'write' {
            $pages = @(for ($i = 0; $i -lt $op.Pages; $i += $op.Stride) { $op.Addr + [uint64]($i * $script:R30PageSize) })
            # sdtarget checks the whole span, the pages a stride skips included.
            $span = ($pages.Count - 1) * $op.Stride + 1
            $ok = -not @(Get-R30Pages $op.Addr $span | Where-Object { -not $ctx.Map.ContainsKey($_) -or $ctx.Map[$_].Prot -ne 3 }).Count
            $reply = $t.TrySend("write $hex 0 $($pages.Count) $($op.Stride)")
            if ($ok -ne ($reply -match '^OK')) { throw "sdtarget answered '$reply' where the model says the pages are$(if (-not $ok) { ' not' }) writable" }
            if (-not $ok) { return 'refused' }
            for ($i = 0; $i -lt $pages.Count; $i++) { $ctx.Map[$pages[$i]].B = [byte](1 + ($i -band 0x7f)) }
        }
        'read' {
            $ok = -not @(Get-R30Pages $op.Addr $op.Pages | Where-Object { -not $ctx.Map.ContainsKey($_) -or ($ctx.Map[$_].Prot -band 1) -eq 0 }).Count
            $reply = $t.TrySend("read $hex 0 $($op.Pages)")
            if ($ok -ne ($reply -match '^OK')) { throw "sdtarget answered '$reply' to a read the model says is$(if (-not $ok) { ' not' }) allowed" }
        }
        'unmap' {
            $null = $t.Send("unmap $hex $($op.Pages)")
            Remove-R30Range $ctx.Map $op.Addr $op.Pages
        }
        'protect' {
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
            $null = $t.Send("mprotect $hex $($op.Pages) $($op.Prot)")
            foreach ($p in Get-R30Pages $op.Addr $op.Pages) { $ctx.Map[$p].Prot = ConvertTo-R30RealProt $op.Prot }
        }
        'madvise' {
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
            $null = $t.Send("madvise $hex $($op.Pages) dontneed")
            foreach ($p in Get-R30Pages $op.Addr $op.Pages) { if (-not $ctx.Map[$p].Shared) { $ctx.Map[$p].B = [byte]0 } }
        }
        'fork' {
            if ($ctx.Forks -ge 3) { return 'skip' }
            $null = $t.Send('fork'); $ctx.Forks++
        }
        'clear' {
            try {
                switch ($op.How) {
                    'ClearSoftDirty' { Clear-SoftDirty -Id $t.Id -ErrorAction Stop }
                    'Watch' { $null = Watch-DirtyPage -Id $t.Id -Interval 0.01 -Count 2 -Method $op.Method -ErrorAction Stop -WarningAction SilentlyContinue }
                    'SearchWP' { $null = Search-PageMap -Id $t.Id -Category Written -WriteProtect -ErrorAction Stop -WarningAction SilentlyContinue }
                    'Enable' { $null = Enable-WriteTracking -Id $t.Id -ErrorAction Stop -WarningAction SilentlyContinue }
                    'Disable' { Disable-WriteTracking -Id $t.Id -ErrorAction Stop -WarningAction SilentlyContinue }
                }
            } catch {
                $id = Assert-R30CleanError $_ "clear ($(Format-R30Op $op))"
                $ctx.Errors["$($op.How):$id"] = 1 + [int]$ctx.Errors["$($op.How):$id"]
                return 'refused'
            }
        }
        'save' {
            $chain = $ctx.Chains[$op.Chain]
            $n = $chain.Images.Count
            $path = Join-Path $ctx.Root ('{0}{1:D2}' -f $op.Chain, $ctx.Saves++)
            $p = @{ Id = $t.Id; Path = $path; Method = $op.Method; Verify = $op.Verify; ErrorAction = 'Stop'; WarningAction = 'SilentlyContinue' }
            $back = if ($op.ContainsKey('Back')) { [Math]::Min([int]$op.Back, $n - 1) } else { 0 }
            $parent = $null
            if (-not ($op.Full -or $n -eq 0)) { $parent = $chain.Images[$n - 1 - $back]; $p.Parent = $parent.Path }
            try { $saved = Save-MemoryImage @p }
            catch {
                $id = Assert-R30CleanError $_ "save ($(Format-R30Op $op))"
                $ctx.Errors[$id] = 1 + [int]$ctx.Errors[$id]
                if (Test-Path -LiteralPath $path) { throw "a failed save ($id) left $path behind" }
                return 'refused'
            }
            $snap = Get-R30RealSnapshot $ctx
            # What the chain could not read: this image's and its parents' (a page unreadable in a parent stays so).
            $unreadable = [uint64]$saved.UnreadablePages + $(if ($parent) { [uint64]$parent.Unreadable } else { [uint64]0 })
            $chain.Images.Add(@{ Path = $path; Snapshot = $snap; Unreadable = $unreadable })
            $ctx.Checked.Saves++
            $test = Test-MemoryImage -Path $path -Detailed
            if (-not $test.Valid) {
                # Incomplete, and saying so, is what a save of shared memory it cannot read gives (an unprivileged user):
                # only that, and only with the pages it counted.
                $other = @($test.Problems | Where-Object { $_.Error -ne 'ImageIncomplete' })
                if ($other.Count -or $unreadable -eq 0) { throw "Test-MemoryImage says $path is not valid: $($test.Problems | Out-String -Width 300)" }
                $ctx.Checked.Incomplete++
            }
            Assert-R30RealImage $ctx $path $snap $unreadable
        }
        default { throw "unknown operation $($op.Op)" }
    }
    'done'
}

# Generates and runs one seed's sequence on a new sdtarget; the target is stopped at the end.
function Invoke-R30RealSeed([int] $Seed, [string] $Root, [int] $Length = 30) {
    if (Test-Path -LiteralPath $Root) { Remove-Item -LiteralPath $Root -Recurse -Force }
    $null = New-Item -ItemType Directory -Path $Root
    $r = [System.Random]::new($Seed)
    $ctx = @{
        Root = $Root; Target = (Start-TestTarget); Forks = 0
        Map = [System.Collections.Generic.Dictionary[uint64, object]]::new(); Tracked = @{}
        Chains = @{ A = @{ Images = [System.Collections.Generic.List[object]]::new() }; B = @{ Images = [System.Collections.Generic.List[object]]::new() } }
        Saves = 0; Restores = 0; Errors = @{}; Counts = @{}
        Checked = @{ Saves = 0; FileRestores = 0; Ops = 0; Skipped = 0; Incomplete = 0 }
    }
    $ops = [System.Collections.Generic.List[object]]::new()
    try {
        for ($i = 0; $i -lt $Length; $i++) {
            $op = New-R30RealOp $ctx $r
            $ops.Add($op)
            $res = Invoke-R30RealOp $ctx $op
            if ($res -eq 'skip') { $ctx.Checked.Skipped++ } else { $ctx.Checked.Ops++; Add-R30Count $ctx $op $res }
        }
        $ops.Add(@{ Op = 'save'; Chain = 'A'; Full = $false; Method = 'Auto'; Verify = $false })
        $null = Invoke-R30RealOp $ctx $ops[-1]
        foreach ($c in $ctx.Chains.Values) { foreach ($img in $c.Images) { Assert-R30RealImage $ctx $img.Path $img.Snapshot $img.Unreadable } }
    } catch {
        $text = ($ops | ForEach-Object { Format-R30Op $_ }) -join "`n"
        throw [System.Exception]::new("real process, seed $Seed, step $($ops.Count - 1): $($_.Exception.Message)`noperations:`n$text", $_.Exception)
    } finally {
        Stop-TestTarget $ctx.Target
    }
    $ctx
}
