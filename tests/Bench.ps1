<#
.SYNOPSIS
    Speed ratios of SoftDirty, each measured against its baseline in this one run; prints one JSON object.
    Absolute rates drift between machines (2 shared cores here): read the ratios.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $TargetPath,
    # The test kit (the emulator's benchmarks); build.ps1 builds it beside the staged module.
    [string] $TestKitPath = (Join-Path (Split-Path (Split-Path $ModulePath)) 'testkit/SoftDirty.TestKit.dll'),
    # Size of the real child region, in pages (default 1 GiB of 4 KiB pages).
    [int] $Pages = 262144,
    # Repetitions of each measurement; the best one counts.
    [int] $Repeat = 3
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath
Import-Module (Join-Path $PSScriptRoot 'Pester/SoftDirty.TestSupport.psm1')

# The emulator's benchmarks: the test kit, loaded after the module whose engine it uses.
Add-Type -Path $TestKitPath
Add-Type -TypeDefinition @'
using System;
using System.Management.Automation;
using System.Runtime.InteropServices;

namespace SoftDirtyBench
{
    public static unsafe class Baseline
    {
        [DllImport("libc", SetLastError = true)] static extern int open(string path, int flags);
        [DllImport("libc", SetLastError = true)] static extern int close(int fd);
        [DllImport("libc", SetLastError = true)] static extern nint pread64(int fd, void* buf, nuint count, long offset);

        // The bare loop: pread pagemap in 128 KiB chunks into one buffer and test bit 55 of each entry.
        public static long PreadDecode(int pid, ulong start, ulong pages)
        {
            int fd = open("/proc/" + pid + "/pagemap", 0);
            if (fd < 0) throw new InvalidOperationException("open pagemap: errno " + Marshal.GetLastWin32Error());
            var buf = new ulong[16384];
            long softDirty = 0;
            try
            {
                ulong page = start / 4096, end = page + pages;
                fixed (ulong* p = buf)
                    while (page < end)
                    {
                        ulong n = Math.Min((ulong)buf.Length, end - page);
                        nint got = pread64(fd, p, (nuint)(n * 8), (long)(page * 8));
                        if (got <= 0) throw new InvalidOperationException("pread pagemap failed");
                        long cnt = got / 8;
                        for (long i = 0; i < cnt; i++) if ((p[i] & (1UL << 55)) != 0) softDirty++;
                        page += (ulong)cnt;
                    }
            }
            finally { close(fd); }
            return softDirty;
        }
    }

    public sealed class Trivial { public ulong Address; public ulong Raw; public Trivial(ulong a, ulong r) { Address = a; Raw = r; } }

    // The trivial emitter: WriteObject of N small objects, nothing else.
    [Cmdlet(VerbsCommon.Get, "TrivialObject")]
    public sealed class GetTrivialObjectCommand : PSCmdlet
    {
        [Parameter(Mandatory = true)] public int Count { get; set; }
        protected override void ProcessRecord()
        {
            for (int i = 0; i < Count; i++) WriteObject(new Trivial((ulong)i * 4096, (ulong)i));
        }
    }
}
'@ -CompilerOptions '/unsafe' -PassThru | Where-Object Name -eq 'GetTrivialObjectCommand' | ForEach-Object { Import-Module $_.Assembly }

function Measure-Best([scriptblock] $Block) {
    $best = [double]::MaxValue
    for ($i = 0; $i -lt $Repeat; $i++) {
        [GC]::Collect()
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $null = & $Block
        $best = [Math]::Min($best, $sw.Elapsed.TotalSeconds)
    }
    $best
}

$support = Get-SoftDirtySupport
$target = Start-TestTarget -Path $TargetPath
try {
    $region = Send-TestTarget $target "map $Pages anon rw"
    $null = Send-TestTarget $target "write $region 0 $Pages"
    $address = [Convert]::ToUInt64($region, 16)
    $length = [uint64]$Pages * 4096
    $id = $target.Id
    $result = [ordered]@{
        machine       = "$([Environment]::ProcessorCount) cores, kernel $($support.KernelRelease), .NET $([Environment]::Version), pwsh $($PSVersionTable.PSVersion)"
        regionPages   = $Pages
        kernelSoftDirty = $support.SoftDirty
        kernelPagemapScan = $support.PagemapScan
    }

    # 1. Get-PageMap -SoftDirty (pread path, filter in C#) over the bare pread+decode loop.
    $bare = Measure-Best { [SoftDirtyBench.Baseline]::PreadDecode($id, $address, [uint64]$Pages) }
    $cmd = Measure-Best { Get-PageMap -Id $id -Address $address -Length $length -SoftDirty -ReadMethod Pread -WarningAction SilentlyContinue }
    $result.bareLoopPagesPerSecond = [math]::Round($Pages / $bare)
    $result.getPageMapSoftDirtyPagesPerSecond = [math]::Round($Pages / $cmd)
    $result.softDirtyFilterOverBareLoop = [math]::Round($bare / $cmd, 3)
    $result.softDirtyFilterOverBareLoopTarget = 0.9

    # 2. (Get-PageMap).Count objects/s over a trivial cmdlet emitting the same count.
    $count = 0
    $emit = Measure-Best { $script:count = (Get-PageMap -Id $id -Address $address -Length $length -WarningAction SilentlyContinue).Count }
    $trivial = Measure-Best { (Get-TrivialObject -Count $Pages).Count }
    $result.getPageMapObjectsPerSecond = [math]::Round($count / $emit)
    $result.trivialObjectsPerSecond = [math]::Round($Pages / $trivial)
    $result.emissionOverTrivial = [math]::Round($trivial / $emit, 3)
    $result.emissionOverTrivialTarget = 0.8

    # 3. PAGEMAP_SCAN path over pread path: the same filtered read both ways (identical results).
    if ($support.PagemapScan) {
        $sparse = Send-TestTarget $target "map $Pages anon rw"
        # Touch one page in a hundred: the pages a tracker has to find.
        $null = Send-TestTarget $target "write $sparse 0 $([int]($Pages / 100)) 100"
        $sparseAddress = [Convert]::ToUInt64($sparse, 16)
        $pread = Measure-Best { Get-PageMap -Id $id -Address $sparseAddress -Length $length -Present -ReadMethod Pread -WarningAction SilentlyContinue }
        $scan = Measure-Best { Get-PageMap -Id $id -Address $sparseAddress -Length $length -Present -ReadMethod PagemapScan -WarningAction SilentlyContinue }
        $result.sparsePresentPreadSeconds = [math]::Round($pread, 5)
        $result.sparsePresentScanSeconds = [math]::Round($scan, 5)
        $result.pagemapScanOverPread = [math]::Round($pread / $scan, 2)
        $sdPread = Measure-Best { Get-PageMap -Id $id -Address $address -Length $length -SoftDirty -ReadMethod Pread -WarningAction SilentlyContinue }
        $sdScan = Measure-Best { Get-PageMap -Id $id -Address $address -Length $length -SoftDirty -ReadMethod PagemapScan -WarningAction SilentlyContinue }
        $result.softDirtyScanOverPread = [math]::Round($sdPread / $sdScan, 2)
        $result.pagemapScanOverPreadTarget = 2.5
    } else {
        $result.pagemapScanOverPread = $null
        $result.pagemapScanNote = "not measured: $($support.PagemapScanReason)"
    }

    # The emulator, against the kernel and bare loops measured in this same run.
    $populated = [SoftDirty.TestKit.Benchmarks.EmulatorBenchmarks]::PopulatedProcess(1.0)
    $e = $populated.Item1; $eAddress = $populated.Item2; $eLength = $populated.Item3
    $ePages = $eLength / 4096
    # Get-PageMap over an emulated all-present 1 GiB (-Swapped matches nothing: the read path alone)
    # against the kernel's pread of the real 1 GiB region's pagemap ($bare above).
    $eRead = Measure-Best { Get-PageMap -Emulator $e -Address $eAddress -Length $eLength -Swapped }
    $result.emulatedGetPageMapPagesPerSecond = [math]::Round($ePages / $eRead)
    $result.emulatedGetPageMapOverKernelPread = [math]::Round($bare / $eRead * ($ePages / $Pages), 2)
    $result.emulatedGetPageMapOverKernelPreadTarget = 10
    $result.emulatedEngineEntriesPerSecond = [math]::Round([SoftDirty.TestKit.Benchmarks.EmulatorBenchmarks]::PagemapEntriesPerSecond(1.0, $Repeat))
    # Clear-SoftDirty over 1 GiB of present pages against a bare vectorised AND-NOT over as many words.
    $clearBase = [SoftDirty.TestKit.Benchmarks.EmulatorBenchmarks]::ClearRefs(1.0, $Repeat)
    $eClear = Measure-Best { Clear-SoftDirty -Emulator $e -Confirm:$false }
    $result.emulatedClearSeconds = [math]::Round($eClear, 5)
    $result.bareAndNotSeconds = [math]::Round($clearBase.BareSeconds, 5)
    $result.emulatedClearOverBareAndNot = [math]::Round($eClear / $clearBase.BareSeconds, 2)
    $result.emulatedClearOverBareAndNotTarget = 2
    # Invoke-EmulatedWorkload Random, 30% writes, against a bare loop drawing the same random pages.
    $accesses = 10000000
    $workBase = [SoftDirty.TestKit.Benchmarks.EmulatorBenchmarks]::RandomWorkload(1.0, $accesses, 0.3, 1, $Repeat)
    $eWork = Measure-Best { Invoke-EmulatedWorkload -Emulator $e -Address $eAddress -Length $eLength -Pattern Random -Count $accesses -WriteRatio 0.3 -Seed 1 }
    $result.emulatedWorkloadAccessesPerSecond = [math]::Round($accesses / $eWork)
    $result.emulatedWorkloadOverBareLoop = [math]::Round($eWork / $workBase.BareSeconds, 2)
    $result.emulatedWorkloadOverBareLoopTarget = 4
    # A 1 TiB sparse mapping with 1 million touched pages (uniformly random).
    $sparseBytes = [SoftDirty.TestKit.Benchmarks.EmulatorBenchmarks]::SparseMappingBytes([uint64]1 -shl 40, 1000000, 1)
    $result.sparse1TiBMillionPagesManagedMB = [math]::Round($sparseBytes / 1MB, 1)
    $result.sparse1TiBMillionPagesManagedMBTarget = 24
    # Per-page emission from an emulated process against the trivial emitter.
    $eEmit = Measure-Best { $script:count = (Get-PageMap -Emulator $e -Address $eAddress -Length $eLength).Count }
    $result.emulatedEmissionOverTrivial = [math]::Round($trivial / $eEmit * ($count / $Pages), 3)
    $result.emulatedEmissionOverTrivialTarget = 0.8
}
finally {
    Stop-TestTarget $target
}
[pscustomobject]$result | ConvertTo-Json
