#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, thirteenth attack round: unusual environments of the PowerShell that saves, restores and receives (its
# resource limits, working directory and environment variables), and unusual targets, with real processes (new cases
# only; earlier rounds are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    # prlimit (util-linux) sets a limit of a running process: a pwsh started under a small RLIMIT_FSIZE cannot even load
    # its runtime (CoreCLR writes a larger file at start), so the child lowers its own limit once it runs.
    $script:NoPrlimit = if (-not (Get-Command prlimit -ErrorAction Ignore)) { 'prlimit (util-linux) is not installed' }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r13env')
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Runs a script file in a child pwsh like this one (the module under test imported), through sh so that the
    # child can start with SIGXFSZ ignored; returns its exit code and its output lines.
    function Invoke-LimitedChild([string] $Script, [string[]] $Arguments, [switch] $IgnoreXfsz) {
        $pwsh = Get-PwshCommandLine
        $trap = if ($IgnoreXfsz) { "trap '' XFSZ; " } else { '' }
        $out = sh -c "$trap exec ""`$@""" sh @pwsh -NoProfile -NonInteractive -File $Script @Arguments 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Lines = @($out | ForEach-Object { "$_" }) }
    }
}

Describe 'A PowerShell whose file-size limit (ulimit -f) is smaller than what it writes' -Tag 'Security', 'Round13Env' {
    # A file written past RLIMIT_FSIZE makes the kernel send SIGXFSZ, whose default action ends the process: a save,
    # restore or receive killed PowerShell outright half-way (exit 153), leaving a hidden partial folder and no word of
    # why; with SIGXFSZ ignored the write failed with EFBIG, which .NET reports as a System.ArgumentOutOfRangeException
    # (the error id System.ArgumentOutOfRangeException,...). Both now say ImageWriteError (EFBIG) naming the limit,
    # and leave nothing behind, as a full disk does.
    BeforeAll {
        $script:big = New-FilledEmulator 64     # 256 KiB of memory: past a 64 KiB limit
        $script:bigImg = New-Dest
        $null = Save-MemoryImage -Emulator $big.Emulator -Path $bigImg -Confirm:$false
        $script:small = New-FilledEmulator 1    # 4 KiB: within it
        $script:smallImg = New-Dest
        $null = Save-MemoryImage -Emulator $small.Emulator -Path $smallImg -Confirm:$false
        $script:childScript = Join-Path $root 'fsize-child.ps1'
        @'
param([string] $Big, [string] $Small, [string] $Out)
Import-Module $env:SOFTDIRTY_MODULE
$ErrorActionPreference = 'Stop'
& prlimit --pid $PID --fsize=65536:unlimited   # the soft limit only: raised again below
if ($LASTEXITCODE -ne 0) { 'PRLIMIT FAILED'; exit 3 }
$cases = [ordered]@{
    save    = { Save-MemoryImage -Id $PID -Path "$Out/save" -Confirm:$false }
    restore = { Restore-MemoryImage -Path $Big -Destination "$Out/restore" }
    receive = { Get-Item "$Big/pages.bin", "$Big/index.bin", "$Big/manifest.json" | Receive-MemoryImage -Path "$Out/recv" }
}
foreach ($name in $cases.Keys) {
    $id = try { $null = & $cases[$name]; 'none' } catch { "$($_.FullyQualifiedErrorId)|$($_.CategoryInfo.Category)|$($_.Exception.Message)" }
    "CASE $name $id"
}
$fits = try { $null = Restore-MemoryImage -Path $Small -Destination "$Out/fits"; 'none' } catch { $_.FullyQualifiedErrorId }
"CASE fits $fits"
'CHILD DONE'
# PowerShell itself writes its start-up profile (StartupProfileData-NonInteractive, past 64 KiB) as it exits.
& prlimit --pid $PID --fsize=unlimited
'@ | Set-Content -LiteralPath $childScript
    }

    It 'with SIGXFSZ <Label>: Save, Restore and Receive say ImageWriteError (EFBIG, naming the limit) and leave nothing; what fits is written' -Skip:([bool]$NoPrlimit) -ForEach @(
        @{ Label = 'at its default (the kernel would kill PowerShell)'; Ignore = $false }
        @{ Label = 'ignored (the kernel would fail the write with EFBIG)'; Ignore = $true }
    ) {
        $out = New-Item -ItemType Directory (New-Dest)
        $r = Invoke-LimitedChild $childScript @($bigImg, $smallImg, $out.FullName) -IgnoreXfsz:$Ignore
        $text = $r.Lines -join "`n"
        $r.ExitCode | Should -Be 0 -Because "the child must not be killed by SIGXFSZ (exit 153): $text"
        $text | Should -BeLike '*CHILD DONE*'
        foreach ($name in 'save', 'restore', 'receive') {
            $line = $r.Lines | Where-Object { $_ -like "CASE $name *" }
            $line | Should -Not -BeNullOrEmpty -Because $name
            $id, $category, $message = ($line -replace "^CASE $name ", '') -split '\|', 3
            ($id -split ',')[0] | Should -Be 'ImageWriteError' -Because "$name (not a System.* id): $line"
            $category | Should -Be 'WriteError' -Because $name
            $message | Should -BeLike '*file-size limit (ulimit -f) of 65536 bytes*EFBIG*' -Because $name
        }
        $r.Lines | Should -Contain 'CASE fits none' -Because 'a restore within the limit is written as ever'
        Test-Path -LiteralPath "$out/fits/mappings.json" | Should -BeTrue
        @(Get-ChildItem -LiteralPath $out -Force | Where-Object Name -ne 'fits').Name | Should -BeNullOrEmpty -Because 'no partial folder or half-written image is left'
    }
}
