#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Speed of write tracking of another process (Enable-WriteTracking's injected userfaultfd write-protect),
    measured in one run; prints one JSON object (tests/BenchSupport.psm1's report).
.DESCRIPTION
    The target is tests/native/wttarget with -SizeMiB present (written) pages, started through a shell (not a
    child of this process). Each round enables WriteProtect from outside, times the target's first writes to
    protected pages and this process's own, writes 1% of the pages, collects with WriteProtect and with Hash,
    and switches tracking off again. The rounds give:
    EnableMs: milliseconds to enable (inject, register, write-protect every present page), target < 20 for 1 GiB;
        its split into steps is in facts.enableSplitMs (the median of each step).
    EnableVsSerialProtect: the same enable with the initial write-protect one piece at a time over the default
        (pieces of whole page tables on every core); above 1 where cores are idle.
    CollectVsHash: the Hash method's collection time over WriteProtect's, 1% of the pages written (target >= 5).
    WriteVsSelf: the target's first write to a protected page over this process's own uffd-wp write fault
        (lower is better, target <= 2).
.EXAMPLE
    ./build.ps1 Build, Native; pwsh -File tests/BenchWriteTracking.ps1 -Quick
#>
param(
    [string] $ModulePath = (Join-Path $PSScriptRoot '../out/SoftDirty/SoftDirty.psd1'),
    # The test kit (the timed steps); build.ps1 builds it beside the staged module.
    [string] $TestKitPath = (Join-Path (Split-Path (Split-Path $ModulePath)) 'testkit/SoftDirty.TestKit.dll'),
    [ValidateRange(1, 16384)] [int] $SizeMiB = 1024,
    [ValidateRange(1, 1000)] [int] $Repeat = 9,
    # A short try: 3 rounds (the size stays, the enable target is about 1 GiB).
    [switch] $Quick,
    [string] $WorkPath = [IO.Path]::GetTempPath()
)
$ErrorActionPreference = 'Stop'
if ($Quick) { $Repeat = 3 }
# Resolved first: Import-Module reads a bare relative path (out/SoftDirty/SoftDirty.psd1) as a module name.
Import-Module (Resolve-Path $ModulePath).Path
Import-Module (Join-Path $PSScriptRoot 'BenchSupport.psm1')
Add-Type -Path $TestKitPath
$loadBefore = Get-LoadAverage

$pages = $SizeMiB * 256
$psi = [System.Diagnostics.ProcessStartInfo]::new('/bin/sh')
# stdin through fd 3: a background job's stdin would be /dev/null.
$psi.ArgumentList.Add('-c'); $psi.ArgumentList.Add('exec 3<&0; "$0" <&3 3<&- & wait $!'); $psi.ArgumentList.Add((Join-Path $PSScriptRoot 'native/bin/wttarget'))
$psi.RedirectStandardInput = $true; $psi.RedirectStandardOutput = $true; $psi.RedirectStandardError = $true  # the shell's "Killed" at the end
$sh = [System.Diagnostics.Process]::Start($psi)
$ready = $sh.StandardOutput.ReadLine()
if ($ready -notmatch '^READY (\d+) (\d+)$') { throw "wttarget said '$ready'" }
$id = [int]$Matches[1]; $pageSize = [int]$Matches[2]
function Send([string] $Command) {
    $sh.StandardInput.WriteLine($Command)
    $line = $sh.StandardOutput.ReadLine()
    if ($line -notlike 'OK*') { throw "wttarget: $Command -> $line" }
    $line.Substring(2).Trim()
}
$env:SOFTDIRTY_STATE_DIR = Join-Path $WorkPath "sdbench-wt-$([guid]::NewGuid().ToString('N'))"
try {
    $hex = Send "map $pages"
    $lo = [Convert]::ToUInt64($hex, 16); $hi = $lo + [uint64]$pages * $pageSize
    $null = Send "write $hex 0 $pages"
    $timing = [SoftDirty.TestKit.Benchmarks.RemoteTrackerTiming]::new($id, $lo, $hi)
    $writes = [math]::Min(1000, [math]::Max(1, [int]($pages / 4)))
    $enable = @(); $serial = @(); $collect = @(); $write = @(); $steps = @()
    foreach ($i in 0..$Repeat) {   # round 0 warms up (JIT, first faults) and is not counted
        # The baseline of the parallel initial write-protect first: the same enable with one piece at a time.
        $serialMs = $timing.EnableWriteProtectMs($true)
        $timing.EndRound()
        $ms = $timing.EnableWriteProtectMs()
        $targetNs = [double](Send "timedwrite $hex $(($i % 4) * $writes) $writes") / $writes
        $selfNs = [SoftDirty.TestKit.Benchmarks.WorkflowBenchmarks]::SelfWriteNs($writes)
        $timing.SnapshotHash()
        $null = Send "pattern $hex $pages $($i + 1) $([math]::Max(1, [int]($pages / 100)))"
        $wpMs = $timing.CollectWriteProtectMs()
        $hashMs = $timing.CollectHashMs()
        $timing.EndRound()
        if ($i -eq 0) { continue }
        $enable += $ms; $serial += $serialMs; $steps += , $timing.LastEnableSteps
        $collect += [pscustomobject]@{ WriteProtect = $wpMs; Hash = $hashMs }
        $write += [pscustomobject]@{ Target = $targetNs; Self = $selfNs }
    }
    $timing.Dispose()
    $split = [ordered]@{}
    foreach ($name in $steps[0].Keys) { $split[$name] = [math]::Round((Get-Median @($steps | ForEach-Object { $_[$name] })), 3) }
    $ratios = @(
        New-RatioRecord -Name EnableMs -Baseline 'milliseconds (absolute: inject, register, write-protect every present page)' -Ratios $enable -Target 20 -LowerIsBetter
        New-RatioRecord -Name EnableVsSerialProtect -Baseline 'the same enable with the initial write-protect one piece at a time' -Ratios @(for ($k = 0; $k -lt $enable.Count; $k++) { $serial[$k] / $enable[$k] }) `
            -SubjectMs (Get-Median $enable) -BaselineMs (Get-Median $serial)
        New-RatioRecord -Name CollectVsHash -Baseline 'the Hash method''s collection of the same range' -Ratios @($collect | ForEach-Object { $_.Hash / $_.WriteProtect }) -Target 5 `
            -SubjectMs (Get-Median @($collect.WriteProtect)) -BaselineMs (Get-Median @($collect.Hash))
        New-RatioRecord -Name WriteVsSelf -Baseline 'this process''s own uffd-wp write fault' -Ratios @($write | ForEach-Object { $_.Target / $_.Self }) -Target 2 -LowerIsBetter `
            -SubjectMs ((Get-Median @($write.Target)) / 1e6) -BaselineMs ((Get-Median @($write.Self)) / 1e6)
    )
    $facts = [ordered]@{
        target = "$SizeMiB MiB present in wttarget $id (started through a shell)"
        rounds = $Repeat
        writtenPerCollection = [math]::Max(1, [int]($pages / 100))
        enableSplitMs = $split
    }
    New-BenchReport -Ratios $ratios -LoadBefore $loadBefore -Facts $facts | ConvertTo-Json -Depth 5
} finally {
    if (Test-Path "/proc/$id") { kill -KILL $id }
    $sh.WaitForExit(2000) | Out-Null
    Remove-Item $env:SOFTDIRTY_STATE_DIR -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Item Env:SOFTDIRTY_STATE_DIR
}
