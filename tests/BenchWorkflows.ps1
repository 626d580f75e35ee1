#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Speed ratios of the workflows, measured in one run, printed as one JSON object.
.DESCRIPTION
    HashVsRead: the Hash method's snapshot of a 1 GiB region of a real process (tests/native/wftarget) over
    reading the same region from /proc/PID/mem in preads of the engine's chunk size (target >= 0.7).
    SaveVsWrite: Save-MemoryImage of that region (full image, fsync) over a plain sequential write of the same
    bytes to a file (2 MiB writes, fsync) (target >= 0.7).
    Methods: one workload on this process (1,000 pages written of 64 MiB, 100 of them with identical bytes),
    collected with each method this kernel supports: pages reported, time to collect, cost to the writer.
    Medians of -Runs runs.
.EXAMPLE
    ./build.ps1 Build, Native; pwsh -File tests/BenchWorkflows.ps1 -ModulePath out/SoftDirty/SoftDirty.psd1
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../out/SoftDirty/SoftDirty.psd1'),
    # The test kit (the workflow measurements); build.ps1 builds it beside the staged module.
    [string] $TestKitPath = (Join-Path (Split-Path (Split-Path $ModulePath)) 'testkit/SoftDirty.TestKit.dll'),
    [int] $SizeMiB = 1024,
    [int] $Runs = 3,
    [string] $WorkPath = [IO.Path]::GetTempPath()
)
$ErrorActionPreference = 'Stop'
# Resolved first: Import-Module reads a bare relative path (out/SoftDirty/SoftDirty.psd1) as a module name.
Import-Module (Resolve-Path $ModulePath).Path
Import-Module (Join-Path $PSScriptRoot 'Pester/SoftDirty.TestSupport.psm1')
# The measurements in C# (the test kit; it sees the engine's internals): beside the staged module.
Add-Type -Path $TestKitPath

function Median([double[]] $x) { $s = $x | Sort-Object; $s[[int][math]::Floor(($s.Count - 1) / 2)] }

$t = Start-WfTarget
try {
    $pages = $SizeMiB * 256
    $r = New-WfRegion $t $pages 3
    $length = [uint64]$pages * $t.PageSize
    $read = @(); $hash = @(); $save = @(); $write = @()
    $bytes = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::ReadAll($t.Id, $r.Address, $length)
    foreach ($i in 1..$Runs) {
        $read += [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::ReadSeconds($t.Id, $r.Address, $length)
        $hash += [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::HashSeconds($t.Id, $r.Address, $length)
        $dir = Join-Path $WorkPath "sdbench-$PID-$i"
        $file = "$dir.plain"
        $write += [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::WriteSeconds($bytes, $file)
        Remove-Item $file
        $save += (Measure-Command { $null = Save-MemoryImage -Id $t.Id -Path $dir -Mapping '[anon]' -Method Hash }).TotalSeconds
        Remove-Item $dir -Recurse -Force
    }
    $gib = $length / 1GB
    [ordered]@{
        Region = "$SizeMiB MiB of wftarget $($t.Id)"
        Runs = $Runs
        ReadGiBps = [math]::Round($gib / (Median $read), 3)
        HashGiBps = [math]::Round($gib / (Median $hash), 3)
        HashVsRead = [math]::Round((Median $read) / (Median $hash), 3)
        PlainWriteGiBps = [math]::Round($gib / (Median $write), 3)
        SaveGiBps = [math]::Round($gib / (Median $save), 3)
        SaveVsWrite = [math]::Round((Median $write) / (Median $save), 3)
        Methods = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::Methods()
    } | ConvertTo-Json -Depth 4
} finally { Stop-WfTarget $t }
