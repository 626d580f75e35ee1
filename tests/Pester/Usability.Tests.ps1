#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
<#
    What a PowerShell user trips on (issue 12): piped mappings and ranges select their own pages, member
    enumeration of every output type, a bare /proc cmdlet prompts for -Id, commands that used to do nothing
    silently now say why, the no-soft-dirty warning shows once per session, -Verbose says what was decided,
    and -Address completes addresses, never file names.
#>

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $support = Get-SoftDirtySupport
    # A kernel thread: no user address space (Kthread: 1 in its status).
    $kthread = Get-ChildItem /proc -Directory -ErrorAction SilentlyContinue | Where-Object Name -match '^\d+$' | Sort-Object { [int]$_.Name } |
        Where-Object { (Get-Content "/proc/$($_.Name)/status" -ErrorAction SilentlyContinue) -contains "Kthread:`t1" } |
        Select-Object -First 1 -ExpandProperty Name
    $procCmdlets = @('Get-PageMap', 'Search-PageMap', 'Get-MemoryMapping', 'Clear-PageReference', 'Clear-SoftDirty', 'Watch-DirtyPage', 'Invoke-PreCopyMigration') |
        ForEach-Object { @{ Name = $_ } }
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $PSDefaultParameterValues = @{ '*:WarningAction' = 'SilentlyContinue' }
    $support = Get-SoftDirtySupport
    $t = Start-TestTarget
    $ps = $t.PageSize
    function Complete([string] $Line) { @((TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches) }
}

AfterAll {
    Stop-TestTarget -All
}

Describe 'A piped mapping or range selects its own pages (issue 12.1)' {
    BeforeAll {
        $a = $t.Map(8)
        $b = $t.Map(3)
        $t.Send("write 0x$('{0:x}' -f $a) 0 8")
        $mapA = Get-MemoryMapping -Id $t.Id -Address $a
        $mapB = Get-MemoryMapping -Id $t.Id -Address $b
        $whole = @(Get-PageMap -Id $t.Id).Count
    }

    It 'Get-MemoryMapping | Get-PageMap reads only that mapping' {
        $pages = @($mapA | Get-PageMap)
        $pages.Count | Should -Be ($mapA.Size / $ps) -Because "the mapping has $($mapA.Size / $ps) pages; the whole process has $whole"
        @($pages | Where-Object { $_.Start -lt $mapA.Start -or $_.Start -ge $mapA.End }) | Should -BeNullOrEmpty
    }

    It 'two piped mappings select each its own range' {
        $pages = @($mapA, $mapB | Get-PageMap)
        $pages.Count | Should -Be (($mapA.Size + $mapB.Size) / $ps)
    }

    It 'piped ranges (-AsRange) read back exactly their pages' {
        $ranges = @(Get-PageMap -Id $t.Id -Address $a -Length (8 * $ps) -AsRange)
        $pages = @($ranges | Get-PageMap)
        $pages.Count | Should -Be 8
        ($pages | ForEach-Object Start) | Should -Be @(0..7 | ForEach-Object { $a + [uint64]$_ * $ps })
    }

    It 'Search-PageMap takes a piped mapping the same way' -Skip:(-not $support.PagemapScan) {
        $regions = @($mapA | Search-PageMap -Category Present)
        $regions | Should -Not -BeNullOrEmpty
        @($regions | Where-Object { $_.Start -lt $mapA.Start -or $_.End -gt $mapA.End }) | Should -BeNullOrEmpty
    }

    It 'a piped mapping with -Mapping is InvalidArgument, not a silent whole-process read' {
        { $mapA | Get-PageMap -Mapping '[stack]' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.GetPageMapCommand'
    }
}

Describe 'Member enumeration of every output type (issue 12.2)' {
    It 'no property of <_> is hidden by a member of an array' -ForEach @(
        (Get-Command Get-PageMap).ImplementingType.Assembly.GetTypes() | Where-Object { $_.IsSubclassOf([System.Management.Automation.Cmdlet]) -and -not $_.IsAbstract } |
            ForEach-Object { $_.GetCustomAttributes([System.Management.Automation.OutputTypeAttribute], $true).Type.Type } |
            Where-Object { $_ -and $_.Namespace -like 'SoftDirty*' } |
            # A list property (an array or a JoinedList<T>) enumerates its items: check the item type.
            ForEach-Object { $_; $_.GetProperties().PropertyType | ForEach-Object { if ($_.IsArray) { $_.GetElementType() } elseif ($_.IsGenericType -and [Collections.IEnumerable].IsAssignableFrom($_)) { $_.GetGenericArguments()[0] } else { $_ } } | Where-Object Namespace -like 'SoftDirty*' } |
            Sort-Object FullName -Unique | ForEach-Object FullName
    ) {
        $arrayMembers = @(Get-Member -InputObject @(1, 2) -Force).Name
        $props = @(([type]$_).GetProperties() | Where-Object { $_.GetMethod.IsPublic } | ForEach-Object Name)
        @($props | Where-Object { $_ -in $arrayMembers }) | Should -BeNullOrEmpty -Because '$objects.Name on an array would return the array''s member, not each object''s property'
    }

    It '(Get-PageMap ...).Start, .End and .Mapping enumerate the pages' {
        $a = $t.Map(4)
        $pages = Get-PageMap -Id $t.Id -Address $a -Length (4 * $ps)
        $pages.Start | Should -Be @(0..3 | ForEach-Object { $a + [uint64]$_ * $ps })
        $pages.End | Should -Be @(1..4 | ForEach-Object { $a + [uint64]$_ * $ps })
        @($pages.Mapping | Select-Object -Unique) | Should -HaveCount 1
    }

    It 'a sample''s .Ranges.Size enumerates range sizes, not the array length' {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $s = $e | Watch-DirtyPage -Count 1 -Interval 1 -Workload @{ Address = $m.Start; Length = 64KB; Pattern = 'Sequential'; AccessesPerSecond = 8; WriteRatio = 1; Seed = 1 }
        $s.Ranges | Should -Not -BeNullOrEmpty
        @($s.Ranges.Size) | Should -Be @($s.Ranges | ForEach-Object { $_.End - $_.Start })
    }
}

Describe 'A bare /proc cmdlet prompts for -Id (issue 12.3)' {
    It '<Name> has Id as its default parameter set' -ForEach $procCmdlets {
        (Get-Command $Name).DefaultParameterSet | Should -Be 'Id'
    }

    It 'Get-PageMap with no argument asks for Id, not Emulator' {
        $out = "$(Invoke-ChildPwsh -ImportModule 'Get-PageMap')"
        $out | Should -Match 'missing mandatory parameters: Id\.'
        $out | Should -Not -Match 'Emulator'
    }

    It '$e | <Name> still binds the emulated process by value' -ForEach @(
        @{ Name = 'Get-PageMap'; Run = { param($e) @($e | Get-PageMap).Count } }
        @{ Name = 'Get-MemoryMapping'; Run = { param($e) @($e | Get-MemoryMapping).Count } }
        @{ Name = 'Search-PageMap'; Run = { param($e) @($e | Search-PageMap -Category Present).Count } }
        @{ Name = 'Clear-SoftDirty'; Run = { param($e) @($e | Clear-SoftDirty -PassThru | Where-Object { $_ -is [SoftDirty.Emulation.EmulatedProcess] }).Count } }
    ) {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 16KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 8KB
        & $Run $e | Should -BeGreaterThan 0 -Because 'the emulated process, not a real pid, is read'
    }
}

Describe 'Commands that did nothing silently now say why (issue 12.9)' {
    It 'Get-PageMap on a kernel thread is InvalidArgument: it has no user memory' -Skip:(-not $kthread) -ForEach @(@{ Kthread = $kthread }) {
        $err = { Get-PageMap -Id ([int]$Kthread) -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.GetPageMapCommand' -PassThru
        $err.Exception.Message | Should -Match 'kernel thread'
        $err.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'Search-PageMap -WriteProtect on another process is WriteProtectNotSupported' -Skip:(-not $support.PagemapScan) {
        $a = $t.Map(2)
        $err = { Search-PageMap -Id $t.Id -Address $a -Length (2 * $ps) -Category Written -WriteProtect -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'WriteProtectNotSupported,SoftDirty.Commands.SearchPageMapCommand' -PassThru
        $err.Exception.Message | Should -Match 'userfaultfd'
    }

    It 'Search-PageMap -Category SoftDirty warns where soft-dirty is missing' {
        $out = Invoke-ChildPwsh -ImportModule '$e = New-EmulatedProcess -NoSoftDirty; $null = $e | Add-EmulatedMapping -Length 8KB; $null = $e | Search-PageMap -Category SoftDirty -WarningVariable w -WarningAction SilentlyContinue; "warnings=$($w.Count)"; "$w"'
        "$out" | Should -Match 'warnings=1'
        "$out" | Should -Match 'no soft-dirty'
    }

    It 'Clear-PageReference -Type <Tab> does not offer SoftDirty' {
        $names = @((Complete 'Clear-PageReference -Type ').CompletionText)
        $names | Should -Contain 'Anonymous'
        $names | Should -Not -Contain 'SoftDirty'
    }
}

Describe 'Smaller things a user meets (issue 12.11)' {
    It 'the no-soft-dirty warning shows once per session and kernel, in under 160 characters' {
        $out = Invoke-ChildPwsh -ImportModule '$e = New-EmulatedProcess -NoSoftDirty; $null = $e | Add-EmulatedMapping -Length 8KB; $all = @(); foreach ($i in 1..3) { $null = $e | Get-PageMap -WarningVariable w -WarningAction SilentlyContinue; $all += $w }; "count=$($all.Count)"; "length=$($all[0].Message.Length)"'
        "$out" | Should -Match 'count=1\b'
        [int]("$out" -replace '(?s).*length=(\d+).*', '$1') | Should -BeLessThan 160
    }

    It '-Verbose says what <Name> decided' -ForEach @(
        @{ Name = 'Get-PageMap'; Run = { param($e) $e | Get-PageMap -Verbose 4>&1 }; Pattern = 'span\(s\).*read method' }
        @{ Name = 'Get-MemoryMapping'; Run = { param($e) $e | Get-MemoryMapping -Verbose 4>&1 }; Pattern = 'mapping\(s\)' }
        @{ Name = 'Search-PageMap'; Run = { param($e) $e | Search-PageMap -Category Present -Verbose 4>&1 }; Pattern = 'PAGEMAP_SCAN over \d+ span' }
    ) {
        $e = New-EmulatedProcess
        $null = $e | Add-EmulatedMapping -Length 8KB
        $verbose = @(& $Run $e | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] })
        ($verbose.Message -join "`n") | Should -Match $Pattern
    }

    # The cmdlets build verbose messages only where they are kept (a loop of small reads paid more for them than for
    # the read): what PowerShell keeps must still come, however verbose output was asked for, and only then.
    It 'verbose messages come with $VerbosePreference = <Preference> and -Verbose:<Switch> as PowerShell decides' -ForEach @(
        @{ Preference = 'Continue'; Switch = $null; Expected = $true }
        @{ Preference = 'SilentlyContinue'; Switch = $true; Expected = $true }
        @{ Preference = 'Continue'; Switch = $false; Expected = $false }
        @{ Preference = 'SilentlyContinue'; Switch = $null; Expected = $false }
    ) {
        $e = New-EmulatedProcess
        $null = $e | Add-EmulatedMapping -Length 8KB
        $VerbosePreference = $Preference
        $extra = if ($null -ne $Switch) { @{ Verbose = $Switch } } else { @{} }
        $verbose = @($e | Get-PageMap @extra 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] })
        ($verbose.Count -gt 0) | Should -Be $Expected
        if ($Expected) { ($verbose.Message -join "`n") | Should -Match 'span\(s\).*read method' }
    }

    It '-Address <Tab> completes the target''s mapping starts, never file names' {
        $dir = Join-Path ([IO.Path]::GetTempPath()) ([guid]::NewGuid().ToString('n'))
        $null = New-Item -ItemType Directory $dir
        try {
            $null = New-Item -ItemType File (Join-Path $dir 'afile.txt')
            Push-Location $dir
            try {
                @(Complete 'Get-PageMap -Address ').CompletionText | Should -Not -Contain './afile.txt'
                @(Complete 'Get-PageMap -Address ') | Should -BeNullOrEmpty -Because 'without a target there is nothing to offer'
                $starts = @((Complete "Get-PageMap -Id $($t.Id) -Address 0x").CompletionText)
                $starts | Should -Not -BeNullOrEmpty
                $starts | Should -Contain ('0x{0:x}' -f (Get-MemoryMapping -Id $t.Id -Mapping '[stack]').Start)
            } finally { Pop-Location }
        } finally { Remove-Item -Recurse -Force $dir }
    }
}

Describe 'Tables, wide and list views (issue 12.8)' {
    BeforeAll {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB -Path '/usr/lib/x86_64-linux-gnu/libexample-with-a-long-name.so.6'
        $e | Write-EmulatedMemory -Address $m.Start -Length 8KB
        function Lines($Objects, [string] $Format, [int] $Width) { @($Objects | & $Format | Out-String -Width $Width -Stream | Where-Object { $_.Trim() }) }
    }

    It '<Name> fits 120 columns with <First> first and the mapping next to it' -ForEach @(
        @{ Name = 'PageEntry'; Get = { $e | Get-PageMap }; First = 'Address'; Second = 'Mapping' }
        @{ Name = 'PageRange'; Get = { $e | Get-PageMap -AsRange }; First = 'Start'; Second = 'Mapping' }
        @{ Name = 'MemoryMapping'; Get = { $e | Get-MemoryMapping }; First = 'Start'; Second = 'Path' }
        @{ Name = 'PageScanRegion'; Get = { $e | Search-PageMap -Category Present }; First = 'Start'; Second = 'Mapping' }
    ) {
        $lines = Lines (& $Get) 'Format-Table' 120
        @($lines | Where-Object Length -gt 120) | Should -BeNullOrEmpty
        $header = @($lines | Where-Object { $_ -match "^\s*$First\s" })[0]
        $header | Should -Not -BeNullOrEmpty
        $cols = @($header.Trim() -split '\s+')
        $cols[0] | Should -Be $First
        $cols[1..2] | Should -Contain $Second
        ($lines -join "`n") | Should -Match ' libexample-with' -Because 'a table shows the file name of a path; Format-List shows the path'
        ($lines -join "`n") | Should -Not -Match '/usr/lib'
        # At 80 columns the identifying columns are still there.
        $narrow = (Lines (& $Get) 'Format-Table' 80) -join "`n"
        $narrow | Should -Match "\b$First\b"
        $narrow | Should -Match '0x[0-9a-f]{12}'
    }

    It 'Format-Wide shows addresses in hex' {
        (Lines ($e | Get-PageMap) 'Format-Wide' 80) -join ' ' | Should -Match ('0x{0:x12}' -f $m.Start)
        (Lines ($e | Get-MemoryMapping) 'Format-Wide' 80) -join ' ' | Should -Match ('0x{0:x}' -f $m.Start)
    }

    It 'Format-List shows addresses in hex' {
        (Lines ($e | Get-PageMap | Select-Object -First 1) 'Format-List' 120) -join "`n" | Should -Match ('Address\s+: 0x{0:x}' -f $m.Start)
        (Lines ($e | Get-MemoryMapping) 'Format-List' 120) -join "`n" | Should -Match ('Start\s+: 0x{0:x}' -f $m.Start)
        (Lines ($e | Get-MemoryMapping) 'Format-List' 120) -join "`n" | Should -Match 'VmFlags\s+: rd wr'
    }

    It 'EmulatedProcess has a table view' {
        (Lines $e 'Format-Table' 120)[0] | Should -Match '^\s*ProcessId\s+Name\s+Kernel\s+RssKiB'
    }
}
