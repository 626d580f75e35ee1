<#
.SYNOPSIS
    The scaling table: time and peak managed memory of Get-PageMap -AsRange, Save-MemoryImage and the emulator's
    workload as the process grows (1, 8, 64 GiB; 256 MiB and 1 GiB with -Quick); prints one JSON object.
.DESCRIPTION
    Peak managed memory is sampled: a background thread reads GC.GetTotalMemory(false) every millisecond while a
    case runs, and the table gives the highest reading above the one taken (after a full collection) just
    before. Memory is bounded (streaming) when the peak does not grow with the size; each workload's peak at the
    largest size over its peak at the smallest is reported as a ratio (target: at most 2).
    The real process is pmcount's sparse region (tests/native/pmcount hold: 1 page in 64 written, no THP); the
    image goes to a fresh temporary folder, removed afterwards. The emulated process maps the size and runs a
    fixed number of random accesses (30% writes): the distinct pages they touch still grow with the size until few
    accesses repeat a page (about 256,000 at 1 GiB, 940,000 at 64 GiB), and the emulator's memory follows them. A
    second emulated case keeps the work fixed as the process grows: the same accesses in the first bytes of the
    mapping (as many as the smallest size), so that its memory shows what the size of the process alone costs.
    For the whole-mapping workload the bounded ratio (target 2) is per page mapped (a PTE each), its peak ratio alone
    printed without a target.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $PmcountPath = (Join-Path $PSScriptRoot 'native/bin/pmcount'),
    [switch] $Quick,
    # Random accesses of the emulated workload at every size.
    [long] $Accesses = 1000000
)
$ErrorActionPreference = 'Stop'
# Resolved first: Import-Module reads a bare relative path as a module name.
Import-Module (Resolve-Path -LiteralPath $ModulePath).Path
Import-Module (Join-Path $PSScriptRoot 'BenchSupport.psm1')
$loadBefore = Get-LoadAverage
$pmcount = (Resolve-Path -LiteralPath $PmcountPath).Path

Add-Type -TypeDefinition @'
using System;
using System.Threading;

namespace SoftDirtyBench
{
    // Samples the managed heap on its own thread while a case runs; Stop returns the peak above the start.
    public sealed class PeakSampler
    {
        private readonly Thread _thread;
        private volatile bool _stop;
        private long _peak;
        private readonly long _base;

        public PeakSampler()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            _base = GC.GetTotalMemory(false);
            _peak = _base;
            _thread = new Thread(Run) { IsBackground = true, Priority = ThreadPriority.AboveNormal };
            _thread.Start();
        }

        private void Run()
        {
            while (!_stop)
            {
                long now = GC.GetTotalMemory(false);
                if (now > _peak) _peak = now;
                Thread.Sleep(1);
            }
        }

        public long Stop()
        {
            long now = GC.GetTotalMemory(false);
            if (now > _peak) _peak = now;
            _stop = true;
            _thread.Join();
            return Math.Max(0, _peak - _base);
        }
    }
}
'@

function Start-Region([uint64] $Bytes) {
    $psi = [Diagnostics.ProcessStartInfo]::new($pmcount)
    foreach ($a in 'hold', "$Bytes", '64') { $psi.ArgumentList.Add($a) }
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $p = [Diagnostics.Process]::Start($psi)
    $ready = $p.StandardOutput.ReadLine()
    if ($ready -notmatch '^READY (\d+) ([0-9a-f]+)$') { $p.Kill(); throw "pmcount hold $Bytes did not start: '$ready'" }
    [pscustomobject]@{ Process = $p; Id = [int]$Matches[1]; Start = [Convert]::ToUInt64($Matches[2], 16); Bytes = $Bytes }
}

function Stop-Region($Region) {
    if (-not $Region) { return }
    try { $Region.Process.StandardInput.Close() } catch { }
    if (-not $Region.Process.WaitForExit(10000)) { $Region.Process.Kill() }
}

# Runs a case once: seconds and peak managed MiB, and what it returned (a count).
function Measure-Case([string] $Workload, [uint64] $Bytes, [scriptblock] $Block) {
    $sampler = [SoftDirtyBench.PeakSampler]::new()
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $out = & $Block
    $seconds = $sw.Elapsed.TotalSeconds
    $peak = $sampler.Stop()
    [ordered]@{
        workload       = $Workload
        sizeGiB        = [math]::Round($Bytes / 1GB, 3)
        seconds        = [math]::Round($seconds, 3)
        peakManagedMiB = [math]::Round($peak / 1MB, 1)
        result         = $out
    }
}

$sizes = if ($Quick) { @(256MB, 1GB) } else { @(1GB, 8GB, 64GB) }
$rows = [Collections.Generic.List[Collections.IDictionary]]::new()
$skipped = [Collections.Generic.List[string]]::new()
# A first pass at 64 MiB, not reported: JIT and first loads out of the first row.
foreach ($bytes in @(64MB) + $sizes) {
    $free = [uint64]((Get-Content /proc/meminfo | Where-Object { $_ -like 'MemAvailable:*' }) -split '\s+')[1] * 1KB
    if ($free -lt $bytes / 64 + 2GB) { $skipped.Add("real process at $($bytes / 1GB) GiB: MemAvailable $([math]::Round($free / 1GB, 1)) GiB"); continue }
    $region = Start-Region $bytes
    $dir = Join-Path ([IO.Path]::GetTempPath()) "sdscaling-$([guid]::NewGuid().ToString('n'))"
    try {
        $rows.Add((Measure-Case 'Get-PageMap -AsRange' $bytes {
            $n = 0; Get-PageMap -Id $region.Id -Address $region.Start -Length $region.Bytes -AsRange -WarningAction SilentlyContinue | ForEach-Object { $n++ }; "$n ranges"
        }))
        $rows.Add((Measure-Case 'Save-MemoryImage (full, whole process)' $bytes {
            $info = Save-MemoryImage -Id $region.Id -Path (Join-Path $dir 'full') -Confirm:$false -WarningAction SilentlyContinue
            "$($info.DataPages) data pages, $($info.ZeroPages) zero pages"
        }))
    }
    finally {
        Stop-Region $region
        Remove-Item -LiteralPath $dir -Recurse -Force -ErrorAction SilentlyContinue
    }
    $row = Measure-Case "Invoke-EmulatedWorkload Random, $Accesses accesses" $bytes {
        $script:scaled = New-EmulatedProcess -Name "scaling$($bytes / 1MB)"
        $script:scaledMapping = $script:scaled | Add-EmulatedMapping -Length $bytes
        $r = Invoke-EmulatedWorkload -Emulator $script:scaled -Address $script:scaledMapping.Start -Length $bytes -Pattern Random -Count $Accesses -WriteRatio 0.3 -Seed 1
        "$($r.Writes) writes"
    }
    # The pages the accesses mapped (written ones and, for reads of untouched pages, the zero page: a PTE each),
    # counted after the case so that counting is not in its peak.
    $mapped = (Get-PageMap -Emulator $script:scaled -Address $script:scaledMapping.Start -Length $bytes -Present -AsRange | Measure-Object -Property PageCount -Sum).Sum
    $row.result = "$($row.result), $mapped pages mapped"
    $script:scaled = $null
    $rows.Add($row)
    # The same work in a process that grows around it: the accesses stay in the smallest size's first bytes.
    $window = $sizes[0]
    $rows.Add((Measure-Case "Invoke-EmulatedWorkload Random, $Accesses accesses in the first $($window / 1MB) MiB" $bytes {
        $e = New-EmulatedProcess -Name "window$($bytes / 1MB)"
        $m = $e | Add-EmulatedMapping -Length $bytes
        $r = Invoke-EmulatedWorkload -Emulator $e -Address $m.Start -Length ([math]::Min([long]$window, [long]$bytes)) -Pattern Random -Count $Accesses -WriteRatio 0.3 -Seed 1
        "$($r.Writes) writes"
    }))
}

$rows.RemoveAll([Predicate[Collections.IDictionary]] { param($r) $r.sizeGiB -eq [math]::Round(64MB / 1GB, 3) }) | Out-Null

# Bounded: the peak at the largest size over the peak at the smallest, per workload (1 MiB floor: sampling grain).
$ratios = foreach ($w in ($rows | ForEach-Object { $_.workload } | Select-Object -Unique)) {
    $mine = @($rows | Where-Object { $_.workload -eq $w })
    if ($mine.Count -lt 2) { continue }
    $first = $mine[0]; $last = $mine[-1]
    $peakRatio = [math]::Max($last.peakManagedMiB, 1) / [math]::Max($first.peakManagedMiB, 1)
    if ("$($first.result)" -match '(\d+) pages mapped' -and ($firstPages = [double]$Matches[1]) -gt 0 -and "$($last.result)" -match '(\d+) pages mapped') {
        # Random accesses over the whole mapping touch more distinct pages as it grows (the emulated process's own
        # memory grows: each page mapped is a PTE, and a frame where written, that it must keep): bounded means per page mapped.
        $lastPages = [double]$Matches[1]
        New-RatioRecord -Name "peak managed memory $w, $($last.sizeGiB) GiB over $($first.sizeGiB) GiB" -LowerIsBetter `
            -Baseline "the same workload's peak at $($first.sizeGiB) GiB (no target: the pages it touches grow $([math]::Round($lastPages / $firstPages, 1))x)" -Ratios @($peakRatio)
        New-RatioRecord -Name "peak managed memory per page mapped $w, $($last.sizeGiB) GiB over $($first.sizeGiB) GiB" -LowerIsBetter -Target 2 `
            -Baseline "the same workload's peak per page mapped at $($first.sizeGiB) GiB" -Ratios @($peakRatio / ($lastPages / $firstPages))
    }
    else {
        New-RatioRecord -Name "peak managed memory $w, $($last.sizeGiB) GiB over $($first.sizeGiB) GiB" -LowerIsBetter -Target 2 `
            -Baseline "the same workload's peak at $($first.sizeGiB) GiB" -Ratios @($peakRatio)
    }
}
$report = New-BenchReport -Ratios @($ratios) -LoadBefore $loadBefore -Facts ([ordered]@{
    quick   = [bool]$Quick
    method  = 'one run per case; peak = highest GC.GetTotalMemory(false) sampled every 1 ms above the value after a full collection just before'
    skipped = $skipped
})
$report.table = $rows
$report | ConvertTo-Json -Depth 6
