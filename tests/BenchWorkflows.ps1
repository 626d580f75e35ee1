#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Speed ratios of the workflows, measured in one run, printed as one JSON object.
.DESCRIPTION
    Every ratio is measured with tests/BenchSupport.psm1 (interleaved repetitions, median, spread, noisy above
    20%) and the report carries the load average before and after the run.
    PageReaderVsMemRead: the engine's page reader (process_vm_readv, up to 1,024 ranges a call) reading a
    -SizeMiB region of a real process (tests/native/wftarget), against preads of /proc/PID/mem (no target).
    HashCollectVsMemRead: one collection of the Hash method over a -SizeMiB region of a real process
    (tests/native/wftarget) against reading the same pages from /proc/PID/mem in preads of the engine's chunk
    size (target >= 0.9).
    SaveVsWrite: a full Save-MemoryImage of that region (fsync) against a plain sequential write of the same
    bytes to a file (2 MiB writes, fsync) (target >= 0.7).
    Increment1PctVs100Pct, Increment10PctVs100Pct: Save-MemoryImage -Parent of an -IncrementMiB region (another
    wftarget) over a full image taken just before
    the writes, after 1% (single pages, 1 in 100)
    and 10% (runs of 10 pages, 1 run in 100) of the region was written, over the same after 100% was written:
    an increment's cost follows the pages written, not the process size (targets <= 0.1 and <= 0.25). Its
    method: SoftDirty where the kernel has it, else WriteProtect (write tracking of the target).
    Methods: one workload on this process (1,000 pages written of 64 MiB, 100 of them with identical bytes),
    collected with each method this kernel supports: pages reported, time to collect, cost to the writer.
    (The write-tracking ratios of another process are in tests/BenchWriteTracking.ps1.)
    Medians of -Runs runs. -Quick: a 128 MiB region (64 MiB for the increments) and 3 runs, to try the script out.
.EXAMPLE
    ./build.ps1 Build, Native; pwsh -File tests/BenchWorkflows.ps1 -ModulePath out/SoftDirty/SoftDirty.psd1
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../out/SoftDirty/SoftDirty.psd1'),
    # The test kit (the workflow measurements); build.ps1 builds it beside the staged module.
    [string] $TestKitPath = (Join-Path (Split-Path (Split-Path $ModulePath)) 'testkit/SoftDirty.TestKit.dll'),
    [int] $SizeMiB = 1024,
    [int] $Runs = 5,
    # The region of the increment measurements (each repetition saves it 6 times).
    [int] $IncrementMiB = 256,
    [string] $WorkPath = [IO.Path]::GetTempPath(),
    [switch] $Quick
)
$ErrorActionPreference = 'Stop'
# No progress bars: drawing them is console time, not the save's (a TCG guest's console is slow).
$ProgressPreference = 'SilentlyContinue'
# Resolved first: Import-Module reads a bare relative path (out/SoftDirty/SoftDirty.psd1) as a module name.
Import-Module (Resolve-Path $ModulePath).Path
Import-Module (Join-Path $PSScriptRoot 'Pester/SoftDirty.TestSupport.psm1')
Import-Module (Join-Path $PSScriptRoot 'BenchSupport.psm1')
# The measurements in C# (the test kit; it sees the engine's internals): beside the staged module.
Add-Type -Path $TestKitPath
if ($Quick) { $SizeMiB = 128; $IncrementMiB = 64; $Runs = 3 }
$loadBefore = Get-LoadAverage

function Median([double[]] $x) { $s = $x | Sort-Object; $s[[int][math]::Floor(($s.Count - 1) / 2)] }

# Writes $Percent of the region's pages: 100 all at once, 10 as runs of 10 pages one run in 100, 1 as one page in 100.
function Write-Share($Target, $Region, [int] $Percent) {
    if ($Percent -ge 100) { $null = Send-WfTarget $Target "write $($Region.Hex) 0 $($Region.Pages)"; return }
    for ($i = 0; $i + $Percent -le $Region.Pages; $i += 100) { $null = Send-WfTarget $Target "write $($Region.Hex) $i $Percent" }
}

# A wftarget started through a shell (a grandchild: WriteProtect of another process refuses a child of this one).
function Start-WfGrandchild {
    $psi = [System.Diagnostics.ProcessStartInfo]::new('/bin/sh')
    $psi.ArgumentList.Add('-c'); $psi.ArgumentList.Add('exec 3<&0; "$0" <&3 3<&- & wait $!'); $psi.ArgumentList.Add((Join-Path $PSScriptRoot 'native/bin/wftarget'))
    $psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true
    $sh = [System.Diagnostics.Process]::Start($psi)
    $ready = $sh.StandardOutput.ReadLine()
    if ($ready -notmatch '^READY (\d+) (\d+)$') { throw "wftarget said '$ready'" }
    [pscustomobject]@{ Process = $sh; Id = [int]$Matches[1]; PageSize = [int]$Matches[2] }
}

# Increments after 1%, 10% and 100% of the region was written, interleaved; each over a full image taken just
# before its writes (so every increment has a parent chain of the same size).
function Measure-Increment($Target, $Region, [string] $Method) {
    $chain = Join-Path $WorkPath "sdbench-chain-$PID"
    $null = New-Item -ItemType Directory $chain
    try {
        $times = @{ 1 = @(); 10 = @(); 100 = @() }
        $pages = @{ 1 = @(); 10 = @(); 100 = @() }
        foreach ($i in 1..$Runs) {
            foreach ($p in 100, 10, 1) {
                $parent = Join-Path $chain 'full'
                $dir = Join-Path $chain 'increment'
                $null = Save-MemoryImage -Id $Target.Id -Path $parent -Mapping '[anon]' -Method $Method
                Write-Share $Target $Region $p
                $sw = [Diagnostics.Stopwatch]::StartNew()
                $image = Save-MemoryImage -Id $Target.Id -Path $dir -Parent $parent -Mapping '[anon]' -Method $Method
                $times[$p] += $sw.Elapsed.TotalSeconds
                $pages[$p] += $image.DataPages
                Remove-Item $parent, $dir -Recurse -Force
            }
        }
        foreach ($p in 1, 10) {
            $ratios = for ($k = 0; $k -lt $Runs; $k++) { $times[$p][$k] / $times[100][$k] }
            New-RatioRecord -Name "Increment${p}PctVs100Pct" -Baseline "Save-MemoryImage -Parent -Method $Method after 100% of $($Region.Pages) pages were written" `
                -Ratios $ratios -Target $(if ($p -eq 1) { 0.1 } else { 0.25 }) -LowerIsBetter `
                -SubjectMs ((Get-Median $times[$p]) * 1e3) -BaselineMs ((Get-Median $times[100]) * 1e3)
        }
        [ordered]@{ '1' = Get-Median $pages[1]; '10' = Get-Median $pages[10]; '100' = Get-Median $pages[100] }
    } finally { Remove-Item $chain -Recurse -Force -ErrorAction SilentlyContinue }
}

$t = Start-WfTarget
try {
    $pages = $SizeMiB * 256
    $r = New-WfRegion $t $pages 3
    $length = [uint64]$pages * $t.PageSize
    $bytes = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::ReadAll($t.Id, $r.Address, $length)
    $ratios = [Collections.Generic.List[Collections.IDictionary]]::new()

    $ratios.Add((Measure-Ratio -Name PageReaderVsMemRead -Baseline "pread of /proc/PID/mem, $SizeMiB MiB in $([SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::ReadChunkBytes / 1KB) KiB reads" `
        -Subject { $null = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::WalkSeconds($t.Id, $r.Address, $length) } `
        -Reference { $null = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::ReadSeconds($t.Id, $r.Address, $length) } -Repeat $Runs))
    $collection = [SoftDirty.TestKit.Benchmarks.HashCollector]::new($t.Id, $r.Address, $length)
    try {
        $ratios.Add((Measure-Ratio -Name HashCollectVsMemRead -Baseline "pread of /proc/PID/mem, $SizeMiB MiB in $([SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::ReadChunkBytes / 1KB) KiB reads" `
            -Subject { $null = $collection.Collect() } -Reference { $null = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::ReadSeconds($t.Id, $r.Address, $length) } `
            -Target 0.9 -Repeat $Runs))
    } finally { $collection.Dispose() }

    $out = Join-Path $WorkPath "sdbench-$PID"
    $ratios.Add((Measure-Ratio -Name SaveVsWrite -Baseline "a plain write of the same $SizeMiB MiB to a file (2 MiB writes, fsync)" `
        -Subject { Remove-Item "$out.image" -Recurse -Force -ErrorAction Ignore; $null = Save-MemoryImage -Id $t.Id -Path "$out.image" -Mapping '[anon]' -Method Hash } `
        -Reference { Remove-Item "$out.plain" -Force -ErrorAction Ignore; $null = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::WriteSeconds($bytes, "$out.plain") } `
        -Target 0.7 -Repeat $Runs))
    Remove-Item "$out.image" -Recurse -Force -ErrorAction Ignore
    Remove-Item "$out.plain" -Force -ErrorAction Ignore
    $bytes = $null

    $method = if ((Get-SoftDirtySupport).SoftDirty) { 'SoftDirty' } else { 'WriteProtect' }
    $g = Start-WfGrandchild
    $env:SOFTDIRTY_STATE_DIR = Join-Path $WorkPath "sdbench-state-$PID"
    try {
        $increment = @(Measure-Increment $g (New-WfRegion $g ($IncrementMiB * 256) 5) $method)
    } finally {
        if (Test-Path "/proc/$($g.Id)") { kill -KILL $g.Id }
        Stop-WfTarget $g
        Remove-Item $env:SOFTDIRTY_STATE_DIR -Recurse -Force -ErrorAction SilentlyContinue
        Remove-Item Env:SOFTDIRTY_STATE_DIR
    }
    foreach ($x in $increment | Where-Object { $_.Contains('name') }) { $ratios.Add($x) }
    $report = New-BenchReport -Ratios $ratios -LoadBefore $loadBefore -Facts ([ordered]@{
        Region = "$SizeMiB MiB of wftarget $($t.Id)"
        Runs = $Runs
        IncrementRegion = "$IncrementMiB MiB of another wftarget"
        IncrementMethod = $method
        IncrementDataPages = $increment | Where-Object { -not $_.Contains('name') }
    })
    $report.Methods = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::Methods()
    $report | ConvertTo-Json -Depth 6
} finally { Stop-WfTarget $t }
