<#
Crash states of a folder from a syscall trace (round 26, Crash): what a POSIX file system may hold after a power loss at
any moment of the traced commands, in the manner of ALICE (Pillai et al., OSDI 2014). The trace is strace -f -yy -s 0 of
openat (O_CREAT), mkdirat, pwrite64/write, ftruncate, fsync/fdatasync, renameat/renameat2 and unlinkat under one folder.
The model: a file's data is durable up to its last fsync; a folder's entries (made, removed, renamed) up to its last
fsync; what came after may be lost, a file's writes as a prefix in order (optionally with its new size but zeros for the
data: metadata before data), a folder's entry changes as a prefix in order (a rename is one step: atomic). Files are
written once here, so a written range's bytes are the final file's; a file removed before the end reads as a pattern.
#>

Set-StrictMode -Version Latest

# The trace's lines, joined where strace split a call between threads (<unfinished ...> / <... NAME resumed>).
function Join-StraceLine([string[]] $Lines) {
    $open = @{}
    foreach ($l in $Lines) {
        if ($l -match '^(\d+)\s+(.*) <unfinished \.\.\.>$') { $open[$Matches[1]] = "$($Matches[1]) $($Matches[2])"; continue }
        if ($l -match '^(\d+)\s+<\.\.\. \w+ resumed>(.*)$') {
            if ($open.ContainsKey($Matches[1])) { $open[$Matches[1]] + $Matches[2]; $open.Remove($Matches[1]) }
            continue
        }
        $l
    }
}

<#
Reads the trace into steps under $Root: @{ Kind = mkdir|create|write|truncate|sync|rename|unlink|mark; ... }. A file made
under $MarkFolder is a mark (Name: its file name): the moment a traced command returned.
#>
function Read-CrashTrace([string[]] $Lines, [string] $Root, [string] $MarkFolder) {
    $under = { param($p) $p -eq $Root -or $p.StartsWith("$Root/") }
    $pos = @{}
    # (Only lines that name the folders, and the ends of split calls: a pwsh's trace has tens of thousands of others.)
    $mine = $Lines.Where({ $_.Contains($Root) -or ($MarkFolder -and $_.Contains($MarkFolder)) -or $_.Contains(' resumed>') })
    foreach ($l in (Join-StraceLine $mine)) {
        if ($l -notmatch '^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+)(.*)$') { continue }
        $tid, $call, $args_, $ret, $rest = $Matches[1..5]
        if ([long]$ret -lt 0) { continue }
        switch -regex ($call) {
            '^openat$' {
                if ($rest -notmatch '^<([^>]*)>') { break }
                $path = $Matches[1]
                $pos["$tid/$ret"] = 0L
                if ($args_ -notmatch 'O_CREAT') { break }
                if ($MarkFolder -and $path.StartsWith("$MarkFolder/")) { @{ Kind = 'mark'; Name = Split-Path -Leaf $path }; break }
                if (& $under $path) { @{ Kind = 'create'; Path = $path } }
            }
            '^mkdirat$' {
                if ($args_ -match '^\w+<([^>]*)>, "([^"]*)"') {
                    $path = if ($Matches[2].StartsWith('/')) { $Matches[2] } else { "$($Matches[1])/$($Matches[2])" }
                    if (& $under $path) { @{ Kind = 'mkdir'; Path = $path } }
                }
            }
            '^(pwrite64|write)$' {
                if ($args_ -notmatch '^(\d+)<([^>]*)>, [^,]*, (\d+)(?:, (\d+))?$') { break }
                $fd, $path, $off = $Matches[1], $Matches[2], $Matches[4]
                if ($call -eq 'write') { $off = if ($pos.ContainsKey("$tid/$fd")) { $pos["$tid/$fd"] } else { 0L }; $pos["$tid/$fd"] = $off + [long]$ret }
                if ([long]$ret -gt 0 -and (& $under $path)) { @{ Kind = 'write'; Path = $path; Offset = [long]$off; Length = [long]$ret } }
            }
            '^ftruncate$' {
                if ($args_ -match '^\d+<([^>]*)>, (\d+)$' -and (& $under $Matches[1])) { @{ Kind = 'truncate'; Path = $Matches[1]; Size = [long]$Matches[2] } }
            }
            '^(fsync|fdatasync)$' {
                if ($args_ -match '^\d+<([^>]*)>$' -and (& $under $Matches[1])) { @{ Kind = 'sync'; Path = $Matches[1] } }
            }
            '^renameat2?$' {
                if ($args_ -match '^\w+<([^>]*)>, "([^"]*)", \w+<([^>]*)>, "([^"]*)"') {
                    $from = if ($Matches[2].StartsWith('/')) { $Matches[2] } else { "$($Matches[1])/$($Matches[2])" }
                    $to = if ($Matches[4].StartsWith('/')) { $Matches[4] } else { "$($Matches[3])/$($Matches[4])" }
                    if ((& $under $from) -and (& $under $to)) { @{ Kind = 'rename'; From = $from; To = $to } }
                }
            }
            '^unlinkat$' {
                if ($args_ -match '^\w+<([^>]*)>, "([^"]*)"') {
                    $path = if ($Matches[2].StartsWith('/')) { $Matches[2] } else { "$($Matches[1])/$($Matches[2])" }
                    if (& $under $path) { @{ Kind = 'unlink'; Path = $path } }
                }
            }
        }
    }
}

<#
Replays $Steps over the tree $Root had before them (read from $Before, a copy made then) and returns the model:
@{ Points = one crash point per step (its durable and pending state, frozen); Content = inode -> final bytes; Marks }.
#>
function New-CrashModel([object[]] $Steps, [string] $Root, [string] $Before) {
    $inodes = [System.Collections.Generic.List[hashtable]]::new()
    $paths = @{} # path now -> inode
    function NewInode([string] $type) {
        $n = @{ Id = $inodes.Count; Type = $type; Entries = [ordered]@{}; Durable = [ordered]@{}; Pending = [System.Collections.Generic.List[object]]::new()
            Ops = [System.Collections.Generic.List[object]]::new(); Synced = 0; Syncs = 0 }
        $inodes.Add($n); $n
    }
    $rootNode = NewInode 'd'; $paths[$Root] = $rootNode.Id
    $initial = @{}
    function Load([string] $dir, [hashtable] $node) {
        foreach ($i in Get-ChildItem -Force -LiteralPath $dir) {
            $child = NewInode $(if ($i.PSIsContainer) { 'd' } else { 'f' })
            $rel = $i.FullName.Substring($Before.Length)
            $paths["$Root$rel"] = $child.Id
            $node.Entries[$i.Name] = $child.Id; $node.Durable[$i.Name] = $child.Id
            if ($i.PSIsContainer) { Load $i.FullName $child }
            else { $initial[$child.Id] = [IO.File]::ReadAllBytes($i.FullName); $child.Ops.Add(@{ W = 0L; L = $i.Length }); $child.Synced = 1 }
        }
    }
    Load $Before $rootNode
    $points = [System.Collections.Generic.List[object]]::new()
    $current = [System.Collections.Generic.List[object]]::new()
    $seenSig = [System.Collections.Generic.List[string]]::new()
    $marks = @{}
    $entryOp = 0
    function Parent([string] $p) { $paths[(Split-Path $p)] }
    foreach ($s in $Steps) {
        switch ($s.Kind) {
            'mark' { $marks[$s.Name] = $points.Count; continue }
            { $_ -in 'mkdir', 'create' } {
                if ($paths.ContainsKey($s.Path)) { break } # opened again with O_CREAT: nothing new
                $n = NewInode $(if ($s.Kind -eq 'mkdir') { 'd' } else { 'f' })
                $d = $inodes[(Parent $s.Path)]
                $d.Entries[(Split-Path -Leaf $s.Path)] = $n.Id
                $d.Pending.Add(@{ Set = (Split-Path -Leaf $s.Path); To = $n.Id })
                $paths[$s.Path] = $n.Id
            }
            'write' { $inodes[$paths[$s.Path]].Ops.Add(@{ W = $s.Offset; L = $s.Length }) }
            'truncate' { $inodes[$paths[$s.Path]].Ops.Add(@{ T = $s.Size }) }
            'sync' {
                $n = $inodes[$paths[$s.Path]]
                if ($n.Type -eq 'f') { $n.Synced = $n.Ops.Count }
                else { $n.Durable = [ordered]@{} + $n.Entries; $n.Pending.Clear(); $n.Syncs++ }
            }
            'rename' {
                $id = $paths[$s.From]; $d1 = $inodes[(Parent $s.From)]; $d2 = $inodes[(Parent $s.To)]
                $leaf1 = Split-Path -Leaf $s.From; $leaf2 = Split-Path -Leaf $s.To
                $d1.Entries.Remove($leaf1); $d2.Entries[$leaf2] = $id
                # One step, atomic: recorded in the folder it lands in, with the removal from the other.
                $d2.Pending.Add(@{ Set = $leaf2; To = $id; Unset = $leaf1; From = $d1.Id })
                if ($d1.Id -ne $d2.Id) { $d1.Pending.Add(@{ Unset = $leaf1; Only = $id }) }
                foreach ($k in @($paths.Keys)) {
                    if ($k -eq $s.To -or $k.StartsWith("$($s.To)/")) { $paths.Remove($k) }
                }
                foreach ($k in @($paths.Keys)) {
                    if ($k -eq $s.From -or $k.StartsWith("$($s.From)/")) { $paths[$s.To + $k.Substring($s.From.Length)] = $paths[$k]; $paths.Remove($k) }
                }
            }
            'unlink' {
                $d = $inodes[(Parent $s.Path)]; $leaf = Split-Path -Leaf $s.Path
                $d.Entries.Remove($leaf); $d.Pending.Add(@{ Unset = $leaf })
                foreach ($k in @($paths.Keys)) { if ($k -eq $s.Path -or $k.StartsWith("$($s.Path)/")) { $paths.Remove($k) } }
            }
        }
        # The crash point after this step: each folder's durable entries and pending changes, each file's ops and synced count.
        # (A new snapshot only of what changed: a step changes one or two.)
        for ($i = 0; $i -lt $inodes.Count; $i++) {
            $n = $inodes[$i]
            $sig = "$($n.Durable.Count)/$($n.Pending.Count)/$($n.Ops.Count)/$($n.Synced)/$($n.Syncs)"
            if ($i -ge $current.Count) { $current.Add($null); $seenSig.Add('') }
            if ($seenSig[$i] -ne $sig) {
                $current[$i] = @{ Durable = [ordered]@{} + $n.Durable; Pending = $n.Pending.ToArray(); Ops = $n.Ops.Count; Synced = $n.Synced }
                $seenSig[$i] = $sig
            }
        }
        $points.Add($current.ToArray())
    }
    # The final bytes of each file: where it is at the end, else (removed) as it was before, else a pattern.
    $content = @{}
    foreach ($k in $paths.Keys) {
        $n = $inodes[$paths[$k]]
        if ($n.Type -eq 'f') { $content[$n.Id] = [IO.File]::ReadAllBytes($k) }
    }
    foreach ($id in $initial.Keys) { if (-not $content.ContainsKey($id)) { $content[$id] = $initial[$id] } }
    @{ Inodes = $inodes; Points = $points; Content = $content; Marks = $marks; Root = $rootNode.Id }
}

<#
One crash state at point $At, as a tree: @{ Name = @{ Type; Entries | Bytes } }. $Choice says what of the pending changes
survived: 'none', 'all', 'entries' (every folder change, no file data), 'sizes' (every change, file data as zeros), or a
[Random] for a seeded prefix of each folder's and file's pending changes.
#>
function Get-CrashState([hashtable] $Model, [int] $At, $Choice) {
    $frozen = $Model.Points[$At]
    $rnd = if ($Choice -is [Random]) { $Choice } else { $null }
    # Each folder's entries after the crash.
    $entries = @{}
    for ($i = 0; $i -lt $frozen.Count; $i++) {
        $f = $frozen[$i]
        $e = [ordered]@{} + $f.Durable
        $keep = switch ($Choice) { 'none' { 0 } { $_ -in 'all', 'entries', 'sizes' } { $f.Pending.Count } default { $rnd.Next(0, $f.Pending.Count + 1) } }
        for ($j = 0; $j -lt $keep; $j++) {
            $p = $f.Pending[$j]
            if ($p.ContainsKey('Set')) {
                if ($p.ContainsKey('Unset') -and $p.From -eq $i -and $e[$p.Unset] -eq $p.To) { $e.Remove($p.Unset) }
                $e[$p.Set] = $p.To
            }
            elseif (-not $p.ContainsKey('Only') -or $e[$p.Unset] -eq $p.Only) { $e.Remove($p.Unset) }
        }
        $entries[$i] = $e
    }
    # A rename that landed removes the source in its own folder too (atomic).
    for ($i = 0; $i -lt $frozen.Count; $i++) {
        $f = $frozen[$i]
        $keep = $f.Pending.Count
        foreach ($p in $f.Pending) {
            if ($p.ContainsKey('From') -and $p.From -ne $i -and $entries[$i][$p.Set] -eq $p.To -and $entries[$p.From][$p.Unset] -eq $p.To) { $entries[$p.From].Remove($p.Unset) }
        }
    }
    $seen = @{}
    function Build([int] $id) {
        if ($seen.ContainsKey($id)) { return $null } # a folder reachable twice (a rename persisted in one folder only): once
        $seen[$id] = 1
        $n = $Model.Inodes[$id]; $f = $frozen[$id]
        if ($n.Type -eq 'd') {
            $t = [ordered]@{}
            foreach ($k in $entries[$id].Keys) { $c = Build $entries[$id][$k]; if ($null -ne $c) { $t[$k] = $c } }
            return @{ Type = 'd'; Entries = $t }
        }
        $ops = if ($f.Ops -eq 0) { @() } else { $n.Ops.GetRange(0, $f.Ops) }
        $keep = switch ($Choice) { 'none' { $f.Synced } 'entries' { $f.Synced } { $_ -in 'all', 'sizes' } { $f.Ops } default { $rnd.Next($f.Synced, $f.Ops + 1) } }
        $zeros = $Choice -eq 'sizes' -or ($null -ne $rnd -and $rnd.Next(0, 2) -eq 0)
        $size = 0L
        $ranges = [System.Collections.Generic.List[object]]::new()
        $k = 0
        foreach ($o in $ops) {
            if ($k -ge $keep) { break }
            $real = $k -lt $f.Synced -or -not $zeros
            if ($o.ContainsKey('T')) {
                $size = $o.T
                # What lay past the new end is gone (a later growth reads zeros there).
                $ranges = [System.Collections.Generic.List[object]]@($ranges | Where-Object { $_.W -lt $size } | ForEach-Object { @{ W = $_.W; L = [Math]::Min($_.L, $size - $_.W) } })
            }
            else { $size = [Math]::Max($size, $o.W + $o.L); if ($real) { $ranges.Add($o) } }
            $k++
        }
        # The bytes are made only when the state is written (Write-CrashTree); the signature says what they are.
        $sig = [Text.StringBuilder]::new("$id/$size/")
        foreach ($r in $ranges) { $null = $sig.Append($r.W).Append('+').Append($r.L).Append(',') }
        @{ Type = 'f'; Id = $id; Size = $size; Ranges = $ranges.ToArray(); Sig = $sig.ToString() }
    }
    (Build $Model.Root).Entries
}

# A tree's signature (names, sizes, bytes' hash): states that are the same are checked once.
function Get-TreeSignature($Tree) {
    $sb = [Text.StringBuilder]::new()
    function Walk($t, [string] $at) {
        foreach ($k in $t.Keys) {
            $n = $t[$k]
            if ($n.Type -eq 'd') { $null = $sb.Append("$at/$k/;"); Walk $n.Entries "$at/$k" }
            elseif ($n.ContainsKey('Sig')) { $null = $sb.Append("$at/$k=$($n.Sig);") }
            else { $null = $sb.Append("$at/$k=$([Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($n.Bytes)));") }
        }
    }
    Walk $Tree ''
    $sb.ToString()
}

# A file's bytes in a crash state: what its kept writes wrote (the final file's bytes there; a pattern for a file removed), zeros elsewhere.
function Get-CrashBytes([hashtable] $Model, $Node) {
    if ($Node.ContainsKey('Bytes')) { return , $Node.Bytes }
    $bytes = [byte[]]::new($Node.Size)
    $src = $Model.Content[$Node.Id]
    foreach ($r in $Node.Ranges) {
        $len = [Math]::Min($r.L, $Node.Size - $r.W)
        if ($len -le 0) { continue }
        if ($null -eq $src) { [Array]::Fill($bytes, [byte]0x5a, [int]$r.W, [int]$len); continue }
        $len = [Math]::Min($len, $src.Length - $r.W)
        if ($len -gt 0) { [Array]::Copy($src, $r.W, $bytes, $r.W, $len) }
    }
    , $bytes
}

# A tree with each file's bytes (as Read-CrashTree gives it), for signatures that compare with a real folder's.
function ConvertTo-CrashBytesTree([hashtable] $Model, $Tree) {
    $t = [ordered]@{}
    foreach ($k in @($Tree.Keys | Sort-Object)) {
        $n = $Tree[$k]
        $t[$k] = if ($n.Type -eq 'd') { @{ Type = 'd'; Entries = (ConvertTo-CrashBytesTree $Model $n.Entries) } } else { @{ Type = 'f'; Bytes = (Get-CrashBytes $Model $n) } }
    }
    $t
}

# Writes a tree into the folder $Path (made; folders 0700, files 0600).
function Write-CrashTree($Tree, [string] $Path, [hashtable] $Model) {
    $null = [IO.Directory]::CreateDirectory($Path)
    foreach ($k in $Tree.Keys) {
        $n = $Tree[$k]
        if ($n.Type -eq 'd') { Write-CrashTree $n.Entries (Join-Path $Path $k) $Model }
        else { [IO.File]::WriteAllBytes((Join-Path $Path $k), (Get-CrashBytes $Model $n)) }
    }
}

# A folder on disk as a tree (Get-CrashState's form).
function Read-CrashTree([string] $Path) {
    $t = [ordered]@{}
    foreach ($i in Get-ChildItem -Force -LiteralPath $Path | Sort-Object Name) {
        $t[$i.Name] = if ($i.PSIsContainer) { @{ Type = 'd'; Entries = (Read-CrashTree $i.FullName) } } else { @{ Type = 'f'; Bytes = [IO.File]::ReadAllBytes($i.FullName) } }
    }
    $t
}

# What restoring the image folder $Path gives, as a signature; or 'refused:ErrorId' (Test-MemoryImage's first problem, or the error).
function Get-ImageOutcome([string] $Path, [string] $Scratch) {
    try {
        $t = Test-MemoryImage -Path $Path -Detailed -ErrorAction Stop
        if (-not $t.Valid) { return "refused:$(@($t.Problems)[0].Error)" }
        $null = Get-MemoryImage -Path $Path -ErrorAction Stop
        $dest = Join-Path $Scratch "restore-$([guid]::NewGuid().ToString('n'))"
        $null = Restore-MemoryImage -Path $Path -Destination $dest -ErrorAction Stop
        $sig = Get-TreeSignature (Read-CrashTree $dest)
        [IO.Directory]::Delete($dest, $true)
        "valid:$sig"
    }
    catch { "refused:$($_.FullyQualifiedErrorId -replace ',.*')" }
}

<#
Checks every crash point of $Model with the choices 'none', 'all', 'entries', 'sizes' and $Random seeded ones. $Kinds names
each top-level entry: 'image' (an image folder), 'restore' (a restore destination), 'rounds' (a folder of images). $Expect:
name -> the outcome of the real result (Get-ImageOutcome's 'valid:SIG', a restore's tree signature, rounds' per-round
outcomes); $Returned: name -> the mark of its command. $Static: folders copied beside every state checked (parents); $Parents: name -> the names of this state
written beside it (an increment's parent made by the same trace); $Points: only these crash points.
Returns @{ Violations; Outcomes (outcome class -> count); States; Checked }.
#>
function Test-CrashState([hashtable] $Model, [hashtable] $Kinds, [hashtable] $Expect, [hashtable] $Returned, [string[]] $Static, [int] $Random, [int] $Seed, [string] $Scratch, [hashtable] $Parents = @{}, [int[]] $Points) {
    $rnd = [Random]::new($Seed)
    $cache = @{}
    $violations = [System.Collections.Generic.List[string]]::new()
    $outcomes = @{}
    $states = 0
    $groups = @{}
    function Evaluate([string] $base, [string] $name, $node, [string] $kind, $state) {
        # With the parents as this state has them (an increment of an image the same trace made).
        $beside = [ordered]@{}
        foreach ($p in @($Parents[$base])) { if ($p -and $state.Contains($p)) { $beside[$p] = $state[$p] } }
        $group = Get-TreeSignature $beside
        $key = "$kind|$base|$group|$(Get-TreeSignature ([ordered]@{ x = $node }))"
        if ($cache.ContainsKey($key)) { return $cache[$key] }
        $result = if ($node.Entries.Count -eq 0) { 'empty' }
        elseif ($kind -eq 'restore') {
            if (-not $node.Entries.Contains('mappings.json')) { 'unmarked' }
            else { "restored:$(Get-TreeSignature (ConvertTo-CrashBytesTree $Model $node.Entries))" }
        }
        else {
            # A folder per set of parents, made once (the static ones and this state's); each entry written beside them under
            # a name of its own (a parent link is relative to the folder that holds the image, not to the image's name).
            if (-not $groups.ContainsKey($group)) {
                $g = Join-Path $Scratch "g-$($groups.Count)"
                $null = [IO.Directory]::CreateDirectory($g)
                foreach ($s in $Static) { Copy-Item -Recurse -LiteralPath $s -Destination $g }
                Write-CrashTree $beside $g $Model
                $groups[$group] = $g
            }
            $path = Join-Path $groups[$group] "e-$($cache.Count)"
            Write-CrashTree $node.Entries $path $Model
            $r = if ($kind -eq 'image') { Get-ImageOutcome $path $Scratch }
            else { (@(foreach ($r in $node.Entries.Keys) { if ($r -notlike '.*') { "$r=$(Get-ImageOutcome (Join-Path $path $r) $Scratch)" } }) | Sort-Object) -join ' ' }
            [IO.Directory]::Delete($path, $true)
            $r
        }
        $cache[$key] = $result
        $result
    }
    foreach ($at in $(if ($Points) { $Points } else { 0..($Model.Points.Count - 1) })) {
        foreach ($choice in @('none', 'all', 'entries', 'sizes') + @(1..$Random | ForEach-Object { $rnd })) {
            if ($Random -eq 0 -and $choice -is [Random]) { continue }
            $state = Get-CrashState $Model $at $choice
            $states++
            $present = @{}
            foreach ($name in @($state.Keys)) {
                $base = $name; $partial = $false
                if ($name -match '^\.(.+)\.partial-[0-9a-f]{32}$') { $base = $Matches[1]; $partial = $true }
                if (-not $Kinds.ContainsKey($base)) { continue }
                $kind = $Kinds[$base]
                $node = $state[$name]
                if ($node.Type -ne 'd') { $violations.Add("point $at ($choice): $name is a file"); continue }
                $o = Evaluate $base $name $node $kind $state
                $class = switch -regex ($o) { '^valid:|^restored:' { 'whole' } '^refused:' { $o } default { $o -replace '=.*' } }
                if ($kind -eq 'rounds') { $class = 'rounds' }
                $outcomes[$class] = 1 + $(if ($outcomes.ContainsKey($class)) { $outcomes[$class] } else { 0 })
                $done = $Returned.ContainsKey($base) -and $Model.Marks.ContainsKey($Returned[$base]) -and $at -ge $Model.Marks[$Returned[$base]] - 1
                if (-not $partial) { $present[$base] = $o }
                $bad = switch ($kind) {
                    'image' {
                        if ($o -like 'valid:*' -and $o -ne $Expect[$base]) { 'valid but restores different memory' }
                        elseif ($o -like 'refused:*' -and $o -notmatch '^refused:(Image\w+)$') { "refused with $o" }
                        elseif ($done -and -not $partial -and $o -ne $Expect[$base]) { "its save returned, but it is $o" }
                    }
                    'restore' {
                        # (A hidden partial folder of a restore is read by no command: the restore is its destination.)
                        if ($partial) { }
                        elseif ($o -like 'restored:*' -and $o -ne $Expect[$base]) { 'marked complete but different' }
                        elseif ($o -eq 'unmarked') { 'files without mappings.json at the destination' }
                        elseif ($done -and -not $partial -and $o -ne $Expect[$base]) { "its restore returned, but it is $o" }
                    }
                    'rounds' {
                        foreach ($r in ($o -split ' ')) {
                            $rn, $ro = $r -split '=', 2
                            if ($ro -like 'valid:*' -and $ro -ne $Expect["$base/$rn"]) { "round $rn valid but restores different memory" }
                            elseif ($ro -like 'refused:*' -and $ro -notmatch '^refused:(Image\w+)$') { "round $rn refused with $ro" }
                        }
                        if ($done -and -not $partial -and $o -ne $Expect[$base]) { "its migration returned, but it is $o" }
                    }
                }
                if ($bad) { $violations.Add("point $at/$($Model.Points.Count) ($choice): $name $bad") }
            }
            foreach ($base in $Returned.Keys) {
                if ($Model.Marks.ContainsKey($Returned[$base]) -and $at -ge $Model.Marks[$Returned[$base]] - 1 -and -not $present.ContainsKey($base)) {
                    $violations.Add("point $at/$($Model.Points.Count) ($choice): $base returned but is absent")
                }
            }
        }
    }
    @{ Violations = $violations; Outcomes = $outcomes; States = $states; Checked = $cache.Count }
}

Export-ModuleMember -Function Read-CrashTrace, New-CrashModel, Get-CrashState, Get-TreeSignature, Write-CrashTree, Get-CrashBytes, Read-CrashTree, Get-ImageOutcome, Test-CrashState
