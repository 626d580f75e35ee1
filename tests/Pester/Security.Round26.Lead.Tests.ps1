#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twenty-sixth attack round, the lead's cases: what a failed command leaves of the folders it made on the way to
# its destination. Save-MemoryImage, Restore-MemoryImage, Receive-MemoryImage and Invoke-PreCopyMigration make the missing
# folders of their destination (0700, like mkdir -p). Found: a failed command left them (a save into a/b/img refused for
# its -Mapping left a/b; a receive of a stream that does not verify, or a -ToSession round that fails there, left the
# -Destination folder on the destination machine). Now a command that fails takes back the folders it made, while they
# are empty; folders that were there, or that got something meanwhile, stay. The engine's cases: xunit
# tests/SoftDirty.Engine.Tests/Images/MadeFoldersRound26Tests.cs.
# Also: a 32-bit (i386) process on x86-64. Injection refused it by its register set, but only once tried:
# Get-SoftDirtySupport said WriteProtect True, and Watch-DirtyPage, Invoke-PreCopyMigration and Save-MemoryImage with the
# default -Method Auto failed with WriteProtectNotSupported on a kernel without soft-dirty, where Hash tracks the process.
# Now the support check tells such a process by its auxiliary vector (32-bit words), and Auto picks Hash.

BeforeDiscovery {
    # The 32-bit target is built here (tests/native/compat32): where the compiler or the kernel cannot, its cases skip saying why.
    $script:Compat32 = Join-Path ([IO.Path]::GetTempPath()) "sd-compat32-$PID"
    $script:Compat32Skip = if (-not $IsLinux -or [Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture -ne 'X64') { 'x86-64 Linux only: the target is an i386 program' }
    elseif (-not (Get-Command cc -CommandType Application -ErrorAction Ignore)) { 'no C compiler (cc) to build the 32-bit target' }
    else {
        $src = Join-Path $PSScriptRoot '../native/compat32/compat32.c'
        $said = & cc -m32 -nostdlib -static -ffreestanding -fno-pic -O1 -o $Compat32 $src 2>&1
        if ($LASTEXITCODE -ne 0) { "cc -m32 cannot build the 32-bit target here: $($said | Select-Object -First 1)" }
        else {
            # The kernel may run without 32-bit support (CONFIG_IA32_EMULATION off, or ia32_emulation=0 at boot): then exec fails.
            try { $p = [Diagnostics.Process]::Start([Diagnostics.ProcessStartInfo]@{ FileName = $Compat32; RedirectStandardInput = $true; RedirectStandardOutput = $true })
                $line = $p.StandardOutput.ReadLine(); $p.StandardInput.Close(); $null = $p.WaitForExit(5000)
                if ($line -ne 'READY') { "the 32-bit target did not start (it said '$line')" } }
            catch { "this kernel does not run 32-bit programs: $($_.Exception.InnerException.Message ?? $_.Exception.Message)" }
        }
    }
}

BeforeAll {
    $script:Compat32 = Join-Path ([IO.Path]::GetTempPath()) "sd-compat32-$PID"
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = (New-Item -ItemType Directory (Join-Path $TestDrive 'r26lead')).FullName
    $script:target = Start-ImgTarget
    # Everything under $root, relative, sorted (empty: nothing was left).
    function Get-Left { @(Get-ChildItem -LiteralPath $root -Recurse -Force | ForEach-Object { [IO.Path]::GetRelativePath($root, $_.FullName) } | Sort-Object) }
}

AfterAll {
    Stop-ImgTarget $target
    Remove-Item -LiteralPath $Compat32 -Force -ErrorAction Ignore
}

Describe 'A failed command takes back the folders it made (round 26)' -Tag 'Security', 'Round26Lead' {
    AfterEach { Get-ChildItem -LiteralPath $root -Force | Remove-Item -Recurse -Force }

    It 'Save-MemoryImage refused for its -Mapping leaves no folder of its -Path' {
        # Before: a and a/b stayed.
        Get-ErrorId { Save-MemoryImage -Id $target.Id -Path (Join-Path $root 'a/b/img') -Mapping 'no-such-mapping*' -Confirm:$false } |
            Should -Be 'MappingNotFound,SoftDirty.Commands.SaveMemoryImageCommand'
        Get-Left | Should -BeNullOrEmpty
    }

    It 'keeps the folders that were there and the image beside it' {
        $null = Save-MemoryImage -Id $target.Id -Path (Join-Path $root 'kept/img') -Confirm:$false
        Get-ErrorId { Save-MemoryImage -Id $target.Id -Path (Join-Path $root 'kept/x/y/img') -Mapping 'no-such-mapping*' -Confirm:$false } |
            Should -Be 'MappingNotFound,SoftDirty.Commands.SaveMemoryImageCommand'
        Get-Left | Should -Be @('kept', 'kept/img', 'kept/img/index.bin', 'kept/img/manifest.json', 'kept/img/pages.bin')
        Test-MemoryImage -Path (Join-Path $root 'kept/img') | Should -BeTrue
    }

    It 'Receive-MemoryImage of a stream that does not verify leaves no folder (a -ToSession round that fails there)' {
        # Before: r and r/s stayed (the migration's -Destination on the destination machine).
        Get-ErrorId { 'manifest.json', [byte[]](1, 2, 3) | Receive-MemoryImage -Path (Join-Path $root 'r/s/round-01') -Confirm:$false } |
            Should -Be 'ImageCorrupt,SoftDirty.Commands.ReceiveMemoryImageCommand'
        Get-Left | Should -BeNullOrEmpty
    }

    It 'Restore-MemoryImage of an image that does not verify leaves no folder of its -Destination' {
        $image = Join-Path $root 'src/img'
        $null = Save-MemoryImage -Id $target.Id -Path $image -Confirm:$false
        $pages = Join-Path $image 'pages.bin'
        $bytes = [IO.File]::ReadAllBytes($pages)
        $bytes[0] = $bytes[0] -bxor 0xff
        [IO.File]::WriteAllBytes($pages, $bytes)
        Get-ErrorId { Restore-MemoryImage -Path $image -Destination (Join-Path $root 'out/t/u') -Confirm:$false } |
            Should -Be 'ImageCorrupt,SoftDirty.Commands.RestoreMemoryImageCommand'
        Get-Left | Where-Object { $_ -notlike 'src*' } | Should -BeNullOrEmpty
    }

    It 'Invoke-PreCopyMigration refused for its -Mapping leaves no folder of its -Destination' {
        Get-ErrorId { Invoke-PreCopyMigration -Id $target.Id -Destination (Join-Path $root 'm/n/mig') -Bandwidth 1GB -Mapping 'no-such-mapping*' -Confirm:$false } |
            Should -Be 'MappingNotFound,SoftDirty.Commands.InvokePreCopyMigrationCommand'
        Get-Left | Should -BeNullOrEmpty
    }
}

Describe 'A 32-bit process is tracked by Hash, never tried by injection (round 26)' -Tag 'Security', 'Round26Lead' -Skip:([bool]$Compat32Skip) {
    BeforeAll {
        $script:c32 = [Diagnostics.Process]::Start([Diagnostics.ProcessStartInfo]@{ FileName = $Compat32; RedirectStandardInput = $true; RedirectStandardOutput = $true })
        $null = $c32.StandardOutput.ReadLine()
        # Untouched: never stopped or traced by the commands below.
        function Get-Untouched { $s = Get-Content -Raw "/proc/$($c32.Id)/status"; ($s -match '(?m)^TracerPid:\s+0$') -and ($s -match '(?m)^State:\s+S') }
    }
    AfterAll { if ($c32 -and -not $c32.HasExited) { $c32.StandardInput.Close(); if (-not $c32.WaitForExit(5000)) { $c32.Kill() } } }

    It 'Get-SoftDirtySupport -Id says WriteProtect False, WriteProtectNotSupported, and why' {
        # Before: WriteProtect True, no reason.
        $s = Get-SoftDirtySupport -Id $c32.Id
        $s.WriteProtect | Should -BeFalse
        $s.ErrorId | Should -Be 'WriteProtectNotSupported'
        Get-Untouched | Should -BeTrue
    }

    It 'Enable-WriteTracking refuses it with WriteProtectNotSupported and leaves it as it was' {
        Get-ErrorId { Enable-WriteTracking -Id $c32.Id -Confirm:$false } | Should -Be 'WriteProtectNotSupported,SoftDirty.Commands.EnableWriteTrackingCommand'
        Get-Untouched | Should -BeTrue
    }

    It 'Watch-DirtyPage, Invoke-PreCopyMigration and Save-MemoryImage with the default method track it without injection' {
        # Before (a kernel without soft-dirty): WriteProtectNotSupported from each. With soft-dirty, Auto picks SoftDirty.
        $samples = @(Watch-DirtyPage -Id $c32.Id -Duration 0.2 -Interval 0.1)
        $samples.Count | Should -BeGreaterThan 0
        $samples.Method | Should -Not -Contain 'WriteProtect'
        $summary = Invoke-PreCopyMigration -Id $c32.Id -Destination (Join-Path $root 'c32-mig') -Bandwidth 1GB -Confirm:$false | Select-Object -Last 1
        $summary.Method | Should -Not -Be 'WriteProtect'
        $image = Save-MemoryImage -Id $c32.Id -Path (Join-Path $root 'c32-img') -Freeze -Confirm:$false
        $image.Method | Should -Not -Be 'WriteProtect'
        $image.DataPages | Should -BeGreaterOrEqual 4
        Test-MemoryImage -Path $image.Path | Should -BeTrue
        Get-Untouched | Should -BeTrue
    }
}
