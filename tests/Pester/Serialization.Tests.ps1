#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
<#
    Objects that cross a process boundary keep their meaning (issue 12.6): an address range travels as its
    string form at any depth (src/SoftDirty/Infrastructure/ModuleTypeData.cs), every view also selects the Deserialized.* twin,
    and a job's samples print and chart like live ones.
#>

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
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

Describe 'ConvertTo-Json and Export-Csv carry names and joined lists (issue 12.8)' {
    BeforeAll {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB
        $work = @{ Address = $m.Start; Length = 64KB; Pattern = 'HotSet'; AccessesPerSecond = 2000; WriteRatio = 1; Seed = 1 }
        $img = Join-Path $TestDrive 'img'
        $script:Info = $e | Save-MemoryImage -Path $img
        # A truncated pages file: Test-MemoryImage -Detailed then reports a problem (a list of objects with an enum).
        $pages = Get-ChildItem -LiteralPath $img -Filter 'pages*' | Select-Object -First 1
        [IO.File]::WriteAllBytes($pages.FullName, [byte[]]::new(3))
        $script:Migration = @($e | Invoke-PreCopyMigration -Workload $work -Bandwidth 100MB -MaxIterations 2 -StopThreshold 0)
        function Get-Checked($Object) {
            # The properties whose JSON/CSV form this issue defines: enums (also one level down, in list items) and lists.
            foreach ($p in $Object.GetType().GetProperties()) {
                $t = [Nullable]::GetUnderlyingType($p.PropertyType) ?? $p.PropertyType
                if ($t.IsEnum) { [pscustomobject]@{ Name = $p.Name; Kind = 'Enum' } }
                elseif ($t -ne [string] -and [Collections.IEnumerable].IsAssignableFrom($t)) { [pscustomobject]@{ Name = $p.Name; Kind = 'List' } }
            }
        }
    }

    BeforeDiscovery {
        $cases = @(
            @{ Name = 'MemoryMapping'; Get = { $e | Get-MemoryMapping } }
            @{ Name = 'PageEntry'; Get = { $e | Get-PageMap | Select-Object -First 1 } }
            @{ Name = 'PageRange'; Get = { $e | Get-PageMap -AsRange | Select-Object -First 1 } }
            @{ Name = 'PageScanRegion'; Get = { $e | Search-PageMap -Category Present | Select-Object -First 1 } }
            @{ Name = 'KernelFeatures'; Get = { $e | Get-SoftDirtySupport } }
            @{ Name = 'MemoryImageInfo'; Get = { $Info } }
            @{ Name = 'MemoryImageTestResult'; Get = { Test-MemoryImage -Path (Join-Path $TestDrive 'img') -Detailed } }
            @{ Name = 'DirtyPageSample'; Get = { $e | Watch-DirtyPage -Count 1 -Interval 1 -Workload $work } }
            @{ Name = 'PreCopyRound'; Get = { $Migration | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] } | Select-Object -First 1 } }
            @{ Name = 'PreCopySummary'; Get = { $Migration | Where-Object { $_ -is [SoftDirty.Workflows.PreCopySummary] } } }
        )
    }

    It '<Name>: ConvertTo-Json writes every enum as its name, and the name parses back' -ForEach $cases {
        $o = @(& $Get)[0]
        $o.GetType().Name | Should -Be $Name
        $enums = @(Get-Checked $o | Where-Object Kind -EQ 'Enum')
        $lists = @(Get-Checked $o | Where-Object Kind -EQ 'List')
        ($enums.Count + $lists.Count) | Should -BeGreaterThan 0 -Because "$Name has an enum or a list to check"
        $json = $o | ConvertTo-Json -Depth 4 | ConvertFrom-Json
        foreach ($p in $enums.Name) {
            if ($null -eq $o.$p) { continue }
            $json.$p | Should -BeOfType [string] -Because "$Name.$p is an enum"
            $json.$p | Should -Be $o.$p.ToString()
            [Enum]::Parse($o.$p.GetType(), $json.$p) | Should -Be $o.$p
        }
        foreach ($p in $lists.Name) {
            # A list stays a JSON array; an item's enums are names too (MemoryImageTestResult.Problems[].Error).
            @($json.$p).Count | Should -Be @($o.$p).Count
            $first = @($o.$p)[0]
            if ($null -eq $first -or $first.GetType().IsPrimitive -or $first -is [string]) { continue }
            foreach ($q in @(Get-Checked $first | Where-Object Kind -EQ 'Enum').Name) { @($json.$p)[0].$q | Should -Be $first.$q.ToString() }
        }
    }

    It '<Name>: Export-Csv writes every list as its items joined, and every enum as its name' -ForEach $cases {
        $o = @(& $Get)[0]
        $csv = Join-Path $TestDrive "$Name.csv"
        $o | Export-Csv -LiteralPath $csv
        $row = Import-Csv -LiteralPath $csv
        $viaText = $o | ConvertTo-Csv | ConvertFrom-Csv
        foreach ($c in @(Get-Checked $o)) {
            $p = $c.Name
            $row.$p | Should -Be $viaText.$p -Because 'ConvertTo-Csv and Export-Csv agree'
            $row.$p | Should -Not -Match '^System\.|\[\]$' -Because "$Name.$p carries its value, not its type name"
            if ($c.Kind -eq 'Enum') { if ($null -ne $o.$p) { $row.$p | Should -Be $o.$p.ToString() } }
            else { $row.$p | Should -Be ((@($o.$p) | ForEach-Object ToString) -join $o.$p.Separator) }
        }
    }

    It 'the live objects keep their types: Where-Object on an enum and on a list, and the views, work as before' {
        $maps = @($e | Get-MemoryMapping)
        $maps[0].VmFlags[0] | Should -Be 'rd'
        @($maps | Where-Object { $_.VmFlags -contains 'wr' }) | Should -HaveCount $maps.Count
        @($maps | Where-Object Kind -EQ 'Anonymous') | Should -HaveCount $maps.Count
        $maps[0].Protection | Should -BeOfType [SoftDirty.Protection]
        ($maps[0] | Format-List | Out-String) | Should -Match 'VmFlags\s*:\s*rd wr'
        $pages = @($e | Get-PageMap)
        $present = @($pages | Where-Object Present).Count
        $present | Should -BeGreaterThan 0
        @($pages | Where-Object { $_.Flags.HasFlag([SoftDirty.PagemapFlags]::Present) }).Count | Should -Be $present
        @($pages | Where-Object Flags -Like '*Present*').Count | Should -Be $present
        # Split back, a CSV VmFlags is the list again.
        ((@($maps[0] | ConvertTo-Csv | ConvertFrom-Csv)[0].VmFlags) -split ' ') | Should -Be @($maps[0].VmFlags)
    }
}
