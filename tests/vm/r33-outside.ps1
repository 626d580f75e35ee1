# Writes of another process into a soft-dirty-tracked process (issue 13, round 33; a guest of tests/vm/r33-outside.sh on the
# setup.sh kernel, which has soft-dirty; prints recorded in tests/vm/recorded/r33-outside.6.1.txt). Another process writes
# mmtarget's private anonymous memory through /proc/PID/mem (the kernel's GUP with FOLL_FORCE, as a debugger or
# process_vm_writev writes: no CPU store of the target's), at each step the save of an increment passes (the module's test
# hook, InjectionSteps.OnStep: deterministic, no sleeps), one page a step; the chain's next increment is then restored and
# compared with the memory. One step lies between the read of soft-dirty and the clear (SoftDirtyWindow: the target stopped by
# ptrace, which stops none of another process's writes). Each line is "<what> <result>", with no address, id or time.
#   -Module   the SoftDirty.psd1 to import; -Target  tests/native/bin/mmtarget; -TestSupport  SoftDirty.TestSupport.psm1; -Work  an empty folder;
#   -Method  SoftDirty (WriteProtect or Hash: the same cases on a kernel without soft-dirty)
param([Parameter(Mandatory)] [string] $Module, [Parameter(Mandatory)] [string] $Target, [Parameter(Mandatory)] [string] $TestSupport, [Parameter(Mandatory)] [string] $Work, [string] $Method = 'SoftDirty')
$ErrorActionPreference = 'Stop'
$WarningPreference = 'SilentlyContinue'
$ProgressPreference = 'SilentlyContinue'
$env:SOFTDIRTY_STATE_DIR = Join-Path $Work 'state'
Import-Module $Module
Import-Module $TestSupport
function Say([string] $Line) { [Console]::Out.WriteLine($Line); [Console]::Out.Flush() }
$asm = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'SoftDirty.Engine' }
$Steps = $asm.GetType('SoftDirty.Injection.InjectionSteps', $true)
$Static = [Reflection.BindingFlags]'NonPublic,Public,Static'
$Recorded = $asm.GetType('SoftDirty.Tracking.TrackingEpoch', $true).GetField('RecordedStep', $Static).GetValue($null)
$Pages = 48

# Another process's write of 64 bytes of $Value at page $Page of the region: /proc/PID/mem, opened by this PowerShell.
function Write-Outside([int] $Id, [uint64] $Address, [int] $PageSize, [int] $Page, [byte] $Value) {
    $fs = [IO.File]::Open("/proc/$Id/mem", 'Open', 'ReadWrite', 'ReadWrite')
    try { $fs.Position = [int64]($Address + [uint64]$Page * $PageSize); $b = [byte[]]::new(64); [Array]::Fill($b, $Value); $fs.Write($b, 0, 64) }
    finally { $fs.Dispose() }
}
# Runs $Command with a hook that writes page 2 + k at the k-th step the command passes; returns the steps' names.
function Invoke-Hooked([scriptblock] $Command, [int] $Id, [uint64] $Address, [int] $PageSize) {
    $seen = [Collections.Generic.List[string]]::new()
    $rec = [Activator]::CreateInstance($Steps)
    $Steps.GetProperty('OnStep').SetValue($rec, [Action[string]] {
            param($s)
            $k = $seen.Count; $seen.Add($s)
            if ($k + 2 -lt $Pages) { Write-Outside $Id $Address $PageSize ($k + 2) ([byte](0x40 + $k)) }
        }.GetNewClosure())
    $Steps.GetProperty('Current', $Static).SetValue($null, $rec)
    try { $null = & $Command } finally { $Steps.GetProperty('Current', $Static).SetValue($null, $null) }
    , $seen
}
# "<case> <what>" lines: which pages the restore of $Image holds otherwise than the memory, by the step that wrote them.
function Say-Compared([string] $Case, [string] $Image, $T, $Region, $Seen) {
    $live = @(Get-LiveRegionWords $T.Id $Region $T.PageSize)
    $restored = @(Get-RestoredRegionWords $Image $Region $T.PageSize $Work)
    for ($k = 0; $k -lt $Seen.Count -and $k + 2 -lt $Pages; $k++) {
        Say "$Case written-at '$($Seen[$k])' restored $($live[$k + 2] -eq $restored[$k + 2])"
    }
    Say "$Case restored-equals-memory $((Compare-Object $live $restored -SyncWindow 0).Count -eq 0)"
    Say "$Case test-memoryimage $(Test-MemoryImage -Path $Image)"
}

$support = Get-SoftDirtySupport
Say "support softdirty $($support.SoftDirty)"
foreach ($freeze in $false, $true) {
    $case = if ($freeze) { 'chain-freeze' } else { 'chain' }
    $t = Start-TestTarget -Path $Target
    try {
        $region = @{ Address = [Convert]::ToUInt64($t.Send("map $Pages"), 16); Pages = $Pages }
        $region.Hex = '{0:x}' -f $region.Address
        $null = $t.Send("fill $($region.Hex) 0 $Pages 1")
        $full = Join-Path $Work "$case-full"
        $null = Save-MemoryImage -Id $t.Id -Path $full -Method $Method -Freeze:$freeze
        # The control: another process's write between two saves sets the page's soft-dirty bit.
        Write-Outside $t.Id $region.Address $t.PageSize 1 0x3f
        $inc1 = Join-Path $Work "$case-inc1"
        $seen = Invoke-Hooked { Save-MemoryImage -Id $t.Id -Path $inc1 -Parent $full -Method $Method -Freeze:$freeze } $t.Id $region.Address $t.PageSize
        Say "$case steps $($seen.Count) window $($seen.Contains($Recorded))"
        $inc2 = Join-Path $Work "$case-inc2"
        $null = Save-MemoryImage -Id $t.Id -Path $inc2 -Parent $inc1 -Method $Method -Freeze:$freeze
        Say-Compared "$case next-increment" $inc2 $t $region $seen
        # The remedy: -Verify compares every page with the parent's hashes.
        $inc3 = Join-Path $Work "$case-inc3"
        $null = Save-MemoryImage -Id $t.Id -Path $inc3 -Parent $inc2 -Method $Method -Freeze:$freeze -Verify
        Say-Compared "$case verify-increment" $inc3 $t $region $seen
    } finally { Stop-TestTarget $t }
}
# A migration: the write falls in the moment between the read and the clear that ends live round 1 (the second clear; the
# first comes before round 1 reads every page). The final image must hold what the memory holds after the migration.
$t = Start-TestTarget -Path $Target
try {
    $region = @{ Address = [Convert]::ToUInt64($t.Send("map $Pages"), 16); Pages = $Pages }
    $region.Hex = '{0:x}' -f $region.Address
    $null = $t.Send("fill $($region.Hex) 0 $Pages 1")
    $id = $t.Id; $ps = $t.PageSize; $at = $region.Address; $n = [ref] 0
    $rec = [Activator]::CreateInstance($Steps)
    $Steps.GetProperty('OnStep').SetValue($rec, [Action[string]] { param($s) if ($s -eq $Recorded -and $n.Value++ -eq 1) { Write-Outside $id $at $ps 2 0x42 } }.GetNewClosure())
    $Steps.GetProperty('Current', $Static).SetValue($null, $rec)
    try { $out = @(Invoke-PreCopyMigration -Id $t.Id -Method $Method -Bandwidth 1GB -MaxIterations 3 -StopThreshold 0 -Destination (Join-Path $Work 'migration') -Confirm:$false) }
    finally { $Steps.GetProperty('Current', $Static).SetValue($null, $null) }
    Say "migration window-writes $([int]($n.Value -ge 2))"
    $live = @(Get-LiveRegionWords $t.Id $region $t.PageSize)
    $restored = @(Get-RestoredRegionWords $out[-1].FinalImage $region $t.PageSize $Work)
    Say "migration page2-restored $($live[2] -eq $restored[2])"
    Say "migration restored-equals-memory $((Compare-Object $live $restored -SyncWindow 0).Count -eq 0)"
} finally { Stop-TestTarget $t }
Say 'done'
