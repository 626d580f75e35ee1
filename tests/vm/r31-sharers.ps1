# Soft-dirty and one memory under two pids (issue 13, round 31; a guest of tests/vm/r31-sharers.sh on the setup.sh kernel,
# which has soft-dirty; prints recorded in tests/vm/recorded/r31-sharers.6.1.txt). mmtarget's twin shares its memory (clone
# CLONE_VM without CLONE_THREAD, a pid of its own; with files 1 also CLONE_FILES). A chain of one pid is armed, a page is
# written, the soft-dirty bits are cleared through the OTHER pid (Clear-SoftDirty), another page is written, and the chain's
# next increment is restored and compared with the memory: a clear through one pid takes the bits of both, so an increment
# that trusted them would miss the first write. Each line is "<what> <result>", with no address, id or time.
#   -Module   the SoftDirty.psd1 to import; -Target  tests/native/bin/mmtarget; -TestSupport  SoftDirty.TestSupport.psm1; -Work  an empty folder
param([Parameter(Mandatory)] [string] $Module, [Parameter(Mandatory)] [string] $Target, [Parameter(Mandatory)] [string] $TestSupport, [Parameter(Mandatory)] [string] $Work)
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
Import-Module $Module
Import-Module $TestSupport
function Say([string] $Line) { [Console]::Out.WriteLine($Line); [Console]::Out.Flush() }
$support = Get-SoftDirtySupport
Say "support softdirty $($support.SoftDirty)"
foreach ($files in 0, 1) {
    foreach ($chainOf in 'leader', 'twin') {
        $t = Start-TestTarget -Path $Target
        try {
            $region = @{ Address = [Convert]::ToUInt64($t.Send('map 8'), 16); Pages = 8 }
            $region.Hex = '{0:x}' -f $region.Address
            $null = $t.Send("fill $($region.Hex) 0 8 1")
            $twin = [int]$t.Send("twin $files")
            $chainId, $otherId = if ($chainOf -eq 'leader') { $t.Id, $twin } else { $twin, $t.Id }
            $case = "files$files chain-of-$chainOf"
            $full = Join-Path $Work "$case-full"
            $null = Save-MemoryImage -Id $chainId -Path $full -Method SoftDirty
            $null = $t.Send("fill $($region.Hex) 2 1 2")
            $said = try { $null = Clear-SoftDirty -Id $otherId; 'ok' } catch { ($_.FullyQualifiedErrorId -split ',')[0] }
            Say "$case clear-through-other $said"
            # The control: the clear through the other pid took the bit of the page written before it, seen through the chain's pid.
            $bits = (Get-PageMap -Id $chainId -Address ($region.Address + 2 * $t.PageSize) -Length $t.PageSize | ForEach-Object SoftDirty) -join ','
            Say "$case page2-softdirty-after-clear $bits"
            $null = $t.Send("twinfill $($region.Hex) 5 1 5")
            $incr = Join-Path $Work "$case-incr"
            $null = Save-MemoryImage -Id $chainId -Path $incr -Parent $full
            $live = @(Get-LiveRegionWords $chainId $region $t.PageSize)
            $restored = @(Get-RestoredRegionWords $incr $region $t.PageSize $Work)
            Say "$case live-page2 $('{0:x}' -f $live[2]) live-page5 $('{0:x}' -f $live[5])"
            Say "$case restored-equals-memory $((Compare-Object $live $restored -SyncWindow 0).Count -eq 0)"
            Say "$case test-memoryimage $(Test-MemoryImage -Path $incr)"
            $null = $t.Send('twinexit')
        } finally { Stop-TestTarget $t }
    }
}
Say 'done'
