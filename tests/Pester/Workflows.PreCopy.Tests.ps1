# Invoke-PreCopyMigration on a real process: real rounds, a simulated link.
Describe 'Invoke-PreCopyMigration' -Tag 'Workflows' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
        $t = Start-WfTarget
        $r = New-WfRegion $t 2048
        $null = Send-WfTarget $t "hot $($r.Hex) 10 16 1000"
    }
    AfterAll { Stop-WfTarget $t }

    It 'converges when the link outruns the writes, writes a valid image chain and resumes the process' {
        $dest = Join-Path $TestDrive 'mig'
        $out = @(Invoke-PreCopyMigration -Id $t.Id -Bandwidth 400MB -MaxIterations 6 -StopThreshold 200 -Destination $dest -Mapping '[anon]')
        $rounds = @($out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] })
        $summary = $out[-1]
        $summary | Should -BeOfType ([SoftDirty.Workflows.PreCopySummary])
        $rounds[0].PagesSent | Should -BeGreaterOrEqual 2048
        $rounds[0].TransferSeconds | Should -Be ($rounds[0].BytesSent / 400MB)
        $rounds[0].RoundSeconds | Should -BeGreaterOrEqual $rounds[0].TransferSeconds
        $rounds[0].DirtyPages | Should -BeGreaterOrEqual 16
        $rounds[-1].Phase | Should -Be 'StopAndCopy'
        $summary.Converged | Should -BeTrue
        $summary.StopReason | Should -Be 'Converged'
        $summary.TotalBytesSent | Should -Be (($rounds | Measure-Object BytesSent -Sum).Sum)
        $summary.EstimatedDowntime | Should -BeGreaterThan 0
        Test-MemoryImage $summary.FinalImage | Should -BeTrue
        @(Get-MemoryImage $summary.FinalImage).Count | Should -Be $rounds.Count
        Get-ProcessState $t.Id | Should -Not -Be 'T'
    }

    It 'stops without converging when the threshold cannot be met, and says why' {
        # A real writer is scheduled by the kernel, not by the test: on a busy machine it can sit out a whole
        # short round, which then finds 0 dirty pages and meets -StopThreshold 0. So the decision is checked
        # against what the rounds saw (the emulator's tests pin the non-converging path in emulated time).
        $out = @(Invoke-PreCopyMigration -Id $t.Id -Bandwidth 1GB -MaxIterations 3 -StopThreshold 0 -Mapping '[anon]')
        $summary = $out[-1]
        $live = @($out | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] -and $_.Phase -ne 'StopAndCopy' })
        $summary.LiveRounds | Should -BeLessOrEqual 3
        $summary.LiveRounds | Should -Be $live.Count
        if ($summary.Converged) {
            $summary.StopReason | Should -Be 'Converged'
            $live[-1].DirtyPages | Should -Be 0 -Because 'only a round with no dirty page meets -StopThreshold 0'
        }
        else {
            $summary.StopReason | Should -BeIn 'MaxIterations', 'NotConverging'
            $summary.Reason | Should -Not -BeNullOrEmpty
            @($live | Where-Object DirtyPages -EQ 0) | Should -BeNullOrEmpty -Because 'a round with no dirty page would have converged'
        }
    }
}

Describe 'Invoke-PreCopyMigration link parameters' -Tag 'Workflows' {
    It 'needs -Bandwidth without -ToSession, and refuses -RestorePath there' {
        $e = New-EmulatedProcess
        { $e | Invoke-PreCopyMigration -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.InvokePreCopyMigrationCommand'
        { $e | Invoke-PreCopyMigration -Bandwidth 1GB -RestorePath (Join-Path $TestDrive r) -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.InvokePreCopyMigrationCommand'
    }
}

# The destination side of -ToSession, on its own: a memory image received through the pipeline.
Describe 'Receive-MemoryImage' -Tag 'Workflows' {
    BeforeAll {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 256KB
        $e | Write-EmulatedMemory -Address $m.Start -Length $m.Size
        $src = Join-Path $TestDrive 'src'
        $null = $e | Save-MemoryImage -Path "$src/0"
        $e | Write-EmulatedMemory -Address $m.Start -Length 4096
        $null = $e | Save-MemoryImage -Path "$src/1" -Parent "$src/0"
        # The stream -ToSession sends: each file's name, then its bytes.
        function Get-ImageStream([string] $Image) {
            foreach ($f in 'pages.bin', 'index.bin', 'manifest.json') { $f; , [IO.File]::ReadAllBytes("$Image/$f") }
        }
    }

    It 'writes a chain received as files or as a stream, verified, with the modes of a save' {
        $dest = Join-Path $TestDrive "copy-$([guid]::NewGuid().ToString('n'))"
        $full = Get-ChildItem -File "$src/0" | Receive-MemoryImage -Path "$dest/0"
        $full | Should -BeOfType ([SoftDirty.Images.MemoryImageInfo])
        $inc = Get-ImageStream "$src/1" | Receive-MemoryImage -Path "$dest/1"
        $inc.Kind | Should -Be 'Incremental'
        Test-MemoryImage "$dest/1" | Should -BeTrue
        (Get-Item "$dest/1").UnixMode | Should -Be 'drwx------'
        (Get-Item "$dest/1/pages.bin").UnixMode | Should -Be '-rw-------'
        [IO.File]::ReadAllBytes("$dest/1/pages.bin") | Should -Be ([IO.File]::ReadAllBytes("$src/1/pages.bin"))
    }

    It 'refuses an increment without its parent, a damaged stream and a foreign file name, leaving nothing' {
        $dest = Join-Path $TestDrive "bad-$([guid]::NewGuid().ToString('n'))"
        { Get-ImageStream "$src/1" | Receive-MemoryImage -Path "$dest/1" -ErrorAction Stop } | Should -Throw -ErrorId 'ImageParentMismatch,SoftDirty.Commands.ReceiveMemoryImageCommand'
        $stream = @(Get-ImageStream "$src/0")
        $stream[1] = [byte[]]$stream[1].Clone()
        $stream[1][100] = $stream[1][100] -bxor 0xff
        { $stream | Receive-MemoryImage -Path "$dest/0" -ErrorAction Stop } | Should -Throw -ErrorId 'ImageCorrupt,SoftDirty.Commands.ReceiveMemoryImageCommand'
        $cut = @(Get-ImageStream "$src/0")[0..3]
        { $cut | Receive-MemoryImage -Path "$dest/0" -ErrorAction Stop } | Should -Throw -ErrorId 'ImageIncomplete,SoftDirty.Commands.ReceiveMemoryImageCommand'
        { '../evil', , [byte[]](1, 2) | Receive-MemoryImage -Path "$dest/0" -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.ReceiveMemoryImageCommand'
        @(Get-ChildItem -Force -LiteralPath $dest -ErrorAction Ignore) | Should -BeNullOrEmpty -Because 'nothing is put in place, and no partial folder is left'
    }

    It 'refuses a destination that holds an image, and writes nothing with -WhatIf' {
        $dest = Join-Path $TestDrive "exists-$([guid]::NewGuid().ToString('n'))"
        $null = Get-ChildItem -File "$src/0" | Receive-MemoryImage -Path "$dest/0"
        { Get-ChildItem -File "$src/0" | Receive-MemoryImage -Path "$dest/0" -ErrorAction Stop } | Should -Throw -ErrorId 'ImageExists,SoftDirty.Commands.ReceiveMemoryImageCommand'
        Get-ChildItem -File "$src/0" | Receive-MemoryImage -Path "$dest/w" -WhatIf | Should -BeNullOrEmpty
        Test-Path "$dest/w" | Should -BeFalse
    }
}
