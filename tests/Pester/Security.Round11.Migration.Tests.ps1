#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, eleventh attack round: pre-copy migration and image transfer (Invoke-PreCopyMigration -Destination and
# -ToSession, Receive-MemoryImage). New cases only: earlier rounds are in Security.Round*.Tests.ps1,
# Workflows.Security.Tests.ps1 and Remoting.Tests.ps1. Round 10's -Destination inside an image's folder comes first. Its
# other defect, a receiver killed mid-transfer, has no test here: the migration still waits for good in some runs (a
# 4-minute hang guard failed in a CI run), so the case stays open (issue 13's closing note) rather than flaky here.

BeforeDiscovery {
    $IsRoot = (id -u) -eq '0'
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $PtraceSkip = Get-WriteTrackingSkipReason -Relation Descendant
    $yama = if (Test-Path /proc/sys/kernel/yama/ptrace_scope) { [int](Get-Content /proc/sys/kernel/yama/ptrace_scope) } else { 0 }
    # -Method Hash reads the target's memory and stops it (ptrace) for the final round: a child of this PowerShell.
    $HashSkip = if ($yama -ge 3 -or ($yama -eq 2 -and -not $IsRoot)) { "Yama's ptrace_scope $yama forbids ptrace of a child here" } else { $null }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:module = Join-Path (Get-Module SoftDirty).ModuleBase 'SoftDirty.psd1'
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r11m')
    chmod 0755 $TestDrive $root
    $script:MigrateId = 'SoftDirty.Commands.InvokePreCopyMigrationCommand'
    $script:ReceiveId = 'SoftDirty.Commands.ReceiveMemoryImageCommand'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Everything left in a folder, hidden partial folders included.
    function Get-Left([string] $Folder) { @(Get-ChildItem -Force -LiteralPath $Folder -ErrorAction Ignore).Name }
    # A local out-of-process runspace stands in for the destination machine (no sshd needed); the module imported there.
    function New-LocalSession {
        $rs = [runspacefactory]::CreateOutOfProcessRunspace($null); $rs.Open()
        $s = [System.Management.Automation.Runspaces.PSSession]::Create($rs, 'Local', $null)
        $null = Invoke-Command -Session $s { Import-Module $using:module }
        $s
    }
    function New-Source([int] $Bytes = 256KB) {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length $Bytes
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
        $e
    }
    # The stream -ToSession sends: each file's name, then its bytes.
    function Get-ImageStream([string] $Image) {
        foreach ($f in 'pages.bin', 'index.bin', 'manifest.json') { $f; , [IO.File]::ReadAllBytes("$Image/$f") }
    }
}

Describe 'A destination inside a memory image''s folder (round 10)' -Tag 'Workflows', 'Security', 'Round11Migration' {
    BeforeAll {
        $script:src = New-Source
        $script:img = "$root/img"
        $null = Save-MemoryImage -Emulator $src -Path $img -Confirm:$false
        $script:imgFiles = Get-Left $img
    }
    It 'Invoke-PreCopyMigration -Destination <Label> is ImageExists and writes nothing inside the image' -ForEach @(
        @{ Label = 'a new folder in the image'; Sub = 'chain' }
        @{ Label = 'a folder two levels down'; Sub = 'a/b/chain' }
    ) {
        # Before the fix the rounds were written inside the image (round-01, round-02 under it).
        Get-ErrorId { $src | Invoke-PreCopyMigration -Bandwidth 1GB -Destination "$img/$Sub" -MaxIterations 1 -Confirm:$false } | Should -Be "ImageExists,$MigrateId"
        Get-Left $img | Should -Be $imgFiles
        Test-MemoryImage $img | Should -BeTrue
    }
    It 'a migration folder inside the image (made before the fix) refuses a chain deeper inside it too' {
        Get-ErrorId { $src | Invoke-PreCopyMigration -Bandwidth 1GB -Destination "$img/sub/deeper" -MaxIterations 1 -Confirm:$false } | Should -Be "ImageExists,$MigrateId"
        Get-Left $img | Should -Be $imgFiles
    }
    It 'Save-MemoryImage, Receive-MemoryImage and Restore-MemoryImage refuse a path inside the image the same way' {
        Get-ErrorId { Save-MemoryImage -Emulator $src -Path "$img/inner" -Confirm:$false } | Should -Be 'ImageExists,SoftDirty.Commands.SaveMemoryImageCommand'
        Get-ErrorId { Get-ImageStream $img | Receive-MemoryImage -Path "$img/inner" -Confirm:$false } | Should -Be "ImageExists,$ReceiveId"
        Get-ErrorId { Restore-MemoryImage -Path $img -Destination "$img/restored" -Confirm:$false } | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        Get-Left $img | Should -Be $imgFiles
    }
    It '-ToSession with a -Destination inside an image on the destination is ImageExists, leaving the image as it was' {
        $s = New-LocalSession
        try {
            Get-ErrorId { $src | Invoke-PreCopyMigration -ToSession $s -Destination "$img/chain" -MaxIterations 1 -Confirm:$false } | Should -Be "ImageExists,$MigrateId"
        } finally { Remove-PSSession $s }
        Get-Left $img | Should -Be $imgFiles
        Test-MemoryImage $img | Should -BeTrue
    }
    It 'a folder that only looks like part of an image (a manifest.json of something else) is no image: the migration goes there' {
        $app = New-Item -ItemType Directory (New-Dest)
        Set-Content "$app/manifest.json" '{ "name": "a web app" }'
        $r = @($src | Invoke-PreCopyMigration -Bandwidth 1GB -Destination "$app/chain" -MaxIterations 1 -Confirm:$false)
        $r[-1].Converged | Should -BeTrue
        Test-MemoryImage $r[-1].FinalImage | Should -BeTrue
    }
}
