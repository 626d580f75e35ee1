#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
<#
    Objects that cross a process boundary keep their meaning (issue 12.6): an address range travels as its
    string form at any depth (module/SoftDirty.types.ps1xml), every view also selects the Deserialized.* twin,
    and a job's samples print and chart like live ones.
#>

BeforeAll {
    Import-Module $env:SOFTDIRTY_MODULE -Force
    $script:Module = $env:SOFTDIRTY_MODULE
    function Get-Header($Objects) { (@($Objects | Format-Table | Out-String -Width 200 -Stream | Where-Object { $_.Trim() }) | Select-Object -First 1).Trim() }
    function Round-Trip($Objects) {
        $f = Join-Path $TestDrive "$([guid]::NewGuid().ToString('n')).xml"
        $Objects | Export-Clixml -LiteralPath $f
        Import-Clixml -LiteralPath $f
    }
}

Describe 'A job''s Watch-DirtyPage samples' {
    BeforeAll {
        $job = Start-Job -ArgumentList $Module {
            param($Module)
            Import-Module $Module
            $e = New-EmulatedProcess
            $m = $e | Add-EmulatedMapping -Length 1MB
            $e | Watch-DirtyPage -Count 3 -Interval 0.5 -Workload @{ Address = $m.Start; Length = 1MB; Pattern = 'HotSet'; AccessesPerSecond = 4000; WriteRatio = 1; Seed = 3 }
        }
        $samples = @(Receive-Job $job -Wait -AutoRemoveJob)
    }

    It 'come back as Deserialized samples whose Ranges are "0x...-0x..." strings' {
        $samples | Should -HaveCount 3
        $samples[0].PSObject.TypeNames[0] | Should -Be 'Deserialized.SoftDirty.Workflows.DirtyPageSample'
        $samples[0].Ranges | Should -Not -BeNullOrEmpty
        $samples.Ranges | ForEach-Object { "$_" | Should -Match '^0x[0-9a-f]+-0x[0-9a-f]+$' }
    }

    It 'print with the sample view: the Ranges column shows the ranges' {
        Get-Header $samples | Should -Match '^Index\s+Elapsed\s+DirtyPages\s+DirtyMiB'
        $row = @($samples | Format-Table | Out-String -Width 200 -Stream | Where-Object { $_ -match '^\s+1\s' })[0]
        $row | Should -Match '0x[0-9a-f]+-0x[0-9a-f]+'
    }

    It 'draw in Export-DirtyPageChart' {
        $svg = Join-Path $TestDrive 'job.svg'
        $null = $samples | Export-DirtyPageChart -Path $svg
        @(([xml](Get-Content -Raw $svg)).svg.rect | Where-Object { $_.fill -eq '#d7301f' -and -not $_.class }).Count | Should -BeGreaterThan 0
    }
}

Describe 'Export-Clixml round trips' {
    BeforeAll {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB
    }

    It '<Name> prints with the same columns after a round trip' -ForEach @(
        @{ Name = 'PageEntry'; Get = { $e | Get-PageMap } }
        @{ Name = 'PageRange'; Get = { $e | Get-PageMap -AsRange } }
        @{ Name = 'MemoryMapping'; Get = { $e | Get-MemoryMapping } }
        @{ Name = 'PageScanRegion'; Get = { $e | Search-PageMap -Category Present } }
        @{ Name = 'KernelFeatures'; Get = { $e | Get-SoftDirtySupport } }
    ) {
        $live = @(& $Get)
        $back = @(Round-Trip $live)
        $back[0].PSObject.TypeNames[0] | Should -BeLike 'Deserialized.SoftDirty.*'
        Get-Header $back | Should -Be (Get-Header $live)
    }

    It 'a sample''s ranges keep their string form at any depth' {
        $s = @($e | Watch-DirtyPage -Count 1 -Interval 1 -Workload @{ Address = $m.Start; Length = 64KB; Pattern = 'Sequential'; AccessesPerSecond = 8; WriteRatio = 1; Seed = 1 })
        $f = Join-Path $TestDrive 'deep.xml'
        $s | Export-Clixml -LiteralPath $f -Depth 5
        $back = Import-Clixml -LiteralPath $f
        @($back.Ranges) | Should -Be @($s.Ranges | ForEach-Object ToString)
    }
}
