<#
.SYNOPSIS
    Speed ratios of SoftDirty, each measured against its baseline in this one run; prints one JSON object.
    Absolute rates drift between machines (2 shared cores here): read the ratios.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $TargetPath,
    # Size of the real child region, in pages (default 1 GiB of 4 KiB pages).
    [int] $Pages = 262144,
    # Repetitions of each measurement; the best one counts.
    [int] $Repeat = 3
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath
Import-Module (Join-Path $PSScriptRoot 'Pester/TestTarget.psm1')

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
}
finally {
    Stop-TestTarget $target
}
[pscustomobject]$result | ConvertTo-Json
