# The host side of tests/vm/power-loss.sh: after a power loss of the guest, reads every result that PowerLoss.ps1 announced
# on the console (PL BEGIN/END/FAIL lines) from the disk image, mounted read-only at ROOT (GUESTROOT in the guest), and
# prints one line per result:
#   result <step> <kind> <name> <returned|in-flight> <state> OK|DEFECT [why]
# The rule: an image is absent, refused by Test-MemoryImage with an Image* error id (Get-MemoryImage too, or valid), or
# valid with a restore giving exactly the region the command saved; valid once its command returned. A restore
# destination is absent or the empty folder it was (only while in flight), or complete (mappings.json) with the region's
# bytes. A migration folder holds round-NN images that each obey the image rule (the target is idle during it, so every
# round restores to the same region), the last one valid once it returned. Exit code 1 when a line says DEFECT.
param(
    [Parameter(Mandatory)] [string] $Console,
    [Parameter(Mandatory)] [string] $Root,
    [Parameter(Mandatory)] [string] $GuestRoot,
    [Parameter(Mandatory)] [string] $Module,
    [Parameter(Mandatory)] [string] $Scratch,
    # With -UseReturned, the steps that count as returned (PowerLossReplay.ps1: those whose END mark the disk holds),
    # instead of the console's END lines.
    [int[]] $Returned = @(),
    [switch] $UseReturned
)
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
Import-Module $Module
$lines = Get-Content -LiteralPath $Console
$regionFile = ($lines | Where-Object { $_ -match '^PL REGION \d+ (\S+)$' } | Select-Object -First 1) -replace '^PL REGION \d+ ', ''
if (-not $regionFile) { 'result 0 none - - no-region DEFECT the console has no PL REGION line'; exit 1 }
$steps = [ordered]@{}
foreach ($l in $lines) {
    if ($l -match '^PL BEGIN (\d+) (\S+) (\S+) ([0-9A-F]{64})') { $steps[$Matches[1]] = [pscustomobject]@{ Step = [int]$Matches[1]; Kind = $Matches[2]; Path = $Matches[3]; Expect = $Matches[4]; Returned = $false; Failed = '' } }
    elseif ($l -match '^PL END (\d+) ') { $steps[$Matches[1]].Returned = $true }
    elseif ($l -match '^PL FAIL (\d+) (.*)$') { $steps[$Matches[1]].Failed = $Matches[2] }
}
if ($UseReturned) { foreach ($s in $steps.Values) { $s.Returned = $s.Step -in $Returned } }
$null = New-Item -ItemType Directory -Force $Scratch
$bad = 0
function Get-ErrorIdOf([scriptblock] $Command) {
    try { $null = & $Command; '' } catch { "$($_.FullyQualifiedErrorId)".Split(',')[0] }
}
# An image's state: absent, refused:<ErrorId> or valid:<same|other>.
function Test-Image([string] $Path, [string] $Expect) {
    if (-not (Test-Path -LiteralPath $Path)) { return 'absent' }
    $r = Test-MemoryImage -Path $Path -Detailed
    $getId = Get-ErrorIdOf { Get-MemoryImage -Path $Path }
    if (-not $r.Valid) {
        $ids = @($r.Problems | ForEach-Object { "$($_.Error)" } | Sort-Object -Unique)
        if ($ids | Where-Object { $_ -notmatch '^Image' }) { return "refused-badid:$($ids -join '+')" }
        return "refused:$($ids -join '+')"
    }
    if ($getId) { return "valid-but-get-refuses:$getId" }
    $dest = Join-Path $Scratch ([guid]::NewGuid().ToString('n'))
    $restoreId = Get-ErrorIdOf { Restore-MemoryImage -Path $Path -Destination $dest }
    if ($restoreId) { return "valid-but-restore-refuses:$restoreId" }
    $file = Join-Path $dest $regionFile
    $got = if (Test-Path -LiteralPath $file) { (Get-FileHash -LiteralPath $file -Algorithm SHA256).Hash } else { 'no-region-file' }
    Remove-Item -LiteralPath $dest -Recurse -Force
    if ($got -eq $Expect) { 'valid:same' } else { "valid:other:$got" }
}
function Say($s, [string] $State, [bool] $Ok, [string] $Why) {
    $flag = if ($Ok) { 'OK' } else { $script:bad++; 'DEFECT' }
    $how = if ($s.Returned) { 'returned' } elseif ($s.Failed) { "failed:$($s.Failed.Split(' ')[0])" } else { 'in-flight' }
    "result $($s.Step) $($s.Kind) $(Split-Path -Leaf $s.Path) $how $State $flag $Why".TrimEnd()
}
foreach ($s in $steps.Values) {
    if (-not $s.Path.StartsWith("$GuestRoot/")) { Say $s 'elsewhere' $false "not under $GuestRoot"; continue }
    $path = $Root + $s.Path.Substring($GuestRoot.Length)
    switch ($s.Kind) {
        'image' {
            $state = Test-Image $path $s.Expect
            $ok = $state -eq 'valid:same' -or (-not $s.Returned -and ($state -eq 'absent' -or $state -match '^refused:'))
            Say $s $state $ok $(if (-not $ok) { 'an image must be whole with the saved bytes once returned, else absent or refused with an Image* id' })
        }
        'restore' {
            $state = if (-not (Test-Path -LiteralPath $path)) { 'absent' }
            elseif (-not (Get-ChildItem -Force -LiteralPath $path)) { 'empty' }
            elseif (-not (Test-Path -LiteralPath (Join-Path $path 'mappings.json'))) { 'partial:' + ((Get-ChildItem -Force -LiteralPath $path).Name -join '+') }
            else {
                $file = Join-Path $path $regionFile
                $got = if (Test-Path -LiteralPath $file) { (Get-FileHash -LiteralPath $file -Algorithm SHA256).Hash } else { 'no-region-file' }
                if ($got -eq $s.Expect) { 'complete:same' } else { "complete:other:$got" }
            }
            $ok = $state -eq 'complete:same' -or (-not $s.Returned -and $state -in 'absent', 'empty')
            Say $s $state $ok $(if (-not $ok) { 'a restore destination must be the old (absent or empty) or the new complete state' })
        }
        'migration' {
            $rounds = @(if (Test-Path -LiteralPath $path) { Get-ChildItem -Directory -LiteralPath $path | Sort-Object Name })
            $states = @(foreach ($r in $rounds) { "$($r.Name)=$(Test-Image $r.FullName $s.Expect)" })
            $ok = -not ($states | Where-Object { $_ -notmatch '=(valid:same|absent|refused:Image\S*)$' })
            if ($s.Returned) { $ok = $ok -and $rounds.Count -gt 0 -and $states[-1] -match '=valid:same$' }
            $state = if ($states) { $states -join ',' } elseif (Test-Path -LiteralPath $path) { 'empty' } else { 'absent' }
            Say $s $state $ok $(if (-not $ok) { 'every round must be whole with the migrated bytes or refused; the last whole once returned' })
        }
    }
}
$hidden = @(Get-ChildItem -Force -LiteralPath $Root -Filter '.*partial*').Count
"hidden-partial $hidden"
if ($bad) { exit 1 }
