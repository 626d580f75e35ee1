#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, eleventh attack round, on what the module produces and hands to others: the objects of the image and
# workflow cmdlets and their format views, images passed between users, copied and mixed, restores that race, and
# the chart file (new cases only; earlier rounds are in Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and
# WriteTracking.Tests.ps1).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:IsRoot = (id -u) -eq '0'
    $script:HasSetpriv = [bool](Get-Command setpriv -ErrorAction Ignore)
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r11')
    chmod 0755 $TestDrive $root
    # Characters a process's or a file's owner may put in a name: an OSC title sequence ended by BEL, an SGR colour, a
    # right-to-left override.
    $script:Evil = "r11`e]0;owned`a`e[31mRED`u{202e}txt"
    # The characters of those names; the output itself holds line ends.
    $script:Hidden = "[`e`a`u{202e}]"
    function New-Name { [guid]::NewGuid().ToString('n') }
    # The emulated process with the hostile name and a mapping of a file with it, 16 KiB written.
    function New-HostileEmulator {
        $e = New-EmulatedProcess -Name $Evil
        $m = $e | Add-EmulatedMapping -Length 64KB -Path "/tmp/f$Evil"
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB
        $e
    }
}

Describe 'Names of processes and files in the objects of the image and workflow cmdlets reach the terminal only escaped' -Tag 'Security', 'Round11Output' {
    # Before the fix only table views escaped them: the summary of Invoke-PreCopyMigration (shown as a list by default,
    # and out of band after the round table) printed the process's name as it is, and so did Format-List of
    # Save-/Get-MemoryImage, Restore-MemoryImage, Watch-DirtyPage and an emulated process, and Format-Wide of a sample
    # or an emulated process: a process's owner could set root's terminal title or erase its screen.
    BeforeAll {
        $script:e = New-HostileEmulator
        $script:d = Join-Path $root (New-Name)
        $script:objects = [ordered]@{}
        $objects['New-EmulatedProcess'] = $e
        $objects['Save-MemoryImage'] = $e | Save-MemoryImage -Path $d
        $objects['Get-MemoryImage'] = Get-MemoryImage -Path $d
        $objects['Test-MemoryImage -Detailed'] = Test-MemoryImage -Path $d -Detailed
        $objects['Restore-MemoryImage'] = Restore-MemoryImage -Path $d -Destination "$d.restored"
        $objects['Watch-DirtyPage'] = $e | Watch-DirtyPage -Count 2 -Interval 0.01
        $objects['Invoke-PreCopyMigration'] = $e | Invoke-PreCopyMigration -Bandwidth 1MB -Destination "$d.chain"
        $objects['Invoke-PreCopyMigration (summary)'] = $objects['Invoke-PreCopyMigration'][-1]
    }

    It '<Command> | <Format> prints no control character of the name' -ForEach @(
        foreach ($c in 'New-EmulatedProcess', 'Save-MemoryImage', 'Get-MemoryImage', 'Test-MemoryImage -Detailed', 'Restore-MemoryImage',
            'Watch-DirtyPage', 'Invoke-PreCopyMigration', 'Invoke-PreCopyMigration (summary)') {
            foreach ($f in 'Out-String', 'Format-Table', 'Format-List', 'Format-Wide') { @{ Command = $c; Format = $f } }
        }
    ) {
        $o = $objects[$Command]
        @($o).Count | Should -BeGreaterThan 0
        $text = if ($Format -eq 'Out-String') { $o | Out-String -Width 400 } else { $o | & $Format | Out-String -Width 400 }
        # (Failure messages must not hold the characters either: Pester's XML report cannot write them.)
        ($text -match $Hidden) | Should -BeFalse -Because 'no control character of the name is printed as it is'
    }

    It 'the objects keep the names as they are, and a list shows them whole, escaped' {
        $shown = '\x1b]0;owned\x07\x1b[31mRED\u202etxt'
        $objects['Get-MemoryImage'].ProcessName | Should -BeExactly $Evil
        $objects['Invoke-PreCopyMigration (summary)'].Name | Should -BeExactly $Evil
        $objects['Restore-MemoryImage'].Mapping | Should -BeExactly "/tmp/f$Evil"
        foreach ($c in 'Get-MemoryImage', 'Save-MemoryImage', 'Invoke-PreCopyMigration (summary)', 'Watch-DirtyPage', 'Restore-MemoryImage') {
            ($objects[$c] | Format-List | Out-String -Width 400).Contains($shown) | Should -BeTrue -Because "$c | Format-List shows the name escaped"
        }
        ($objects['Invoke-PreCopyMigration'] | Out-String -Width 400).Contains($shown) | Should -BeTrue -Because 'the summary after the rounds shows the name'
    }

    It 'deserialized objects (Export-Clixml, Import-Clixml) print escaped too' {
        $file = Join-Path $root "$(New-Name).xml"
        @($objects['Get-MemoryImage'], $objects['Invoke-PreCopyMigration (summary)'], $objects['Restore-MemoryImage'][0], $objects['Watch-DirtyPage'][0]) |
            Export-Clixml -LiteralPath $file
        $back = Import-Clixml -LiteralPath $file
        $back[0].ProcessName | Should -BeExactly $Evil
        foreach ($f in 'Format-Table', 'Format-List') {
            foreach ($o in $back) { (($o | & $f | Out-String -Width 400) -match $Hidden) | Should -BeFalse -Because "$f prints no control character as it is" }
        }
    }

    It 'a real process whose name (comm) holds ESC and BEL: its image and its migration summary print it escaped' {
        $dir = New-Item -ItemType Directory (Join-Path $root (New-Name))
        # comm is the base name the program was exec'd under (15 bytes at most).
        $link = Join-Path $dir "r11`e]0;t`a"
        New-Item -ItemType SymbolicLink -Path $link -Target (Get-Command sleep -CommandType Application)[0].Source | Out-Null
        $p = [System.Diagnostics.Process]::Start($link, '600')
        try {
            (Get-Content -Raw "/proc/$($p.Id)/comm").TrimEnd("`n") | Should -BeExactly "r11`e]0;t`a"
            $img = Join-Path $dir 'img'
            $saved = Save-MemoryImage -Id $p.Id -Path $img -WarningAction SilentlyContinue
            $saved.ProcessName | Should -BeExactly "r11`e]0;t`a"
            $summary = @(Invoke-PreCopyMigration -Id $p.Id -Bandwidth 1GB -WarningAction SilentlyContinue)[-1]
            $summary.Name | Should -BeExactly "r11`e]0;t`a"
            foreach ($o in @($saved, (Get-MemoryImage -Path $img), $summary)) {
                foreach ($f in 'Out-String', 'Format-List') {
                    $text = if ($f -eq 'Out-String') { $o | Out-String -Width 400 } else { $o | Format-List | Out-String -Width 400 }
                    ($text -match $Hidden) | Should -BeFalse -Because "$f prints no control character as it is"
                }
            }
            ($summary | Out-String -Width 400).Contains('r11\x1b]0;t\x07') | Should -BeTrue
        } finally { $p.Kill(); $p.WaitForExit() }
    }
}
