#!/usr/bin/env pwsh
<#
.SYNOPSIS
    CRIU against Save-MemoryImage on one target, in the soft-dirty VM (run by tests/vm/bench-criu.sh).
.DESCRIPTION
    The target: tests/native/wftarget with a 512 MiB region filled (-SizeMiB), of which 64 MiB (-WrittenMiB)
    is written between an image and its increment, as 1 MiB runs spread evenly over the region.
    FullDump: `criu dump --leave-running` (whole process) against a full Save-MemoryImage (whole process),
    interleaved. PreDump: `criu pre-dump --track-mem` over a previous pre-dump against Save-MemoryImage
    -Parent -Method SoftDirty over a previous image; each tool takes its base, the writes, its increment,
    in turn (both clear soft-dirty, so they cannot share one base). Ratios are CRIU's time over ours
    (target >= 1.0), with spread (tests/BenchSupport.psm1); the pages each stored inside the region are
    counted from both images (CRIU's pagemap PE_PRESENT entries, our index's data records) and must match.
    TwoCopiesVsFullSave (no target) is our own floor: the region read as a save reads it, then written to a
    file, against the full save: how much of a save is its two copies (CRIU makes one).
#>
param(
    [Parameter(Mandatory)] [string] $Criu,
    [string] $CriuLibraryPath,
    [Parameter(Mandatory)] [string] $OutPath,
    [string] $ModulePath = (Join-Path $PSScriptRoot '../../out/SoftDirty/SoftDirty.psd1'),
    [string] $TestKitPath = (Join-Path $PSScriptRoot '../../out/testkit/SoftDirty.TestKit.dll'),
    [int] $SizeMiB = 512,
    [int] $WrittenMiB = 64,
    [int] $Repeat = 3,
    [string] $WorkPath = [IO.Path]::GetTempPath(),
    [switch] $Quick
)
$ErrorActionPreference = 'Stop'
# No progress bars: drawing them is console time, not the save's (a TCG guest's console is slow).
$ProgressPreference = 'SilentlyContinue'
Import-Module (Resolve-Path $ModulePath).Path
Import-Module (Join-Path $PSScriptRoot '../Pester/SoftDirty.TestSupport.psm1')
Import-Module (Join-Path $PSScriptRoot '../BenchSupport.psm1')
Add-Type -Path $TestKitPath
if ($Quick) { $Repeat = 2 }
$loadBefore = Get-LoadAverage
if ($CriuLibraryPath) { $env:LD_LIBRARY_PATH = $CriuLibraryPath }
$work = Join-Path $WorkPath "sdcriu-$PID"
$null = New-Item -ItemType Directory $work

# One criu command; returns its seconds; throws with the end of its log when it fails.
function Invoke-Criu([string[]] $Arguments, [string] $Directory) {
    $null = New-Item -ItemType Directory $Directory -Force
    $sw = [Diagnostics.Stopwatch]::StartNew()
    & $Criu @Arguments -D $Directory --shell-job -v1 -o criu.log
    $seconds = $sw.Elapsed.TotalSeconds
    if ($LASTEXITCODE -ne 0) {
        $log = (Get-Content (Join-Path $Directory 'criu.log') -Tail 15 -ErrorAction SilentlyContinue) -join "`n"
        throw "criu $($Arguments -join ' ') failed (exit code $LASTEXITCODE):`n$log"
    }
    $seconds
}

# The target in a session of its own (setsid): CRIU refuses a task whose session leader it cannot see, and
# everything the guest's init starts is in init's session.
function Start-SessionTarget {
    $psi = [System.Diagnostics.ProcessStartInfo]::new('setsid')
    $psi.ArgumentList.Add((Join-Path $PSScriptRoot '../native/bin/wftarget'))
    $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
    $p = [System.Diagnostics.Process]::Start($psi)
    $ready = $p.StandardOutput.ReadLine()
    if ($ready -notmatch '^READY (\d+) (\d+)$') { throw "wftarget said '$ready'" }
    [pscustomobject]@{ Process = $p; Id = [int]$Matches[1]; PageSize = [int]$Matches[2] }
}

$t = Start-SessionTarget
$result = $null
try {
    $pages = $SizeMiB * 256
    $r = New-WfRegion $t $pages 7
    $lo = $r.Address; $hi = $lo + [uint64]$pages * $t.PageSize
    $runPages = 256
    $runs = [int]($WrittenMiB * 256 / $runPages)
    $stride = [int]($pages / $runs)
    function Write-Runs { for ($k = 0; $k -lt $runs; $k++) { $null = Send-WfTarget $t "write $($r.Hex) $($k * $stride) $runPages" } }
    $n = 0
    $full = @(); $fullCriu = @(); $fullOurs = @(); $fullPages = @()
    $inc = @(); $incCriu = @(); $incOurs = @(); $incPages = @()
    $floor = @(); $floorRead = @(); $floorWrite = @()
    # Repetition -1 warms up (the guest's JIT, CRIU's first start) and is not counted.
    for ($i = -1; $i -lt $Repeat; $i++) {
        # Full: CRIU and ours in turn (the first alternates).
        $c = Join-Path $work "c$n"; $o = Join-Path $work "o$n"; $n++
        $order = if ($i % 2) { 'ours', 'criu' } else { 'criu', 'ours' }
        foreach ($who in $order) {
            if ($who -eq 'criu') { $tc = Invoke-Criu @('dump', '-t', $t.Id, '--leave-running') $c }
            else { $sw = [Diagnostics.Stopwatch]::StartNew(); $null = Save-MemoryImage -Id $t.Id -Path $o; $to = $sw.Elapsed.TotalSeconds }
        }
        if ($i -ge 0) { $full += $tc / $to; $fullCriu += $tc; $fullOurs += $to }
        $fullPages += , @([SoftDirty.TestKit.Benchmarks.CriuImages]::CountCriuPages($c, $lo, $hi), [SoftDirty.TestKit.Benchmarks.CriuImages]::CountImagePages($o, $lo, $hi))
        Remove-Item $c, $o -Recurse -Force
        # Our own floor: the two copies a save cannot avoid without code in the target (CRIU's parasite vmsplices
        # the pages, one copy): the region read as a save reads it (process_vm_readv), then written to a file
        # in the same folder (tmpfs in the guest; after the images are removed: it is small) in 2 MiB writes. No hashing, no index.
        if ($i -ge 0) {
            $read = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::WalkSeconds($t.Id, $lo, $hi - $lo)
            $bytes = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::ReadAll($t.Id, $lo, $hi - $lo)
            $write = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::WriteSeconds($bytes, (Join-Path $work "copy$n"))
            $bytes = $null; Remove-Item (Join-Path $work "copy$n")
            $floor += ($read + $write) / $to; $floorRead += $read; $floorWrite += $write
        }

        # Incremental: each tool's base, the writes, its increment, in turn.
        $c0 = Join-Path $work "c$n-base"; $c1 = Join-Path $work "c$n-inc"; $o0 = Join-Path $work "o$n-base"; $o1 = Join-Path $work "o$n-inc"; $n++
        foreach ($who in $order) {
            if ($who -eq 'criu') {
                $null = Invoke-Criu @('pre-dump', '-t', $t.Id, '--track-mem') $c0
                Write-Runs
                $tc = Invoke-Criu @('pre-dump', '-t', $t.Id, '--track-mem', '--prev-images-dir', "../$(Split-Path $c0 -Leaf)") $c1
            } else {
                $null = Save-MemoryImage -Id $t.Id -Path $o0 -Method SoftDirty
                Write-Runs
                $sw = [Diagnostics.Stopwatch]::StartNew()
                $null = Save-MemoryImage -Id $t.Id -Path $o1 -Parent $o0 -Method SoftDirty
                $to = $sw.Elapsed.TotalSeconds
            }
        }
        if ($i -ge 0) { $inc += $tc / $to; $incCriu += $tc; $incOurs += $to }
        $incPages += , @([SoftDirty.TestKit.Benchmarks.CriuImages]::CountCriuPages($c1, $lo, $hi), [SoftDirty.TestKit.Benchmarks.CriuImages]::CountImagePages($o1, $lo, $hi))
        Remove-Item $c0, $c1, $o0, $o1 -Recurse -Force
        if ($i -ge 0) { Write-Host ("BenchCriu: repetition {0}: dump {1:N2} s, full save {2:N2} s (read {5:N2} s + write {6:N2} s of the region alone); pre-dump {3:N2} s, increment {4:N2} s" -f ($i + 1), $fullCriu[-1], $fullOurs[-1], $incCriu[-1], $incOurs[-1], $floorRead[-1], $floorWrite[-1]) }
        else { Write-Host ("BenchCriu: warm-up: pre-dump {0:N2} s, increment {1:N2} s" -f $tc, $to) }
    }
    $ratios = @(
        New-RatioRecord -Name CriuDumpVsFullSave -Baseline "criu dump --leave-running of wftarget ($SizeMiB MiB region), whole process; ratio = CRIU's time / Save-MemoryImage's" `
            -Ratios $full -Target 1.0 -SubjectMs ((Get-Median $fullOurs) * 1e3) -BaselineMs ((Get-Median $fullCriu) * 1e3)
        New-RatioRecord -Name CriuPreDumpVsIncrement -Baseline "criu pre-dump --track-mem over a previous pre-dump, $WrittenMiB MiB written; ratio = CRIU's time / Save-MemoryImage -Parent -Method SoftDirty's" `
            -Ratios $inc -Target 1.0 -SubjectMs ((Get-Median $incOurs) * 1e3) -BaselineMs ((Get-Median $incCriu) * 1e3)
        New-RatioRecord -Name TwoCopiesVsFullSave -Baseline "the region alone read with process_vm_readv, then written to a file in the same folder (2 MiB writes): the two copies a save makes; ratio = their time / the full Save-MemoryImage's (1.0: the save costs its copies alone)" `
            -Ratios $floor -SubjectMs ((Get-Median $fullOurs) * 1e3) -BaselineMs (((Get-Median $floorRead) + (Get-Median $floorWrite)) * 1e3)
    )
    $same = -not (@($fullPages + $incPages) | Where-Object { $_[0] -ne $_[1] })
    $result = New-BenchReport -Ratios $ratios -LoadBefore $loadBefore -Facts ([ordered]@{
        Guest = "kernel $(uname -r), $([Environment]::ProcessorCount) vCPUs, AVX2 $([Runtime.Intrinsics.X86.Avx2]::IsSupported)"
        Criu = (& $Criu --version | Select-Object -First 1)
        Target = "wftarget: $SizeMiB MiB region filled; $WrittenMiB MiB written between image and increment ($runs runs of $runPages pages)"
        RegionPagesFull = [ordered]@{ criu = $fullPages[0][0]; softdirty = $fullPages[0][1] }
        RegionPagesIncrement = [ordered]@{ criu = $incPages[0][0]; softdirty = $incPages[0][1] }
        SamePages = $same
    })
} catch {
    $result = [ordered]@{ failed = "$_" }
    Write-Host "BenchCriu: $_"
} finally {
    Stop-WfTarget $t
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}
$result | ConvertTo-Json -Depth 6 | Set-Content -LiteralPath $OutPath
$result | ConvertTo-Json -Depth 6
