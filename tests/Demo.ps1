<#
.SYNOPSIS
    The main job, on a real process of this machine: its mappings, its page map, and what soft-dirty
    tracking does on this kernel, honestly.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $TargetPath
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath
Import-Module (Join-Path $PSScriptRoot 'Pester/SoftDirty.TestSupport.psm1')

function Show([string] $Title) { Write-Host ''; Write-Host "=== $Title" -ForegroundColor Cyan }

Show 'What this kernel supports (Get-SoftDirtySupport: measured, not guessed)'
$support = Get-SoftDirtySupport
$support | Format-List | Out-String -Width 160 | Out-Host

$target = Start-TestTarget -Path $TargetPath
try {
    $id = $target.Id
    $region = Send-TestTarget $target 'map 64 anon rw'
    $address = [Convert]::ToUInt64($region, 16)
    $null = Send-TestTarget $target "write $region 0 16"
    Show "A real process: sdtarget, pid $id, with a 64-page anonymous region at 0x$region; it wrote pages 0-15"
    Get-MemoryMapping -Id $id | Format-Table | Out-String -Width 160 | Out-Host

    Show 'Its region as runs of equal pages (Get-PageMap -AsRange)'
    Get-PageMap -Id $id -Address $address -Length (64 * $target.PageSize) -AsRange -WarningAction SilentlyContinue | Format-Table | Out-String -Width 160 | Out-Host

    Show 'The first present pages, one object each (PFNs visible to root only)'
    Get-PageMap -Id $id -Address $address -Length (64 * $target.PageSize) -Present -WarningAction SilentlyContinue |
        Select-Object -First 4 | Format-Table | Out-String -Width 160 | Out-Host

    Show 'Soft-dirty tracking: clear, let the process write pages 20-23, read the soft-dirty pages'
    if ($support.SoftDirty) {
        Clear-SoftDirty -Id $id -Confirm:$false
        $null = Send-TestTarget $target "write $region 20 4"
        Get-PageMap -Id $id -Address $address -Length (64 * $target.PageSize) -SoftDirty -AsRange | Format-Table | Out-String -Width 160 | Out-Host
    } else {
        Write-Host "This kernel cannot track writes with soft-dirty: $($support.SoftDirtyReason)" -ForegroundColor Yellow
        Write-Host 'Clear-SoftDirty says so instead of pretending:'
        Clear-SoftDirty -Id $id -ErrorAction SilentlyContinue -ErrorVariable refused
        Write-Host "  ErrorId $($refused[0].FullyQualifiedErrorId), category $($refused[0].CategoryInfo.Category)"
        $null = Send-TestTarget $target "write $region 20 4"
        $sd = @(Get-PageMap -Id $id -Address $address -Length (64 * $target.PageSize) -SoftDirty -WarningAction SilentlyContinue)
        Write-Host "  after the process wrote 4 pages, Get-PageMap -SoftDirty finds $($sd.Count) page(s): bit 55 is never set here."
        if ($support.PagemapScan) {
            $present = @(Get-PageMap -Id $id -Address $address -Length (64 * $target.PageSize) -Present -ReadMethod PagemapScan -WarningAction SilentlyContinue)
            Write-Host "  What this kernel does show, through PAGEMAP_SCAN: $($present.Count) present pages (0-15 and 20-23)."
        }
    }

    Show 'Workflows: the dirty rate of a real process, with the method this kernel supports (Watch-DirtyPage)'
    $wf = Start-WfTarget
    try {
        $hot = New-WfRegion $wf 4096
        $null = Send-WfTarget $wf "hot $($hot.Hex) 1000 256 2000"
        $samples = @(Watch-DirtyPage -Id $wf.Id -Interval 0.25 -Count 4 -Verbose 4>&1 | ForEach-Object {
            if ($_ -is [System.Management.Automation.VerboseRecord]) { Write-Host "  $($_.Message)" -ForegroundColor Yellow } else { $_ } })
        $samples | Format-Table | Out-String -Width 160 | Out-Host

        Show 'A real pre-copy migration of that process over a simulated 200 MiB/s link, as memory images, and its chart'
        $mig = Join-Path ([IO.Path]::GetTempPath()) "softdirty-demo-$PID"
        $rounds = @(Invoke-PreCopyMigration -Id $wf.Id -Bandwidth 200MB -MaxIterations 5 -StopThreshold 300 -Mapping '[anon]' -Destination $mig)
        $rounds | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] } | Format-Table | Out-String -Width 160 | Out-Host
        $rounds[-1] | Format-List Converged, StopReason, Reason, TotalBytesSent, EstimatedDowntime, FinalImage | Out-String -Width 160 | Out-Host
        $chart = $rounds | Export-DirtyPageChart -Path (Join-Path $mig 'rounds.svg')
        Write-Host "  chart: $($chart.FullName); Test-MemoryImage on the final image: $(Test-MemoryImage $rounds[-1].FinalImage -Quiet)"
    } finally {
        Stop-WfTarget $wf
        # The demo leaves nothing behind in the temp folder.
        if ($mig -and (Test-Path $mig)) { Remove-Item -LiteralPath $mig -Recurse -Force }
    }
}
finally {
    Stop-TestTarget $target
}

Show 'The same workflow on an emulated process (any OS, kernel 6.18 rules, soft-dirty on)'
$e = New-EmulatedProcess -Name demo -Kernel 6.18 -Privileged
$m = $e | Add-EmulatedMapping -Length 64KB
Write-Host "mmap 16 pages at 0x$('{0:x}' -f $m.Start); write pages 0-7"
$e | Write-EmulatedMemory -Address $m.Start -Length 32KB
$e | Get-PageMap -AsRange | Format-Table | Out-String -Width 160 | Out-Host
Write-Host 'Clear-SoftDirty, then write pages 2 and 12 and read page 5'
$e | Clear-SoftDirty -Confirm:$false
$e | Write-EmulatedMemory -Address ($m.Start + 2 * 4KB)
$e | Write-EmulatedMemory -Address ($m.Start + 12 * 4KB)
$e | Read-EmulatedMemory -Address ($m.Start + 5 * 4KB)
Write-Host 'The soft-dirty pages: exactly the two written ones'
$e | Get-PageMap -SoftDirty | Format-Table | Out-String -Width 160 | Out-Host
$faults = $e.Faults
Write-Host "Faults taken: $($faults.WriteFaults) write, $($faults.ReadFaults) read, $($faults.SoftDirtyWriteProtectFaults) caused by soft-dirty write-protection"


Show 'A short emulated pre-copy migration: a HotSet workload runs in emulated time between rounds'
$e2 = New-EmulatedProcess -Name migrating
$m2 = $e2 | Add-EmulatedMapping -Length 64MB
$e2 | Write-EmulatedMemory -Address $m2.Start -Length $m2.Size
$workload = @{ Address = $m2.Start; Length = $m2.Size; Pattern = 'HotSet'; AccessesPerSecond = 20000; WriteRatio = 0.4; Seed = 1 }
$out = @($e2 | Invoke-PreCopyMigration -Workload $workload -Bandwidth 100MB -MaxIterations 8 -StopThreshold 512 -Confirm:$false)
$out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] } | Format-Table | Out-String -Width 160 | Out-Host
$out[-1] | Format-List Converged, StopReason, Reason, TotalBytesSent, EstimatedDowntime | Out-String -Width 160 | Out-Host
$svg = Join-Path ([IO.Path]::GetTempPath()) "softdirty-demo-emulated-$PID.svg"
$chart = $out | Export-DirtyPageChart -Path $svg -Title 'emulated pre-copy (HotSet)'
Write-Host "  chart of the rounds: $($chart.FullName) ($($chart.Length) bytes; removed again)"
Remove-Item -LiteralPath $svg
