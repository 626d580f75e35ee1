#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, tenth attack round, on the memory-image side (new cases only; rounds 2-9 are in Security.Round*.Tests.ps1,
# Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1): files mapped by the target that another process truncates,
# extends, rewrites with write(2), replaces by rename or punches holes in between a parent and its increment. Each chain
# is restored and compared with a full image of the same moment.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:WtSkip = Get-WriteTrackingSkipReason
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r10')
    chmod 0755 $TestDrive $root
    $env:SOFTDIRTY_STATE_DIR = Join-Path $TestDrive 'state10'
    function New-Dest { Join-Path $root "d-$([guid]::NewGuid().ToString('n'))" }
    # Writes $Bytes at $Offset of the file with write(2) (another process than the target: this one).
    function Write-FileAt([string] $Path, [int64] $Offset, [byte[]] $Bytes) {
        $fs = [IO.File]::Open($Path, 'Open', 'ReadWrite', 'ReadWrite')
        try { $fs.Position = $Offset; $fs.Write($Bytes, 0, $Bytes.Length) } finally { $fs.Dispose() }
    }
    function Get-Bytes([int] $Seed, [int] $Length) { $r = [Random]::new($Seed); $b = [byte[]]::new($Length); $r.NextBytes($b); , $b }
}

AfterAll { Remove-Item Env:SOFTDIRTY_STATE_DIR -ErrorAction SilentlyContinue }

Describe 'Files the target maps, changed by another process between a parent and its increment (a real process)' -Tag 'Workflows', 'Security', 'Round10Images' {
    BeforeEach {
        $script:t = Start-ImgTarget
        $script:anon = Send-ImgTarget $t 'map 16'
        $null = Send-ImgTarget $t "fill $anon 16 3"
        $script:shm = (Send-ImgTarget $t 'shm 16') -split ' '   # address, descriptor (hex)
        $null = Send-ImgTarget $t "fill $($shm[0]) 16 6"
        $script:memfd = "/proc/$($t.Id)/fd/$([Convert]::ToInt32($shm[1], 16))"
        $script:file = Join-Path $root "mapped-$(New-Guid)"
        [IO.File]::WriteAllBytes($file, (Get-Bytes 1 (16 * 4096)))
        $script:wtEnabled = $false
    }
    AfterEach {
        if ($wtEnabled) { Disable-WriteTracking -Id $t.Id -ErrorAction SilentlyContinue }
        Stop-ImgTarget $t
    }

    It '<Case>, -Method <Method>: images of every later moment are valid without a warning, and the increment restores what a full image of that moment restores' -ForEach @(
        foreach ($m in 'WriteProtect', 'Hash') {
            @{ Method = $m; Case = 'a memfd (MAP_SHARED) truncated to half its size' }
            @{ Method = $m; Case = 'a memfd truncated to half its size and extended back (the rest zeros)' }
            @{ Method = $m; Case = 'a MAP_SHARED file, written by the target, truncated to half through its path' }
            @{ Method = $m; Case = 'a MAP_PRIVATE file, partly written by the target, truncated to a quarter through its path' }
            @{ Method = $m; Case = 'a MAP_SHARED file mapped past its end, extended and filled with write(2), then read by the target' }
            @{ Method = $m; Case = 'a MAP_SHARED file, read by the target, rewritten with write(2)' }
            @{ Method = $m; Case = 'a MAP_PRIVATE file, read (never copied) by the target, rewritten with write(2)' }
            @{ Method = $m; Case = 'a MAP_SHARED file replaced by rename with a shorter one (the mapping keeps the old file)' }
            @{ Method = $m; Case = 'a sparse MAP_SHARED file, holes read by the target, then one hole filled with write(2) and one page punched' }
        }
    ) {
        if ($Method -eq 'WriteProtect' -and $WtSkip) { Set-ItResult -Skipped -Because $WtSkip; return }
        $map = $null
        switch -Wildcard ($Case) {
            'a MAP_SHARED file, written*' { $map = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "write $map 0 16" }
            'a MAP_PRIVATE file, partly written*' { $map = Send-ImgTarget $t "mapfile $file 16 0"; $null = Send-ImgTarget $t "touch $map 0 16"; $null = Send-ImgTarget $t "write $map 0 3" }
            '*mapped past its end*' {
                [IO.File]::WriteAllBytes($file, (Get-Bytes 2 (8 * 4096)))
                $map = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "touch $map 0 8"
            }
            'a MAP_SHARED file, read*' { $map = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "touch $map 0 16" }
            'a MAP_PRIVATE file, read*' { $map = Send-ImgTarget $t "mapfile $file 16 0"; $null = Send-ImgTarget $t "touch $map 0 16" }
            '*replaced by rename*' { $map = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "write $map 0 4"; $null = Send-ImgTarget $t "touch $map 4 12" }
            '*sparse*' {
                Remove-Item -LiteralPath $file
                $null = New-Item -ItemType File $file
                truncate --size (16 * 4096) $file
                Write-FileAt $file (2 * 4096) (Get-Bytes 3 (4 * 4096))
                $map = Send-ImgTarget $t "mapfile $file 16 1"; $null = Send-ImgTarget $t "touch $map 0 16"
            }
        }
        if ($Method -eq 'WriteProtect') { $null = Enable-WriteTracking -Id $t.Id; $script:wtEnabled = $true }
        $chain = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/0" -Method $Method
        switch -Wildcard ($Case) {
            'a memfd*' {
                truncate --size (8 * 4096) $memfd; $LASTEXITCODE | Should -Be 0
                if ($Case -like '*extended back*') { truncate --size (16 * 4096) $memfd; $LASTEXITCODE | Should -Be 0; $null = Send-ImgTarget $t "touch $($shm[0]) 8 8" }
            }
            '*truncated to half through*' { truncate --size (8 * 4096) $file; $LASTEXITCODE | Should -Be 0 }
            '*truncated to a quarter*' { truncate --size (4 * 4096) $file; $LASTEXITCODE | Should -Be 0 }
            '*mapped past its end*' { Write-FileAt $file (8 * 4096) (Get-Bytes 4 (8 * 4096)); $null = Send-ImgTarget $t "touch $map 8 8" }
            '*rewritten with write(2)' { Write-FileAt $file (3 * 4096) (Get-Bytes 5 (5 * 4096)) }
            '*replaced by rename*' {
                $new = "$file.new"
                [IO.File]::WriteAllBytes($new, (Get-Bytes 6 (4 * 4096)))
                Move-Item -LiteralPath $new -Destination $file -Force
            }
            '*sparse*' {
                Write-FileAt $file (10 * 4096) (Get-Bytes 7 4096)
                fallocate --punch-hole --keep-size --offset (3 * 4096) --length 4096 $file; $LASTEXITCODE | Should -Be 0
            }
        }
        $null = Save-MemoryImage -Id $t.Id -Path "$chain/1" -Parent "$chain/0" -Method $Method -WarningAction SilentlyContinue
        $full = New-Dest
        $null = Save-MemoryImage -Id $t.Id -Path $full -Method Hash -WarningVariable fullWarnings
        # Before the fix, with write tracking on, the pages past the new end of a truncated file kept uffd-wp markers
        # that pagemap shows as swapped: every later image counted them unreadable, warned, and was not valid.
        $fullWarnings | Should -BeNullOrEmpty -Because "$Case ($Method)"
        Test-MemoryImage $full | Should -BeTrue -Because "$Case ($Method)"
        Test-MemoryImage "$chain/1" | Should -BeTrue -Because "$Case ($Method)"
        Compare-RestoredImage "$chain/1" $full $root | Should -BeNullOrEmpty -Because "$Case ($Method)"
    }
}
