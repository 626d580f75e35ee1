#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, fifteenth attack round: resource limits and the environment of the PowerShell that runs the module (its
# file-size limit, home and temp folders, umask, filesystems that run out, signals), and targets at the kernel's limits.
# New cases only: earlier rounds are in Security.Round*.Tests.ps1 (round 13's Environment file: ulimit -f of a save,
# restore, receive and chart of an emulated process, ulimit -n, a relative XDG_STATE_HOME, a full state folder; round 5:
# a 1 MiB tmpfs, umask 0777 of a receive; round 6: setgid, ACLs, read-only mounts), Workflows.Security.Tests.ps1 and
# WriteTracking.Tests.ps1.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = $IsLinux -and (id -u) -eq '0'
    $script:WtSkip = if ($IsLinux) { Get-WriteTrackingSkipReason -Relation Descendant } else { 'Linux only' }
    $script:NoPrlimit = if (-not (Get-Command prlimit -CommandType Application -ErrorAction Ignore)) { 'prlimit (util-linux) is not installed' }
    # A tmpfs of a given size or inode count: root, and a mount that works here (a container may forbid it).
    $script:MountSkip = if (-not $IsRoot) { 'needs root (to mount a tmpfs)' } else {
        $probe = Join-Path ([IO.Path]::GetTempPath()) "r15-mount-$([guid]::NewGuid().ToString('n'))"
        $null = New-Item -ItemType Directory $probe
        $said = mount -t tmpfs -o size=64k tmpfs $probe 2>&1
        if ($LASTEXITCODE -eq 0) { umount $probe; $null } else { "mount -t tmpfs fails here: $said" }
        Remove-Item $probe
    }
    # Tens of thousands of mappings: vm.max_map_count must leave room for them and the process's own.
    $script:ManyMaps = 20000
    $maxMaps = if ($IsLinux) { [int](Get-Content /proc/sys/vm/max_map_count) } else { 0 }
    $script:MapSkip = if ($WtSkip) { $WtSkip } elseif ($maxMaps -lt $ManyMaps + 1000) { "vm.max_map_count is $maxMaps" }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r15lim')
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state'
    $script:support = Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Everything left in a folder, hidden partial folders included, one name a line.
    function Get-Left([string] $Folder) { Get-ChildItem -Force -LiteralPath $Folder -ErrorAction Ignore | ForEach-Object Name }
    function Get-UffdCount([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count }
    # "STATE TRACERPID" of a process: whether it runs, and who traces it.
    function Get-StopState([int] $Id) {
        $status = Get-Content "/proc/$Id/status"
        '{0} {1}' -f (($status | Where-Object { $_ -like 'State:*' }) -split '\s+')[1], (($status | Where-Object { $_ -like 'TracerPid:*' }) -split '\s+')[1]
    }
    # Runs a script file in a child pwsh like this one, through sh so that $Prefix (shell: umask, cd, env) applies to
    # it; returns its exit code and its output lines. The script gets the module under test in $env:SOFTDIRTY_MODULE.
    function Invoke-Child([string] $Script, [string[]] $Arguments = @(), [string] $Prefix = '') {
        $pwsh = Get-PwshCommandLine
        $out = sh -c "$Prefix exec ""`$@""" sh @pwsh -NoProfile -NonInteractive -File $Script @Arguments 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Lines = @($out | ForEach-Object { "$_" }) }
    }
    # The value of the line "NAME value" a child printed.
    function Get-Said($Child, [string] $Name) {
        $line = @($Child.Lines | Where-Object { $_ -like "$Name *" })
        if ($line.Count -ne 1) { throw "the child said $($line.Count) lines '$Name': $($Child.Lines -join "`n")" }
        $line[0].Substring($Name.Length + 1)
    }
    # A script file in the test folder; its text starts with the module and the test support imported.
    function New-ChildScript([string] $Text) {
        $path = Join-Path $root "child-$([guid]::NewGuid().ToString('n')).ps1"
        "Import-Module `$env:SOFTDIRTY_MODULE; Import-Module '$support'`n$Text" | Set-Content -LiteralPath $path
        $path
    }
    # A local out-of-process runspace stands in for the destination machine; the module imported there.
    function New-LocalSession {
        $rs = [runspacefactory]::CreateOutOfProcessRunspace($null); $rs.Open()
        $s = [System.Management.Automation.Runspaces.PSSession]::Create($rs, 'Local', $null)
        $null = Invoke-Command -Session $s { Import-Module $using:env:SOFTDIRTY_MODULE }
        $s
    }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'A PowerShell whose file-size limit (ulimit -f) is smaller than what it writes of a real process' -Tag 'Security', 'Round15Limits', 'WriteTracking' -Skip:([bool]$WtSkip -or [bool]$NoPrlimit) {
    # Round 13 tried save, restore, receive and chart of an emulated process. Here a real one: -Freeze, increments
    # (the write-tracking reset is recorded, and pages re-protected, before the image is written), migrations to
    # -Destination, and the write-tracking state file itself past the limit (Enable, watch, save).
    It 'each says ImageWriteError (EFBIG), leaves the target running, untraced and with the tracking it had, leaves nothing, and the next increments are exact' {
        $dir = New-Item -ItemType Directory (New-Dest)
        $script = New-ChildScript @'
param([string] $Dir)
$ErrorActionPreference = 'Stop'
$env:SOFTDIRTY_STATE_DIR = "$Dir/state"
function Uffd([int] $Id) { @(Get-ChildItem "/proc/$Id/fd" | Where-Object LinkTarget -eq 'anon_inode:[userfaultfd]').Count }
function Stop-State([int] $Id) { (Get-Content "/proc/$Id/status" | Where-Object { $_ -like 'State:*' -or $_ -like 'TracerPid:*' } | ForEach-Object { ($_ -split '\s+')[1] }) -join ' ' }
function Try-Case([string] $Name, [int] $Id, [scriptblock] $Run) {
    $said = try { $null = & $Run; 'none' } catch { "$(($_.FullyQualifiedErrorId -split ',')[0])|$($_.CategoryInfo.Category)|$($_.Exception.Message)" }
    "CASE $Name $said"
    "AFTER $Name $(Stop-State $Id) $(Uffd $Id)"
}
$t = Start-ImgTarget
try {
    $a = Send-ImgTarget $t 'map 64'
    $null = Send-ImgTarget $t "fill $a 64 3"
    $null = Save-MemoryImage -Id $t.Id -Path "$Dir/out/wp0" -Method WriteProtect -WarningAction SilentlyContinue
    $null = Save-MemoryImage -Id $t.Id -Path "$Dir/out/h0" -Method Hash
    $null = Send-ImgTarget $t "write $a 0 40"
    # 64 KiB: the state file (some hundred bytes) fits, pages.bin (40 written pages and more) does not.
    & prlimit --pid $PID --fsize=65536:unlimited
    Try-Case freeze $t.Id { Save-MemoryImage -Id $t.Id -Path "$Dir/out/fz" -Method Hash -Freeze }
    Try-Case incwp $t.Id { Save-MemoryImage -Id $t.Id -Path "$Dir/out/wp1" -Parent "$Dir/out/wp0" -Method WriteProtect -WarningAction SilentlyContinue }
    Try-Case inchash $t.Id { Save-MemoryImage -Id $t.Id -Path "$Dir/out/h1" -Parent "$Dir/out/h0" -Method Hash -Freeze }
    Try-Case mighash $t.Id { Invoke-PreCopyMigration -Id $t.Id -Destination "$Dir/out/mh" -Method Hash -MaxIterations 2 -Bandwidth 1GB -Confirm:$false }
    Try-Case migwp $t.Id { Invoke-PreCopyMigration -Id $t.Id -Destination "$Dir/out/mw" -Method WriteProtect -MaxIterations 2 -Bandwidth 1GB -Confirm:$false }
    # 100 bytes: not even the state file.
    & prlimit --pid $PID --fsize=100:
    Try-Case stateinc $t.Id { Save-MemoryImage -Id $t.Id -Path "$Dir/out/wp1" -Parent "$Dir/out/wp0" -Method WriteProtect -WarningAction SilentlyContinue }
    & prlimit --pid $PID --fsize=unlimited
    'LEFT ' + ((Get-ChildItem -Force -LiteralPath "$Dir/out").Name -join ',')
    # The chains go on, exact: a full image of this moment restores the same.
    $null = Save-MemoryImage -Id $t.Id -Path "$Dir/out/wp1" -Parent "$Dir/out/wp0" -Method WriteProtect -WarningAction SilentlyContinue
    $null = Save-MemoryImage -Id $t.Id -Path "$Dir/out/h1" -Parent "$Dir/out/h0" -Method Hash
    $null = Save-MemoryImage -Id $t.Id -Path "$Dir/out/full" -Method Hash
    'DIFFWP ' + ((Compare-RestoredImage "$Dir/out/wp1" "$Dir/out/full" "$Dir/cmp") -join ';')
    'DIFFHASH ' + ((Compare-RestoredImage "$Dir/out/h1" "$Dir/out/full" "$Dir/cmp") -join ';')
    $t2 = Start-ImgTarget
    try {
        & prlimit --pid $PID --fsize=100:
        Try-Case enable $t2.Id { Enable-WriteTracking -Id $t2.Id }
        Try-Case watch $t2.Id { Watch-DirtyPage -Id $t2.Id -Count 2 -Interval 0.1 -Method WriteProtect }
        Try-Case savewp $t2.Id { Save-MemoryImage -Id $t2.Id -Path "$Dir/out/t2" -Method WriteProtect }
        & prlimit --pid $PID --fsize=unlimited
    } finally { Stop-ImgTarget $t2 }
    'STATE ' + ((Get-ChildItem -LiteralPath "$Dir/state" -Filter "$($t2.Id).*").Name -join ',')
} finally { Stop-ImgTarget $t }
'CHILD DONE'
& prlimit --pid $PID --fsize=unlimited
'@
        $r = Invoke-Child $script @($dir.FullName)
        $text = $r.Lines -join "`n"
        $r.ExitCode | Should -Be 0 -Because $text
        $r.Lines | Should -Contain 'CHILD DONE' -Because $text
        foreach ($case in 'freeze', 'incwp', 'inchash', 'mighash', 'migwp', 'stateinc', 'enable', 'watch', 'savewp') {
            $id, $category, $message = (Get-Said $r "CASE $case") -split '\|', 3
            $id | Should -Be 'ImageWriteError' -Because "$case (not a System.* id, not a success): $text"
            $category | Should -Be 'WriteError' -Because $case
            $message | Should -BeLike '*file-size limit (ulimit -f)*EFBIG*' -Because $case
            $state, $tracer, $uffd = (Get-Said $r "AFTER $case") -split ' '
            $state | Should -Not -BeIn 't', 'T' -Because "$case resumes the target"
            $tracer | Should -Be '0' -Because "$case lets go of the target"
            # The first target keeps the tracking its WriteProtect chain enabled; the second had none and has none.
            $uffd | Should -Be $(if ($case -in 'enable', 'watch', 'savewp') { '0' } else { '1' }) -Because "$case leaves the tracking as it was"
        }
        Get-Said $r 'LEFT' | Should -Be 'h0,wp0' -Because 'no partial folder, empty chain folder or half-written image is left'
        Get-Said $r 'DIFFWP' | Should -BeNullOrEmpty -Because 'the WriteProtect increment after the failed ones holds every page written'
        Get-Said $r 'DIFFHASH' | Should -BeNullOrEmpty
        Get-Said $r 'STATE' | Should -BeNullOrEmpty -Because 'no state file of a tracking that was not enabled'
    }
}
