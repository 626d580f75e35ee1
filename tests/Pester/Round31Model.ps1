# Round 31 (issue 13): the round 30 model runner (Round30Model.ps1, dot-sourced here) extended where round 30 left gaps:
# - THP: aligned 2 MiB regions (MADV_HUGEPAGE at mmap or not), MADV_HUGEPAGE / MADV_NOHUGEPAGE on any part of any
#   mapping, MADV_COLLAPSE and splits of whole regions, and the partial mprotect/munmap/madvise/mremap that split a huge
#   page, under the seed's THP mode (never, madvise, always) on every profile; on the real process the same with
#   sdtarget's mapthp / madvise hugepage|nohugepage|collapse, whatever the host's mode.
# - Files: MAP_PRIVATE and MAP_SHARED of the same (emulated or real) file, writes through either (a private write copies
#   the page; an un-copied page shows what the file holds now, a copied one does not), MADV_DONTNEED dropping a copy,
#   pwrite(2) into the real file underneath, the real file truncated (every page past its end, a copy too, is the file's). A page of a named file that is not present is the file's and in no image
#   (README, "the file's: in no image"): the model asks the page map which file pages are present when a save reads.
# - Receive: every image of chains A and B (emulated and real) is received (Receive-MemoryImage, increments on their received parents),
#   some first through a stream cut short (which must fail with a SoftDirty ErrorId and leave nothing, or, cut where
#   nothing was missing, verify), and every received image restores to the model.
# - A per-operation timeout: a sequence runs in a runspace of its own, watched; an operation that runs longer than
#   SOFTDIRTY_R31MODEL_OPTIMEOUT seconds (default 120) is a finding named by its step and operation, shrunk.
# - Round 33: with -ForkAdvice, WipeOnFork/KeepOnFork/DontFork/DoFork of runs of anonymous pages; fork applies them to the
#   child's model (a wiped page reads zero, a DontFork page is not there) and checks the child emulator says the same.
# Dot-sourced by Security.Round31.Model.Tests.ps1; alone:
#   dotnet pwsh -NoProfile -c 'Import-Module ./out/SoftDirty/SoftDirty.psd1; Import-Module ./tests/Pester/SoftDirty.TestSupport.psm1;
#     . tests/Pester/Round31Model.ps1; Invoke-R31Guarded Invoke-R31ModelSeed @{ Seed = 7; Root = "/tmp/x" }'

. (Join-Path $PSScriptRoot 'Round30Model.ps1')
Set-StrictMode -Version 3.0

$script:R31Here = $PSScriptRoot
$script:R31Slots = 4

# ---------------------------------------------------------------------------------------------------------------
# The model, with files. An entry of a private mapping of a file has FObj (the file's shared object) and FIdx; its Key is
# $null until the process writes the page (copy-on-write), and then its own. Replaces round 30's functions of the same
# names (dot-sourced above), which know only anonymous memory.

function Copy-R30Entry($e) {
    $c = @{}
    foreach ($k in $e.Keys) { $c[$k] = $e[$k] }
    $c
}

function Get-R30Key($ctx, $e) {
    if ($e.Obj -lt 0) {
        if ($null -eq $e.Key -and $e.ContainsKey('FObj')) { $o = $ctx.Shared[$e.FObj]; return $(if ($o.ContainsKey($e.FIdx)) { $o[$e.FIdx] } else { Get-R30FillKey 0 }) }
        return $e.Key
    }
    $o = $ctx.Shared[$e.Obj]
    if ($o.ContainsKey($e.Idx)) { $o[$e.Idx] } else { Get-R30FillKey 0 }
}

function Get-R31Name($ctx, $e) {
    if ($e.ContainsKey('File')) { return $e.File }
    if ($e.Obj -ge 0) { '/dev/zero' } else { '[anon]' }
}

# Whether a page is the file's (not the process's own): a page of a shared file mapping, or an un-copied page of a private one.
function Test-R31FilePage($e) { $e.ContainsKey('File') -and ($e.Obj -ge 0 -or $null -eq $e.Key) }

# What the model says the process holds when a save reads it: file pages that are not present are in no image (zero).
function Get-R30Snapshot($ctx, $map = $ctx.Map, [string] $Select) {
    $s = [System.Collections.Generic.Dictionary[uint64, string]]::new()
    $absent = Get-R31AbsentFilePages $ctx $map
    foreach ($kv in $map.GetEnumerator()) {
        $e = $kv.Value
        if ($Select -and $Select -ne (Get-R31Name $ctx $e)) { continue }
        $key = if ($absent.Contains($kv.Key)) { Get-R30FillKey 0 } else { Get-R30Key $ctx $e }
        $s[$kv.Key] = '{0}|{1}|{2}' -f $e.Prot, $(if ($e.Obj -ge 0) { 's' } else { 'p' }), $key
    }
    $s
}

function Get-R31AbsentFilePages($ctx, $map) {
    $absent = [System.Collections.Generic.HashSet[uint64]]::new()
    $proc = if ($ctx.Child -and [object]::ReferenceEquals($map, $ctx.ChildMap)) { $ctx.Child } else { $ctx.Emu }
    foreach ($kv in $map.GetEnumerator()) {
        if (-not (Test-R31FilePage $kv.Value)) { continue }
        $pm = @($proc | Get-PageMap -Address $kv.Key -Length $script:R30PageSize -ErrorAction Stop)
        if (-not $pm.Count -or -not $pm[0].Present) { $null = $absent.Add($kv.Key) }
    }
    , $absent
}

# ---------------------------------------------------------------------------------------------------------------
# Generation: round 30's operations, and THP regions, THP advice and files.

function New-R31Op($ctx, [System.Random] $r) {
    # Round 33: fork advice (MADV_WIPEONFORK/KEEPONFORK/DONTFORK/DOFORK) on a run of pages, drawn only when the seed asks
    # for it (Invoke-R31ModelSeed -ForkAdvice): without it a seed draws what it drew before.
    if ($ctx.R33ForkAdvice -and $r.Next(8) -eq 0) {
        $run = Get-R30MappedRun $ctx $r 40
        if ($run) { return @{ Op = 'madvise'; Addr = $run.Addr; Pages = $run.Pages; Advice = @('WipeOnFork', 'WipeOnFork', 'KeepOnFork', 'DontFork', 'DoFork')[$r.Next(5)] } }
    }
    $w = $r.Next(100)
    $slot = $script:R30Base + [uint64](512 * $script:R30PageSize * $r.Next(0, $script:R31Slots))
    if ($w -lt 8 -or ($w -lt 12 -and -not $ctx.Map.Count)) {
        $units = if ($r.Next(4) -eq 0) { 2 } else { 1 }
        $at = [Math]::Min($script:R31Slots - $units, [int](($slot - $script:R30Base) / (512 * $script:R30PageSize)))
        return @{ Op = 'map'; Addr = $script:R30Base + [uint64](512 * $script:R30PageSize * $at); Pages = 512 * $units; Prot = 3; Shared = $false; Huge = ($r.Next(2) -eq 0) }
    }
    if ($w -lt 20) {
        # THP advice: a whole region, or a run of pages in one (a split of the VMA, and of a huge page the cut crosses).
        $adv = @('HugePage', 'NoHugePage', 'Collapse', 'Collapse', 'Split')[$r.Next(5)]
        if ($adv -in 'Collapse', 'Split' -or $r.Next(2) -eq 0) { return @{ Op = 'madvise'; Addr = $slot; Pages = 512; Advice = $adv } }
        $run = Get-R30MappedRun $ctx $r 40
        if (-not $run) { return @{ Op = 'madvise'; Addr = $slot; Pages = 512; Advice = $adv } }
        return @{ Op = 'madvise'; Addr = $run.Addr; Pages = $run.Pages; Advice = $adv }
    }
    if ($w -lt 27) {
        # A file mapped privately or shared (a few files, so that mappings of one file meet), at an offset.
        $pages = $r.Next(1, 9)
        $addr = Get-R30FreeSlot $ctx $r $pages -AllowOverlap:($r.Next(6) -eq 0)
        if ($null -eq $addr) { return @{ Op = 'read'; Addr = $script:R30Base; Pages = 1 } }
        return @{ Op = 'fmap'; Addr = $addr; Pages = $pages; Prot = @(3, 3, 3, 1)[$r.Next(4)]; Shared = ($r.Next(5) -lt 2); File = $r.Next(3); Offset = $r.Next(0, 6) }
    }
    if ($w -lt 34) {
        # A write where a file is mapped (shared: the file changes under the private mappings; private: a copy).
        $files = @($ctx.Map.Keys | Where-Object { $ctx.Map[$_].ContainsKey('File') -and $ctx.Map[$_].Prot -eq 3 })
        if ($files.Count) {
            $p = [uint64]$files[$r.Next($files.Count)]
            return @{ Op = 'write'; Target = 'parent'; Addr = $p; Length = [uint64]$script:R30PageSize; Value = [byte]$r.Next(1, 256); Pages = 1 }
        }
    }
    New-R30Op $ctx $r
}

# ---------------------------------------------------------------------------------------------------------------
# Execution: the new operations, and round 30's with what files change in them.

function Test-R31AnyFile($map, [uint64] $Addr, [int] $Pages) {
    foreach ($p in Get-R30Pages $Addr $Pages) { if ($map.ContainsKey($p) -and $map[$p].ContainsKey('File')) { return $true } }
    $false
}

function Invoke-R31Op($ctx, $op) {
    $e = $ctx.Emu
    switch ($op.Op) {
        'sleep' {
            # The runner's own check: an operation that does not end (Invoke-R31Guarded must name it).
            Start-Sleep -Seconds $op.Seconds
            return 'done'
        }
        'fmap' {
            if (-not $ctx.Files.ContainsKey($op.File)) { $ctx.Files[$op.File] = $ctx.NextObj++; $ctx.Shared[$ctx.Files[$op.File]] = [System.Collections.Generic.Dictionary[int, string]]::new() }
            $obj = $ctx.Files[$op.File]
            $path = "/r31/file$($op.File)"
            $len = [uint64]($op.Pages * $script:R30PageSize)
            $null = $e | Add-EmulatedMapping -Address $op.Addr -Length $len -Fixed -Protection $op.Prot -Shared:$op.Shared -Path $path -Offset ([uint64]($op.Offset * $script:R30PageSize)) -ErrorAction Stop
            Remove-R30Range $ctx.Map $op.Addr $op.Pages
            $i = 0
            foreach ($p in Get-R30Pages $op.Addr $op.Pages) {
                $x = if ($op.Shared) { New-R30Entry $op.Prot $obj ($op.Offset + $i) $null } else { New-R30Entry $op.Prot -1 0 $null }
                $x.File = $path
                # (New-R30Entry's [string] makes $null an empty string: un-copied is $null.)
                if (-not $op.Shared) { $x.FObj = $obj; $x.FIdx = $op.Offset + $i; $x.Key = $null }
                $ctx.Map[$p] = $x; $i++
            }
            return 'done'
        }
        'map' {
            if (-not ($op.ContainsKey('Huge') -and $op.Huge)) { return Invoke-R30Op $ctx $op }
            $null = $e | Add-EmulatedMapping -Address $op.Addr -Length ([uint64]($op.Pages * $script:R30PageSize)) -Fixed -Protection $op.Prot -HugePage -ErrorAction Stop
            Remove-R30Range $ctx.Map $op.Addr $op.Pages
            foreach ($p in Get-R30Pages $op.Addr $op.Pages) { $ctx.Map[$p] = New-R30Entry $op.Prot -1 0 (Get-R30FillKey 0) }
            return 'done'
        }
        'madvise' {
            if ($op.Advice -in 'WipeOnFork', 'KeepOnFork', 'DontFork', 'DoFork') { return Invoke-R33ForkAdvice $ctx $op }
            if ($op.Advice -in 'HugePage', 'NoHugePage') {
                if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
                $e | Invoke-EmulatedMadvise -Address $op.Addr -Length ([uint64]($op.Pages * $script:R30PageSize)) -Advice $op.Advice -ErrorAction Stop
                return 'done'
            }
            if (Test-R31AnyFile $ctx.Map $op.Addr $op.Pages) {
                # MADV_FREE and guards are for anonymous memory here; DONTNEED drops a private copy (the file shows again).
                if ($op.Advice -notin 'DontNeed', 'PageOut', 'WillNeed') { return 'skip' }
                $r = Invoke-R30Op $ctx $op
                if ($op.Advice -eq 'DontNeed' -and $r -eq 'done') {
                    foreach ($p in Get-R30Pages $op.Addr $op.Pages) { $x = $ctx.Map[$p]; if ($x.ContainsKey('FObj')) { $x.Key = $null } }
                }
                return $r
            }
        }
        'move' {
            # A grown private file mapping maps more of the file: round 30's move makes anonymous zeros there.
            if ($op.NewPages -gt $op.Pages -and (Test-R31AnyFile $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
            # The grown part of a moved VMA has its flags, fork advice included (round 30's move makes fresh entries there).
            $lastPage = $op.Addr + [uint64](($op.Pages - 1) * $script:R30PageSize)
            $last = if ($ctx.Map.ContainsKey($lastPage)) { $ctx.Map[$lastPage] }
            $r = Invoke-R30Op $ctx $op
            if ($r -eq 'done' -and $last -and $op.NewPages -gt $op.Pages) {
                for ($i = $op.Pages; $i -lt $op.NewPages; $i++) {
                    $x = $ctx.Map[$op.NewAddr + [uint64]($i * $script:R30PageSize)]
                    $x['Wipe'] = [bool]$last['Wipe']; $x['DontCopy'] = [bool]$last['DontCopy']
                }
            }
            return $r
        }
        'workload' { if (Test-R31AnyFile $ctx.Map $op.Addr $op.Pages) { return 'skip' } }
        'fork' {
            # What fork gives the child of memory with fork advice: nothing of a DontFork page, a WipeOnFork page empty.
            $r = Invoke-R30Op $ctx $op
            if ($r -ne 'skip' -and $ctx.ChildMap) {
                $maps = $null
                foreach ($p in @($ctx.ChildMap.Keys)) {
                    $x = $ctx.ChildMap[$p]
                    if ($x['DontCopy']) {
                        $null = $ctx.ChildMap.Remove($p)
                        if ($null -eq $maps) { $maps = @($ctx.Child | Get-MemoryMapping -ErrorAction Stop) }
                        if (@($maps | Where-Object { $_.Start -le $p -and $p -lt $_.End }).Count) { throw "fork: the child has 0x$($p.ToString('x')), which DontFork left out" }
                    } elseif ($x['Wipe']) {
                        $x.Key = Get-R30FillKey 0; $x.Freed = $false
                        if (@(Get-PageMap -Emulator $ctx.Child -Address $p -Length $script:R30PageSize -ErrorAction Stop)[0].Present) { throw "fork: the child's page 0x$($p.ToString('x')) of WipeOnFork memory is present" }
                    }
                }
            }
            return $r
        }
        'clear' { if ($op.How -in 'MigrateWorkload', 'WatchWorkload' -and (Test-R31AnyFile $ctx.Map $op.Addr $op.Pages)) { return 'skip' } }
        'save' {
            $before = $ctx.Checked.Saves
            $r = Invoke-R30Op $ctx $op
            if ($ctx.Checked.Saves -gt $before -and $op.Chain -ne 'C') { Invoke-R31Receive $ctx $ctx.Chains[$op.Chain].Images[-1] $op }
            return $r
        }
    }
    Invoke-R30Op $ctx $op
}

# The image's files as a stream (a file name, then its bytes in chunks), as Receive-MemoryImage takes it.
function Get-R31Stream([string] $Image, [int] $Chunk) {
    $list = [System.Collections.Generic.List[object]]::new()
    foreach ($f in Get-ChildItem -LiteralPath $Image -File | Sort-Object Name) {
        $list.Add($f.Name)
        $bytes = [IO.File]::ReadAllBytes($f.FullName)
        for ($at = 0; $at -lt $bytes.Length; $at += $Chunk) {
            $part = [byte[]]::new([Math]::Min($Chunk, $bytes.Length - $at))
            [Array]::Copy($bytes, $at, $part, 0, $part.Length)
            $list.Add($part)
        }
    }
    , $list
}

# Receives an image beside its received parents; sometimes first a stream cut short, which must fail cleanly and leave
# nothing (or, where the cut left nothing out, give the image).
function Invoke-R31Receive($ctx, $img, $op, [scriptblock] $Assert = { param($c, $path, $i) Assert-R30Image $c $path $i.Snapshot }) {
    $name = Split-Path -Leaf $img.Path
    $dest = Join-Path $ctx.ReceiveRoot $name
    $stream = Get-R31Stream $img.Path 65536
    $r = [System.Random]::new($stream.Count * 7919 + $ctx.Checked.Saves)
    if ($r.Next(3) -eq 0 -and $stream.Count -gt 1) {
        $cut = $r.Next(1, $stream.Count)
        $failed = $null
        try { $null = $stream.GetRange(0, $cut).ToArray() | Receive-MemoryImage -Path $dest -ErrorAction Stop }
        catch { $failed = Assert-R30CleanError $_ "a receive of $name cut after $cut of $($stream.Count) objects" }
        $ctx.Checked.InterruptedReceives++
        if ($failed) {
            $ctx.Errors["receive:$failed"] = 1 + [int]$ctx.Errors["receive:$failed"]
            if (Test-Path -LiteralPath $dest) { throw "a receive of $name cut short ($failed) left $dest behind" }
        } else {
            & $Assert $ctx $dest $img
            $ctx.Checked.Receives++
            return
        }
    }
    # An image that says it is incomplete (shared memory an unprivileged save could not read: documented) is not a
    # verified image, and neither is an increment on one not received: refused, cleanly and leaving nothing, or received.
    $mayFail = ($img.ContainsKey('Unreadable') -and $img.Unreadable -gt 0) -or $ctx.NotReceived.Count -gt 0
    try { $null = $stream.ToArray() | Receive-MemoryImage -Path $dest -ErrorAction Stop }
    catch {
        $failed = Assert-R30CleanError $_ "a receive of $name"
        if (-not $mayFail) { throw }
        if (Test-Path -LiteralPath $dest) { throw "a refused receive of $name ($failed) left $dest behind" }
        $ctx.Errors["receive:$failed"] = 1 + [int]$ctx.Errors["receive:$failed"]
        $null = $ctx.NotReceived.Add($name)
        return
    }
    & $Assert $ctx $dest $img
    $ctx.Checked.Receives++
    if (-not $op.Full -and $r.Next(4) -eq 0) {
        # An increment alone, without its parent beside it: refused, nothing left.
        $lone = Join-Path $ctx.Root ('lone{0}' -f $ctx.Saves)
        $null = New-Item -ItemType Directory -Path $lone
        $failed = $null
        try { $null = $stream.ToArray() | Receive-MemoryImage -Path (Join-Path $lone $name) -ErrorAction Stop } catch { $failed = Assert-R30CleanError $_ "a receive of $name without its parent" }
        if ($failed) { $ctx.Errors["receive:$failed"] = 1 + [int]$ctx.Errors["receive:$failed"] }
        if (-not $failed -and (Test-MemoryImage -Path $img.Path -Detailed).Valid -and @(Get-ChildItem -LiteralPath $img.Path -Filter manifest.json).Count) {
            # A full image of a selection may need no parent; one that names a parent must not arrive without it.
            $manifest = Get-Content -Raw -LiteralPath (Join-Path $img.Path 'manifest.json') | ConvertFrom-Json
            if ($manifest.PSObject.Properties['Parent'] -and $manifest.Parent) { throw "the increment $name was received without its parent" }
        }
        Remove-Item -LiteralPath $lone -Recurse -Force
    }
}

# Round 33: MADV_WIPEONFORK/KEEPONFORK/DONTFORK/DOFORK of a run of pages (anonymous memory only here: WipeOnFork of shared
# memory is EINVAL, and files are left to round 31's cases). The page's entry remembers the advice; 'fork' applies it.
function Invoke-R33ForkAdvice($ctx, $op) {
    if (Test-R31AnyFile $ctx.Map $op.Addr $op.Pages) { return 'skip' }
    if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages -Private:($op.Advice -eq 'WipeOnFork'))) { return 'skip' }
    $ctx.Emu | Invoke-EmulatedMadvise -Address $op.Addr -Length ([uint64]($op.Pages * $script:R30PageSize)) -Advice $op.Advice -ErrorAction Stop
    foreach ($p in Get-R30Pages $op.Addr $op.Pages) {
        $x = $ctx.Map[$p]
        switch ($op.Advice) {
            'WipeOnFork' { $x['Wipe'] = $true }
            'KeepOnFork' { $x['Wipe'] = $false }
            'DontFork' { $x['DontCopy'] = $true }
            'DoFork' { $x['DontCopy'] = $false }
        }
    }
    'done'
}

function New-R31Context([string] $Root, [string] $Kernel, [bool] $NoSoftDirty, [string] $Thp) {
    $ctx = New-R30Context $Root $Kernel $NoSoftDirty $Thp
    $ctx.Files = @{}
    $ctx.ReceiveRoot = Join-Path $Root 'received'
    $null = New-Item -ItemType Directory -Path $ctx.ReceiveRoot
    $ctx.Checked.InterruptedReceives = 0
    $ctx.NotReceived = [System.Collections.Generic.HashSet[string]]::new()
    $ctx.R33ForkAdvice = $false
    $ctx
}

# Where a watched run says what it is doing (Invoke-R31Guarded's runspace sets it).
$global:R31Watch = $null

function Set-R31Step([int] $Step, $Op, $Ops) {
    if ($global:R31Watch) { $global:R31Watch.Step = $Step; $global:R31Watch.Op = $Op; $global:R31Watch.Ops = $Ops; $global:R31Watch.Since = [DateTime]::UtcNow }
}

# Runs a list of operations (a shrunk or named sequence).
function Invoke-R31ModelOps([object[]] $Ops, [string] $Root, [string] $Kernel = '6.18', [bool] $NoSoftDirty = $false, [string] $Thp = 'Never') {
    $ctx = New-R31Context $Root $Kernel $NoSoftDirty $Thp
    for ($i = 0; $i -lt $Ops.Count; $i++) {
        $op = $Ops[$i]
        Set-R31Step $i $op $Ops[0..$i]
        try { $r = Invoke-R31Op $ctx $op }
        catch { throw [System.Exception]::new("step $i $(Format-R30Op $op): $($_.Exception.Message)", $_.Exception) }
        if ($r -eq 'skip') { $ctx.Checked.Skipped++ } else { $ctx.Checked.Ops++ }
    }
    foreach ($c in $ctx.Chains.Values) { foreach ($img in $c.Images) { Assert-R30Image $ctx $img.Path $img.Snapshot } }
    $ctx
}

function Invoke-R31ModelSeed([int] $Seed, [string] $Root, [int] $Length = 40, [switch] $ForkAdvice) {
    $s = Get-R30SeedSetup $Seed
    $ctx = New-R31Context $Root $s.Kernel $s.NoSoftDirty $s.Thp
    $ctx.R33ForkAdvice = [bool]$ForkAdvice
    $ops = [System.Collections.Generic.List[object]]::new()
    try {
        for ($i = 0; $i -lt $Length; $i++) {
            $op = New-R31Op $ctx $s.Random
            $ops.Add($op)
            Set-R31Step $i $op $ops.ToArray()
            $r = Invoke-R31Op $ctx $op
            if ($r -eq 'skip') { $ctx.Checked.Skipped++ } else { $ctx.Checked.Ops++; Add-R30Count $ctx $op $r }
        }
        $ops.Add(@{ Op = 'save'; Chain = 'A'; Full = $false; Method = 'Auto'; Verify = $false; Emulator = $true })
        $null = Invoke-R31Op $ctx $ops[-1]
        foreach ($c in $ctx.Chains.Values) { foreach ($img in $c.Images) { Assert-R30Image $ctx $img.Path $img.Snapshot } }
    } catch {
        $err = [System.Exception]::new("seed $Seed (kernel $($s.Kernel)$(if ($s.NoSoftDirty) { ', no soft-dirty' }), THP $($s.Thp)), step $($ops.Count - 1): $($_.Exception.Message)", $_.Exception)
        $err.Data['Ops'] = $ops.ToArray(); $err.Data['Kernel'] = $s.Kernel; $err.Data['NoSoftDirty'] = $s.NoSoftDirty; $err.Data['Thp'] = $s.Thp
        throw $err
    }
    $ctx
}

# ---------------------------------------------------------------------------------------------------------------
# The per-operation timeout. Invoke-R31Guarded runs a command of this file in a runspace of its own and watches the step
# it is at; one step longer than the timeout is a hang: the runspace is told to stop (a cmdlet that never returns is left
# behind, its thread only), and the error names the step and the operation (Data: Ops up to it, Hung).

function Get-R31OpTimeout { if ($env:SOFTDIRTY_R31MODEL_OPTIMEOUT) { [double]$env:SOFTDIRTY_R31MODEL_OPTIMEOUT } else { 120 } }

function Invoke-R31Guarded([string] $Command, [hashtable] $Arguments, [double] $TimeoutSeconds = (Get-R31OpTimeout)) {
    $watch = [hashtable]::Synchronized(@{ Step = -1; Op = $null; Ops = @(); Since = [DateTime]::UtcNow })
    $rs = [runspacefactory]::CreateRunspace()
    $rs.Open()
    $ps = [powershell]::Create()
    $ps.Runspace = $rs
    $null = $ps.AddScript({
            param($Module, $Support, $Runner, $Watch, $Command, $Arguments)
            Import-Module $Module -ErrorAction Stop
            Import-Module $Support -ErrorAction Stop
            . $Runner
            $global:R31Watch = $Watch
            try { , (& $Command @Arguments) } catch { @{ R31Error = $_.Exception } }
        }).AddArgument((Get-Module SoftDirty).Path).AddArgument((Join-Path $script:R31Here 'SoftDirty.TestSupport.psm1')).AddArgument((Join-Path $script:R31Here 'Round31Model.ps1')).AddArgument($watch).AddArgument($Command).AddArgument($Arguments)
    $handle = $ps.BeginInvoke()
    $hung = $false
    while (-not $handle.AsyncWaitHandle.WaitOne(100)) {
        if ($watch.Step -ge 0 -and ([DateTime]::UtcNow - $watch.Since).TotalSeconds -gt $TimeoutSeconds) { $hung = $true; break }
    }
    if ($hung) {
        $step = $watch.Step; $op = $watch.Op; $ops = @($watch.Ops)
        $null = $ps.BeginStop($null, $null)
        $err = [System.Exception]::new("step $step did not end within $TimeoutSeconds s (a hang): $(Format-R30Op $op)")
        $err.Data['Ops'] = $ops; $err.Data['Hung'] = $step
        throw $err
    }
    try { $out = @($ps.EndInvoke($handle)) } finally { $ps.Dispose(); $rs.Dispose() }
    $res = $out[-1]
    if ($res -is [hashtable] -and $res.ContainsKey('R31Error')) { throw $res.R31Error }
    $res
}

# Shrinks a failing sequence (a hang included: every try is watched): removes chunks and single operations while it
# still fails the same way (a hang stays a hang).
function Get-R31ShrunkOps([object[]] $Ops, [string] $Root, [string] $Kernel = '6.18', [bool] $NoSoftDirty = $false, [string] $Thp = 'Never', [int] $Budget = 60, [double] $TimeoutSeconds = (Get-R31OpTimeout), [switch] $Hang) {
    $fails = {
        param($list)
        try { $null = Invoke-R31Guarded Invoke-R31ModelOps @{ Ops = $list; Root = $Root; Kernel = $Kernel; NoSoftDirty = $NoSoftDirty; Thp = $Thp } $TimeoutSeconds; $false }
        catch { -not $Hang -or $_.Exception.Data.Contains('Hung') }
    }
    Get-R30ShrunkList $Ops $fails $Budget
}

# ---------------------------------------------------------------------------------------------------------------
# The real process (round 30's sdtarget runner) with THP regions and files. An entry of a file mapping has File (its
# path), FIdx and, private, Cow (written by the process: its own copy, B). $ctx.Files[path] = index -> byte; pages
# sdtarget adds to a file (map extends it) are zeros.

function Get-R30RealSnapshot($ctx) {
    $s = [System.Collections.Generic.Dictionary[uint64, string]]::new()
    foreach ($kv in $ctx.Map.GetEnumerator()) {
        $e = $kv.Value
        $b = $e.B
        if ($e.ContainsKey('File') -and ($e.Shared -or -not $e.Cow)) {
            # The file's page: in no image where it is not present (zero), else what the file holds.
            $pm = @(Get-PageMap -Id $ctx.Target.Id -Address $kv.Key -Length $script:R30PageSize -ErrorAction Stop)
            $f = $ctx.Files[$e.File]
            $b = if (-not $pm.Count -or -not $pm[0].Present) { [byte]0 } elseif ($f.ContainsKey($e.FIdx)) { $f[$e.FIdx] } else { [byte]0 }
        }
        $s[$kv.Key] = '{0}|{1}|{2}' -f $e.Prot, $(if ($e.Shared) { 's' } else { 'p' }), (Get-R30ByteKey $b)
    }
    $s
}

function Get-R31RealRegionRun($ctx, [System.Random] $r) {
    if (-not $ctx.Regions.Count) { return $null }
    $g = $ctx.Regions[$r.Next($ctx.Regions.Count)]
    if ($r.Next(2) -eq 0) { return @{ Addr = $g.Addr; Pages = $g.Pages } }
    $first = $r.Next(0, $g.Pages)
    @{ Addr = $g.Addr + [uint64]($first * $script:R30PageSize); Pages = [Math]::Min($g.Pages - $first, $r.Next(1, 600)) }
}

function New-R31RealOp($ctx, [System.Random] $r) {
    $w = $r.Next(100)
    if ($w -lt 5 -and $ctx.Regions.Count -lt 3) { return @{ Op = 'thpmap'; Units = $(if ($r.Next(4) -eq 0) { 2 } else { 1 }) } }
    if ($w -lt 11) { return @{ Op = 'fmap'; Pages = $r.Next(1, 9); File = $r.Next(3); Private = ($r.Next(5) -lt 3); Prot = @('rw', 'rw', 'rw', 'ro')[$r.Next(4)] } }
    if ($w -lt 17 -and $ctx.Files.Count) {
        $f = @($ctx.Files.Keys)[$r.Next($ctx.Files.Count)]
        if ($w -lt 14) { return @{ Op = 'pwrite'; File = $f; Index = $r.Next(0, [Math]::Max(1, $ctx.FileSizes[$f])); Value = $r.Next(1, 256) } }
        return @{ Op = 'truncate'; File = $f; Pages = $r.Next(0, [Math]::Max(1, $ctx.FileSizes[$f])) }
    }
    if ($w -lt 40) {
        $run = Get-R31RealRegionRun $ctx $r
        if ($run) {
            $adv = @('hugepage', 'nohugepage', 'collapse', 'collapse', 'dontneed')[$r.Next(5)]
            if ($w -lt 28) { return @{ Op = 'madvise'; Addr = $run.Addr; Pages = $run.Pages; Advice = $adv } }
            # A write into a region (a huge page's worth of pages, a few), or an mprotect or munmap of part of one (a split).
            $k = $r.Next(4)
            if ($k -lt 2) { return @{ Op = 'write'; Addr = $run.Addr; Pages = [Math]::Min($run.Pages, $r.Next(1, 9)); Stride = $(if ($r.Next(2) -eq 0) { 1 } else { 37 }) } }
            if ($k -eq 2) { return @{ Op = 'protect'; Addr = $run.Addr; Pages = [Math]::Min($run.Pages, $r.Next(1, 20)); Prot = @('rw', 'ro')[$r.Next(2)] } }
            return @{ Op = 'unmap'; Addr = $run.Addr; Pages = [Math]::Min($run.Pages, $r.Next(1, 20)) }
        }
    }
    if ($w -lt 46) {
        $files = @($ctx.Map.Keys | Where-Object { $ctx.Map[$_].ContainsKey('File') -and $ctx.Map[$_].Prot -eq 3 })
        if ($files.Count) { return @{ Op = 'write'; Addr = [uint64]$files[$r.Next($files.Count)]; Pages = 1; Stride = 1 } }
    }
    New-R30RealOp $ctx $r
}

# Whether an access would touch a page of a file mapping past the file's end (the target would die of SIGBUS).
function Test-R31PastEnd($ctx, $op) {
    $stride = if ($op.ContainsKey('Stride')) { $op.Stride } else { 1 }
    for ($i = 0; $i -lt $op.Pages; $i++) {
        $p = $op.Addr + [uint64]($i * $script:R30PageSize)
        if ($ctx.Map.ContainsKey($p) -and $ctx.Map[$p].ContainsKey('File') -and $ctx.Map[$p].FIdx -ge $ctx.FileSizes[$ctx.Map[$p].File]) { return $true }
    }
    $false
}

function Invoke-R31RealOp($ctx, $op) {
    $t = $ctx.Target
    switch ($op.Op) {
        'sleep' { Start-Sleep -Seconds $op.Seconds; return 'done' }
        'thpmap' {
            $a = [Convert]::ToUInt64($t.Send("mapthp $($op.Units)"), 16)
            $pages = 512 * $op.Units
            foreach ($p in Get-R30Pages ($a - [uint64]$script:R30PageSize) ($pages + 2)) {
                $guard = $p -lt $a -or $p -ge $a + [uint64]($pages * $script:R30PageSize)
                $ctx.Map[$p] = @{ Prot = $(if ($guard) { 0 } else { 3 }); Shared = $false; B = [byte]0; Guard = $guard }
                $ctx.Tracked[$p] = 1
            }
            $ctx.Regions.Add(@{ Addr = $a; Pages = $pages })
            return 'done'
        }
        'fmap' {
            $path = Join-Path $ctx.Root "file$($op.File)"
            if (-not $ctx.Files.ContainsKey($path)) { $ctx.Files[$path] = @{}; $ctx.FileSizes[$path] = 0 }
            $a = [Convert]::ToUInt64($t.Send("map $($op.Pages) $(if ($op.Private) { 'private' } else { 'file' }) `"$path`" $($op.Prot)"), 16)
            $ctx.FileSizes[$path] = [Math]::Max($ctx.FileSizes[$path], $op.Pages)
            $prot = ConvertTo-R30RealProt $op.Prot
            $i = -1
            foreach ($p in Get-R30Pages ($a - [uint64]$script:R30PageSize) ($op.Pages + 2)) {
                $guard = $p -lt $a -or $p -ge $a + [uint64]($op.Pages * $script:R30PageSize)
                $ctx.Map[$p] = if ($guard) { @{ Prot = 0; Shared = $false; B = [byte]0; Guard = $true } } else { @{ Prot = $prot; Shared = -not $op.Private; B = [byte]0; Guard = $false; File = $path; FIdx = $i; Cow = $false } }
                $ctx.Tracked[$p] = 1
                $i++
            }
            return 'done'
        }
        'pwrite' {
            if (-not $ctx.Files.ContainsKey($op.File) -or $op.Index -ge $ctx.FileSizes[$op.File]) { return 'skip' }
            $null = $t.Send("pwrite `"$($op.File)`" $($op.Index) $($op.Value)")
            $ctx.Files[$op.File][$op.Index] = [byte]$op.Value
            return 'done'
        }
        'truncate' {
            # truncate_pagecache unmaps the pages past the new end from every mapping, a private copy included
            # (unmap_mapping_range with even_cows): they are the file's again, and not there (SIGBUS on access).
            if (-not $ctx.Files.ContainsKey($op.File)) { return 'skip' }
            $null = $t.Send("truncate `"$($op.File)`" $($op.Pages)")
            $ctx.FileSizes[$op.File] = $op.Pages
            foreach ($k in @($ctx.Files[$op.File].Keys)) { if ($k -ge $op.Pages) { $ctx.Files[$op.File].Remove($k) } }
            foreach ($x in $ctx.Map.Values) { if ($x.ContainsKey('File') -and $x.File -eq $op.File -and $x.FIdx -ge $op.Pages) { $x.Cow = $false; $x.B = [byte]0 } }
            return 'done'
        }
        'read' { if (Test-R31PastEnd $ctx $op) { return 'skip' } }
        'madvise' {
            if (-not $op.ContainsKey('Advice') -or $op.Advice -eq 'dontneed') {
                $r = Invoke-R30RealOp $ctx $op
                if ($r -eq 'done') { foreach ($p in Get-R30Pages $op.Addr $op.Pages) { if ($ctx.Map[$p].ContainsKey('File')) { $ctx.Map[$p].Cow = $false } } }
                return $r
            }
            if (-not (Test-R30AllMapped $ctx.Map $op.Addr $op.Pages)) { return 'skip' }
            $reply = $t.TrySend(('madvise {0:x} {1} {2}' -f $op.Addr, $op.Pages, $op.Advice))
            if ($reply -match '^OK') { return 'done' }
            # MADV_COLLAPSE may be refused (EINVAL: VM_NOHUGEPAGE, a part of a VMA; EAGAIN, ENOMEM): nothing changes.
            if ($op.Advice -eq 'collapse' -and $reply -match '^ERR (EINVAL|EAGAIN|ENOMEM)') { $ctx.Errors["collapse:$($Matches[1])"] = 1 + [int]$ctx.Errors["collapse:$($Matches[1])"]; return 'refused' }
            throw "sdtarget answered '$reply' to madvise $($op.Advice)"
        }
        'write' {
            if (Test-R31PastEnd $ctx $op) { return 'skip' }
            $r = Invoke-R30RealOp $ctx $op
            if ($r -eq 'done') {
                for ($i = 0; $i -lt $op.Pages; $i += $op.Stride) {
                    $x = $ctx.Map[$op.Addr + [uint64]($i * $script:R30PageSize)]
                    if (-not $x.ContainsKey('File')) { continue }
                    if ($x.Shared) { $ctx.Files[$x.File][$x.FIdx] = $x.B } else { $x.Cow = $true }
                }
            }
            return $r
        }
        'save' {
            # Each image received too (its increments on their received parents), checked as the image itself is.
            $before = $ctx.Checked.Saves
            $r = Invoke-R30RealOp $ctx $op
            if ($ctx.Checked.Saves -gt $before) { Invoke-R31Receive $ctx $ctx.Chains[$op.Chain].Images[-1] $op { param($c, $path, $i) Assert-R30RealImage $c $path $i.Snapshot $i.Unreadable } }
            return $r
        }
        'unmap' {
            $r = Invoke-R30RealOp $ctx $op
            foreach ($g in @($ctx.Regions)) { if ($op.Addr -le $g.Addr -and $op.Addr + [uint64]($op.Pages * $script:R30PageSize) -ge $g.Addr + [uint64]($g.Pages * $script:R30PageSize)) { $null = $ctx.Regions.Remove($g) } }
            return $r
        }
    }
    Invoke-R30RealOp $ctx $op
}

function Invoke-R31RealSeed([int] $Seed, [string] $Root, [int] $Length = 30) {
    if (Test-Path -LiteralPath $Root) { Remove-Item -LiteralPath $Root -Recurse -Force }
    $null = New-Item -ItemType Directory -Path $Root
    $r = [System.Random]::new($Seed)
    $ctx = @{
        Root = $Root; Target = (Start-TestTarget); Forks = 0
        Map = [System.Collections.Generic.Dictionary[uint64, object]]::new(); Tracked = @{}; Files = @{}; FileSizes = @{}
        Regions = [System.Collections.Generic.List[object]]::new()
        Chains = @{ A = @{ Images = [System.Collections.Generic.List[object]]::new() }; B = @{ Images = [System.Collections.Generic.List[object]]::new() } }
        Saves = 0; Restores = 0; Errors = @{}; Counts = @{}
        Checked = @{ Saves = 0; FileRestores = 0; Ops = 0; Skipped = 0; Incomplete = 0; Receives = 0; InterruptedReceives = 0 }
        ReceiveRoot = Join-Path $Root 'received'; NotReceived = [System.Collections.Generic.HashSet[string]]::new()
    }
    $null = New-Item -ItemType Directory -Path $ctx.ReceiveRoot
    $ops = [System.Collections.Generic.List[object]]::new()
    try {
        for ($i = 0; $i -lt $Length; $i++) {
            $op = New-R31RealOp $ctx $r
            $ops.Add($op)
            Set-R31Step $i $op $ops.ToArray()
            $res = Invoke-R31RealOp $ctx $op
            if ($res -eq 'skip') { $ctx.Checked.Skipped++ } else { $ctx.Checked.Ops++; Add-R30Count $ctx $op $res }
        }
        $ops.Add(@{ Op = 'save'; Chain = 'A'; Full = $false; Method = 'Auto'; Verify = $false })
        $null = Invoke-R31RealOp $ctx $ops[-1]
        foreach ($c in $ctx.Chains.Values) { foreach ($img in $c.Images) { Assert-R30RealImage $ctx $img.Path $img.Snapshot $img.Unreadable } }
    } catch {
        $text = ($ops | ForEach-Object { Format-R30Op $_ }) -join "`n"
        $err = [System.Exception]::new("real process, seed $Seed, step $($ops.Count - 1): $($_.Exception.Message)`noperations:`n$text", $_.Exception)
        $err.Data['Ops'] = $ops.ToArray()
        throw $err
    } finally {
        Stop-TestTarget $ctx.Target
    }
    $ctx
}
