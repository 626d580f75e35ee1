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
    # or an emulated process, and Format-Custom of every object with a name: a process's owner could set root's
    # terminal title or erase its screen.
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
        $objects['Get-MemoryMapping'] = $e | Get-MemoryMapping
        $objects['Get-PageMap'] = $e | Get-PageMap -Present
        $objects['Get-PageMap -AsRange'] = $e | Get-PageMap -AsRange
    }

    It '<Command> | <Format> prints no control character of the name' -ForEach @(
        foreach ($c in 'New-EmulatedProcess', 'Save-MemoryImage', 'Get-MemoryImage', 'Test-MemoryImage -Detailed', 'Restore-MemoryImage',
            'Watch-DirtyPage', 'Invoke-PreCopyMigration', 'Invoke-PreCopyMigration (summary)', 'Get-MemoryMapping', 'Get-PageMap', 'Get-PageMap -AsRange') {
            foreach ($f in 'Out-String', 'Format-Table', 'Format-List', 'Format-Wide', 'Format-Custom') { @{ Command = $c; Format = $f } }
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
        ($objects['Get-MemoryImage'].ProcessName -ceq $Evil) | Should -BeTrue
        ($objects['Invoke-PreCopyMigration (summary)'].Name -ceq $Evil) | Should -BeTrue
        ($objects['Restore-MemoryImage'].Mapping -ceq "/tmp/f$Evil") | Should -BeTrue
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
        ($back[0].ProcessName -ceq $Evil) | Should -BeTrue
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
            ((Get-Content -Raw "/proc/$($p.Id)/comm").TrimEnd("`n") -ceq "r11`e]0;t`a") | Should -BeTrue
            $img = Join-Path $dir 'img'
            $saved = Save-MemoryImage -Id $p.Id -Path $img -WarningAction SilentlyContinue
            ($saved.ProcessName -ceq "r11`e]0;t`a") | Should -BeTrue
            $summary = @(Invoke-PreCopyMigration -Id $p.Id -Bandwidth 1GB -WarningAction SilentlyContinue)[-1]
            ($summary.Name -ceq "r11`e]0;t`a") | Should -BeTrue
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

Describe 'Restore-MemoryImage -Emulator into an emulated process another runspace maps memory in' -Tag 'Security', 'Round11Output' {
    # The restore checked that the process had no memory where the image maps and then mapped each mapping with
    # MAP_FIXED, one by one: a mapping another runspace made in between (at the address of the image's last mapping,
    # as a hint, so only where it was free) was replaced without a word. Before the fix, some trials ended with the
    # restore saying nothing and the process holding 399 of the image's 400 mappings (the other runspace unmapped what
    # it thought was its own), or with SegmentationFault (it did so before the restore wrote there). Now the check and
    # the mappings are one step under the process's lock.
    BeforeAll {
        $script:src = New-EmulatedProcess
        $script:starts = foreach ($i in 0..1199) {
            $m = $src | Add-EmulatedMapping -Address (0x100000000 + $i * 0x4000) -Length 4KB -Fixed
            $src | Write-EmulatedMemory -Address $m.Start -Length 4KB -Value 7
            $m.Start
        }
        $script:img = Join-Path $root (New-Name)
        $null = $src | Save-MemoryImage -Path $img
    }

    It 'trial <_>: the restore is whole (every mapping, its bytes) and the other runspace''s memory never replaced, or it says ImageExists and maps nothing' -ForEach (1..16) {
        $dst = New-EmulatedProcess
        $hint = $starts[-1]
        $ready = [System.Threading.ManualResetEventSlim]::new()
        $done = [System.Threading.ManualResetEventSlim]::new()
        $ps = [PowerShell]::Create()
        $null = $ps.AddScript({
                param($Module, $Dst, $Hint, $Ready, $Done)
                Import-Module $Module
                $got = 0; $replaced = 0
                $rw = [SoftDirty.Protection]'Read, Write'
                $Ready.Set()
                # mmap and munmap called on the object (no cmdlet between them), to come between the restore's steps often.
                while (-not $Done.IsSet) {
                    $m = $Dst.Mmap($Hint, 4096, $rw)
                    if ($m.Start -eq $Hint) {
                        $got++
                        $Dst | Write-EmulatedMemory -Address $Hint -Length 1 -Value 0xAB
                        if (($Dst | Read-EmulatedMemory -Address $Hint -Length 1 -AsByteArray)[0] -ne 0xAB) { $replaced++; break }
                    }
                    $Dst.Munmap($m.Start, 4096)
                    $null = $Dst | Get-MemoryMapping; $null = $Dst | Get-MemoryMapping # as long with nothing there, for the restore's check to pass
                }
                [pscustomobject]@{ Got = $got; Replaced = $replaced }
            }).AddArgument((Get-Module SoftDirty).Path).AddArgument($dst).AddArgument($hint).AddArgument($ready).AddArgument($done)
        $handle = $ps.BeginInvoke()
        try {
            $ready.Wait(60000) | Should -BeTrue
            $result = try { $null = Restore-MemoryImage -Path $img -Emulator $dst -ErrorAction Stop; 'ok' } catch { $_.FullyQualifiedErrorId }
        } finally {
            $done.Set()
            $other = $ps.EndInvoke($handle)
            $ps.Dispose()
        }
        $other[0].Replaced | Should -Be 0 -Because 'the restore never maps over memory another runspace made'
        $mapped = @($dst | Get-MemoryMapping)
        if ($result -eq 'ok') {
            $mapped.Count | Should -Be 1200
            @($mapped.Start) | Should -Be @($starts)
            foreach ($s in $starts[0], $starts[600], $starts[-1]) { ($dst | Read-EmulatedMemory -Address $s -Length 4KB -AsByteArray) | Should -Not -Contain ([byte]0) }
        } else {
            $result | Should -BeLike 'ImageExists,*'
            $mapped.Count | Should -Be 0 -Because 'a refused restore leaves nothing mapped (the other runspace unmapped its own)'
        }
    }
}

Describe 'What if, Confirm, verbose lines, progress and Get-SoftDirtySupport -Id that name another user''s process show its name escaped' -Tag 'Security', 'Round11Output' {
    # The views and errors escaped a process's name (comm), but -WhatIf, -Confirm and -Verbose printed it as it is:
    # root running Save-MemoryImage -WhatIf, Clear-PageReference -WhatIf or Get-MemoryMapping -Verbose on a process
    # named "r11\e]0;t\a" had its terminal's title set by that process's owner.
    BeforeAll {
        $script:dir = New-Item -ItemType Directory (Join-Path $root (New-Name))
        chmod 0755 $dir
        # comm is the base name the program was exec'd under (15 bytes at most).
        $link = Join-Path $dir "r11`e]0;t`a"
        New-Item -ItemType SymbolicLink -Path $link -Target (Get-Command sleep -CommandType Application)[0].Source | Out-Null
        $script:p = [System.Diagnostics.Process]::Start($link, '600')
        ((Get-Content -Raw "/proc/$($p.Id)/comm").TrimEnd("`n") -ceq "r11`e]0;t`a") | Should -BeTrue
    }
    AfterAll { if ($p -and -not $p.HasExited) { $p.Kill(); $p.WaitForExit() } }

    It '<Command> -WhatIf, in a child pwsh: the What if line names the process escaped' -ForEach @(
        @{ Command = 'Save-MemoryImage'; Line = { "Save-MemoryImage -Id $($p.Id) -Path '$dir/img' -WhatIf" } }
        @{ Command = 'Clear-PageReference'; Line = { "Clear-PageReference -Id $($p.Id) -Type PeakRss -WhatIf" } }
        @{ Command = 'Invoke-PreCopyMigration'; Line = { "Invoke-PreCopyMigration -Id $($p.Id) -Bandwidth 1GB -WhatIf" } }
        @{ Command = 'Enable-WriteTracking'; Line = { "Enable-WriteTracking -Id $($p.Id) -WhatIf" } }
    ) {
        $out = (Invoke-ChildPwsh -ImportModule (& $Line)) -join "`n"
        ($out -match $Hidden) | Should -BeFalse -Because 'no control character of the name is printed as it is'
        if ($Command -ne 'Enable-WriteTracking' -or $out -like '*What if*') { $out | Should -BeLike '*What if*r11\x1b]0;t\x07*' }
        Test-Path -LiteralPath "$dir/img" | Should -BeFalse
    }

    It 'Get-SoftDirtySupport -Id | <Format> shows the name escaped (its table and wide forms printed it as it is)' -ForEach @(
        foreach ($f in 'Out-String', 'Format-Table', 'Format-List', 'Format-Wide') { @{ Format = $f } }
    ) {
        $s = Get-SoftDirtySupport -Id $p.Id
        ($s.Name -ceq "r11`e]0;t`a") | Should -BeTrue
        $text = if ($Format -eq 'Out-String') { $s | Out-String -Width 400 } else { $s | & $Format | Out-String -Width 400 }
        ($text -match $Hidden) | Should -BeFalse -Because 'no control character of the name is printed as it is'
        $text | Should -BeLike '*r11\x1b]0;t\x07*'
    }

    It '<Command> -Verbose: the verbose line names the process escaped' -ForEach @(
        @{ Command = 'Get-MemoryMapping'; Run = { Get-MemoryMapping -Id $p.Id -Verbose 4>&1 } }
        @{ Command = 'Get-PageMap'; Run = { Get-PageMap -Id $p.Id -Mapping '[stack]' -AsRange -Verbose 4>&1 } }
    ) {
        $verbose = @(& $Run | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] })
        $verbose.Count | Should -BeGreaterThan 0
        foreach ($v in $verbose) { ($v.Message -match $Hidden) | Should -BeFalse -Because 'no control character of the name is printed as it is' }
        ($verbose.Message -join "`n") | Should -BeLike '*r11\x1b]0;t\x07*'
    }
}

Describe 'Chains whose middle image is replaced by a valid image of another chain' -Tag 'Workflows', 'Security', 'Round11Output' {
    # Three chains of one emulated process: A (0 -> 1 -> 2, every mapping), B (0 -> 1 of the file mapping only, -Mapping) and
    # A's full image copied. The middle of A replaced by each: Test, Get and Restore notice (the child's link holds
    # its parent's manifest checksum, the manifest the hash of index.bin, index.bin each page's hash) and restore nothing.
    BeforeAll {
        function New-Chains {
            $e = New-EmulatedProcess
            $m1 = $e | Add-EmulatedMapping -Length 64KB
            $file = "/r11/$(New-Name)"
            $m2 = $e | Add-EmulatedMapping -Length 64KB -Path $file
            $e | Write-EmulatedMemory -Address $m1.Start -Length 64KB -Value 1
            $e | Write-EmulatedMemory -Address $m2.Start -Length 64KB -Value 1
            $d = Join-Path $root (New-Name)
            $null = $e | Save-MemoryImage -Path "$d/a0" -Method Hash
            $null = $e | Save-MemoryImage -Path "$d/b0" -Method Hash -Mapping $file
            $e | Write-EmulatedMemory -Address $m1.Start -Length 8KB -Value 2
            $e | Write-EmulatedMemory -Address $m2.Start -Length 8KB -Value 2
            $null = $e | Save-MemoryImage -Path "$d/a1" -Parent "$d/a0" -Method Hash
            $null = $e | Save-MemoryImage -Path "$d/b1" -Parent "$d/b0" -Method Hash -Mapping $file
            $e | Write-EmulatedMemory -Address ($m1.Start + 16KB) -Length 8KB -Value 3
            $e | Write-EmulatedMemory -Address ($m2.Start + 16KB) -Length 8KB -Value 3
            $null = $e | Save-MemoryImage -Path "$d/a2" -Parent "$d/a1" -Method Hash
            $d
        }
    }

    It 'A''s middle replaced by <Label>: Test is invalid with <Expected>, Get and Restore say it, nothing is restored' -ForEach @(
        @{ Label = 'the increment of chain B (same process, one mapping selected), renamed'; Expected = 'ImageParentMismatch'
            Swap = { param($d) Remove-Item -Recurse "$d/a1"; Copy-Item -Recurse "$d/b1" "$d/a1"; (Get-Content -Raw "$d/a1/manifest.json") -replace '"\.\./b0"', '"../a0"' | Set-Content -NoNewline "$d/a1/manifest.json" } }
        @{ Label = 'a copy of A''s full image (older, depth 0)'; Expected = 'ImageParentMismatch'
            Swap = { param($d) Remove-Item -Recurse "$d/a1"; Copy-Item -Recurse "$d/a0" "$d/a1" } }
        @{ Label = 'its pages.bin and index.bin from chain B''s increment (the manifest kept)'; Expected = 'ImageCorrupt|ImageIncomplete'
            Swap = { param($d) foreach ($f in 'pages.bin', 'index.bin') { Copy-Item -Force "$d/b1/$f" "$d/a1/$f" } } }
        @{ Label = 'its pages.bin from chain B''s increment (index.bin and manifest kept)'; Expected = 'ImageCorrupt|ImageIncomplete'
            Swap = { param($d) Copy-Item -Force "$d/b1/pages.bin" "$d/a1/pages.bin" } }
    ) {
        $d = New-Chains
        Test-MemoryImage "$d/a2" | Should -BeTrue
        & $Swap $d
        $r = Test-MemoryImage "$d/a2" -Detailed
        $r.Valid | Should -BeFalse
        "$(@($r.Problems)[0].Error)" | Should -Match "^($Expected)$"
        Get-ErrorId { Restore-MemoryImage "$d/a2" "$d/out" } | Should -Match "^($Expected),SoftDirty.Commands.RestoreMemoryImageCommand$"
        Test-Path -LiteralPath "$d/out" | Should -BeFalse
        $emu = New-EmulatedProcess
        Get-ErrorId { Restore-MemoryImage "$d/a2" -Emulator $emu } | Should -Match "^($Expected),SoftDirty.Commands.RestoreMemoryImageCommand$"
        @($emu | Get-MemoryMapping).Count | Should -Be 0
        if ($Expected -eq 'ImageParentMismatch') { Get-ErrorId { Get-MemoryImage "$d/a2" } | Should -Be 'ImageParentMismatch,SoftDirty.Commands.GetMemoryImageCommand' }
    }
}

Describe 'Chains copied with cp -a, tar and hard links, then continued and restored' -Tag 'Workflows', 'Security', 'Round11Output' {
    It 'a chain copied with <Label> restores the same bytes, takes a new increment on its copied leaf, and the original stays valid and unchanged' -ForEach @(
        @{ Label = 'cp -a'; Copy = { param($from, $to) cp -a $from $to } }
        @{ Label = 'tar (sparse, with modes)'; Copy = { param($from, $to) $null = New-Item -ItemType Directory $to; tar -C $from -cSpf - . | tar -C $to -xpf - } }
        @{ Label = 'cp -al (hard links to the same files)'; Copy = { param($from, $to) cp -al $from $to } }
        @{ Label = 'cp -r under umask 022 (modes of the copy 0644/0755)'; Copy = { param($from, $to) sh -c "umask 022; cp -r '$from' '$to'; chmod -R go+rX '$to'" } }
    ) {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 256KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 256KB -Value 5
        $e | Invoke-EmulatedMadvise -Address ($m.Start + 64KB) -Length 64KB -Advice DontNeed
        $d = Join-Path $root (New-Name)
        $null = $e | Save-MemoryImage -Path "$d/chain/0"
        $e | Write-EmulatedMemory -Address $m.Start -Length 8KB -Value 6
        $null = $e | Save-MemoryImage -Path "$d/chain/1" -Parent "$d/chain/0"
        $before = Get-ChildItem -Recurse -File "$d/chain" | ForEach-Object { '{0}={1}' -f $_.FullName.Substring("$d/chain".Length), (Get-FileHash -LiteralPath $_.FullName).Hash }
        & $Copy "$d/chain" "$d/copy"
        Test-MemoryImage "$d/copy/1" | Should -BeTrue
        $null = Restore-MemoryImage "$d/chain/1" "$d/r-orig"
        $null = Restore-MemoryImage "$d/copy/1" "$d/r-copy"
        $hash = { param($p) Get-ChildItem -LiteralPath $p -Filter *.bin | Sort-Object Name | ForEach-Object { '{0}={1}' -f $_.Name, (Get-FileHash -LiteralPath $_.FullName).Hash } }
        (& $hash "$d/r-copy") | Should -Be (& $hash "$d/r-orig")
        # The copy continued: an increment of its leaf, restored, is the memory of that moment.
        $e | Write-EmulatedMemory -Address ($m.Start + 128KB) -Length 8KB -Value 7
        $null = $e | Save-MemoryImage -Path "$d/copy/2" -Parent "$d/copy/1"
        $null = $e | Save-MemoryImage -Path "$d/full-now"
        $null = Restore-MemoryImage "$d/copy/2" "$d/r-copy2"
        $null = Restore-MemoryImage "$d/full-now" "$d/r-now"
        (& $hash "$d/r-copy2") | Should -Be (& $hash "$d/r-now")
        (Get-Item "$d/copy/2").UnixFileMode | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        # The original chain and its files are as they were.
        Test-MemoryImage "$d/chain/1" | Should -BeTrue
        Get-ChildItem -Recurse -File "$d/chain" | ForEach-Object { '{0}={1}' -f $_.FullName.Substring("$d/chain".Length), (Get-FileHash -LiteralPath $_.FullName).Hash } | Should -Be $before
    }
}

Describe 'Two restores of different images into one destination at once' -Tag 'Workflows', 'Security', 'Round11Output' {
    BeforeAll {
        # Two images of different layouts and bytes: a mix of them would show in the file names or the bytes.
        $script:imgs = foreach ($v in 1, 2) {
            $e = New-EmulatedProcess
            foreach ($i in 1..(20 * $v)) {
                $m = $e | Add-EmulatedMapping -Length (64KB * $v)
                $e | Write-EmulatedMemory -Address $m.Start -Length (16KB * $v) -Value $v
                if ($i % 2) { $e | Set-EmulatedProtection -Address $m.Start -Length (64KB * $v) -Protection Read }
            }
            $p = Join-Path $root (New-Name)
            $null = $e | Save-MemoryImage -Path $p
            $p
        }
        $script:hash = { param($p) Get-ChildItem -LiteralPath $p | Sort-Object Name | ForEach-Object { '{0}={1}' -f $_.Name, (Get-FileHash -LiteralPath $_.FullName).Hash } }
        $script:expected = foreach ($p in $imgs) { $r = Join-Path $root (New-Name); $null = Restore-MemoryImage $p $r; , @(& $hash $r) }
    }

    It 'into <Kind>, trial <Trial>: the destination holds one of the two restores whole, the other says ImageExists' -ForEach @(
        foreach ($k in 'an absent path', 'an empty directory') { foreach ($t in 1..3) { @{ Kind = $k; Trial = $t } } }
    ) {
        $dest = Join-Path $root (New-Name)
        if ($Kind -eq 'an empty directory') { $null = New-Item -ItemType Directory $dest }
        $module = (Get-Module SoftDirty).Path
        $jobs = foreach ($p in $imgs) {
            Start-ThreadJob -ArgumentList $p, $dest, $module {
                param($Image, $Dest, $Module)
                Import-Module $Module
                try { $null = Restore-MemoryImage -Path $Image -Destination $Dest -ErrorAction Stop; "ok $Image" } catch { $_.FullyQualifiedErrorId }
            }
        }
        $results = @($jobs | Wait-Job -Timeout 300 | Receive-Job)
        $jobs | Remove-Job -Force
        $results.Count | Should -Be 2
        $won = @($results | Where-Object { $_ -like 'ok *' })
        $won.Count | Should -Be 1
        @($results | Where-Object { $_ -like 'ImageExists,*' }).Count | Should -Be 1
        $which = [array]::IndexOf([string[]]$imgs, $won[0].Substring(3))
        @(& $hash $dest) | Should -Be $expected[$which]
        @(Get-ChildItem -Force -LiteralPath $root | Where-Object Name -like ".$(Split-Path -Leaf $dest).partial-*") | Should -BeNullOrEmpty
    }
}

Describe 'Get-MemoryImage output piped back into Restore-MemoryImage' -Tag 'Workflows', 'Security', 'Round11Output' {
    # Get-MemoryImage lists a chain full image first, and Restore-MemoryImage binds -Path by property name: piped
    # whole, the chain's oldest memory was restored and the latest image then said only that the destination was not
    # empty. Round 11 made the later images say that the first was restored there; round 15 restores the latest image of
    # the chain piped in, once, when the input ends (Security.Round15.Binding.Tests.ps1), and an image of another chain
    # piped into the same place says which image is restored there.
    BeforeAll {
        $script:e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB -Value 1
        $script:chain = Join-Path $root (New-Name)
        $null = $e | Save-MemoryImage -Path "$chain/0"
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB -Value 2
        $null = $e | Save-MemoryImage -Path "$chain/1" -Parent "$chain/0"
        $script:start = $m.Start
        $script:other = Join-Path $root (New-Name)
        $null = New-EmulatedProcess | Save-MemoryImage -Path $other
    }

    It 'into a directory: the latest memory is restored; an image of another chain after it names the image restored there' {
        $dest = Join-Path $root (New-Name)
        $err = $null
        $out = @(Get-MemoryImage "$chain/1" | Restore-MemoryImage -Destination $dest -ErrorAction SilentlyContinue -ErrorVariable err)
        $out.Count | Should -Be 1
        $err.Count | Should -Be 0
        [IO.File]::ReadAllBytes($out[0].File)[0] | Should -Be 2 -Because 'the chain''s latest memory is what was restored'
        $dest2 = Join-Path $root (New-Name)
        $out = @((@(Get-MemoryImage "$chain/1") + @(Get-MemoryImage $other)) | Restore-MemoryImage -Destination $dest2 -ErrorAction SilentlyContinue -ErrorVariable err)
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        $err[0].Exception.Message | Should -BeLike "*gets the restore of $chain/1, piped before*$other is an image of another chain*"
        [IO.File]::ReadAllBytes($out[0].File)[0] | Should -Be 2
    }

    It 'into an emulated process: likewise' {
        $emu = New-EmulatedProcess
        $err = $null
        $null = Get-MemoryImage "$chain/1" | Restore-MemoryImage -Emulator $emu -ErrorAction SilentlyContinue -ErrorVariable err
        $err.Count | Should -Be 0
        ($emu | Read-EmulatedMemory -Address $start -Length 1 -AsByteArray)[0] | Should -Be 2
        $emu = New-EmulatedProcess
        $null = (@(Get-MemoryImage "$chain/1") + @(Get-MemoryImage $other)) | Restore-MemoryImage -Emulator $emu -ErrorAction SilentlyContinue -ErrorVariable err
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'ImageExists,SoftDirty.Commands.RestoreMemoryImageCommand'
        $err[0].Exception.Message | Should -BeLike "*gets the restore of $chain/1*"
        ($emu | Read-EmulatedMemory -Address $start -Length 1 -AsByteArray)[0] | Should -Be 2
    }
}

Describe 'An image whose manifest someone rewrote (checksum recomputed) with hostile names' -Tag 'Workflows', 'Security', 'Round11Output' {
    # An image handed over by another user or machine is as trustworthy as its folder: whoever wrote it chooses the
    # process name and the mapping paths. Before the fix Test-MemoryImage -Detailed's table printed the problems as they
    # are, and a problem's message quotes the mapping (its path): the image's author wrote to the reader's terminal.
    BeforeAll {
        Add-Type -Path $env:SOFTDIRTY_TESTKIT
        function Edit-Manifest([string] $Image, [scriptblock] $Edit) {
            $m = [SoftDirty.TestKit.Images.ManifestFile]::Read($Image)
            & $Edit $m
            [SoftDirty.TestKit.Images.ManifestFile]::Write($Image, $m)
        }
    }

    It 'a valid image with a hostile process name and mapping path: Get, Restore and their views show them escaped' {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 16KB
        $img = Join-Path $root (New-Name)
        $null = $e | Save-MemoryImage -Path $img
        Edit-Manifest $img { param($x) $x.ProcessName = $Evil; $x.Mappings[0].Path = "/lib/$Evil" }
        Test-MemoryImage $img | Should -BeTrue
        $info = Get-MemoryImage $img
        ($info.ProcessName -ceq $Evil) | Should -BeTrue
        $restored = Restore-MemoryImage $img (Join-Path $root (New-Name))
        ($restored.Mapping -ceq "/lib/$Evil") | Should -BeTrue
        foreach ($o in $info, $restored) {
            foreach ($f in 'Format-Table', 'Format-List') { (($o | & $f | Out-String -Width 400) -match $Hidden) | Should -BeFalse -Because "$f prints no control character as it is" }
        }
    }

    It 'a manifest whose mappings overlap, one with a hostile path: Test-MemoryImage -Detailed shows the problem escaped' {
        $e = New-EmulatedProcess
        $a = $e | Add-EmulatedMapping -Length 64KB
        $b = $e | Add-EmulatedMapping -Length 64KB -Path '/r11/other'
        $e | Write-EmulatedMemory -Address $a.Start -Length 4KB
        $img = Join-Path $root (New-Name)
        $null = $e | Save-MemoryImage -Path $img
        Edit-Manifest $img { param($x) $x.Mappings[1].Path = "/lib/$Evil"; $x.Mappings[1].Start = $x.Mappings[0].Start }
        $r = Test-MemoryImage $img -Detailed
        $r.Valid | Should -BeFalse
        "$(@($r.Problems)[0].Error)" | Should -Be 'ImageCorrupt'
        @($r.Problems)[0].Message.Contains($Evil) | Should -BeTrue -Because 'the problem quotes the mapping'
        foreach ($f in 'Out-String', 'Format-Table', 'Format-List') {
            $text = if ($f -eq 'Out-String') { $r | Out-String -Width 400 } else { $r | & $f | Out-String -Width 400 }
            ($text -match $Hidden) | Should -BeFalse -Because "$f prints no control character as it is"
        }
        ((@($r.Problems) | Format-Table | Out-String -Width 400) -match $Hidden) | Should -BeFalse -Because 'the problems themselves print escaped'
        $err = $null
        $null = Get-MemoryImage $img -ErrorAction SilentlyContinue -ErrorVariable err
        (($err[0] | Out-String -Width 400) -match $Hidden) | Should -BeFalse -Because 'the error view prints no control character as it is'
    }
}

Describe 'Export-DirtyPageChart: names that reorder the chart''s text' -Tag 'Workflows', 'Security', 'Round11Output' {
    # A process's name is drawn in the chart's title and legend, followed by its pid. A right-to-left override in the
    # name (U+202E, which XML allows) reversed the rest of the line in any viewer: "name (1234)" showed the pid as
    # "(4321)". Bidirectional controls are now drawn as U+FFFD, as control characters were; markup and spreadsheet
    # formula characters stay plain text.
    It 'a process named <Label>: the SVG is well-formed, holds no bidirectional control, and the pid reads as it is' -ForEach @(
        @{ Label = 'with a right-to-left override'; Name = "web`u{202e}gpj.exe" }
        @{ Label = 'with isolates and marks'; Name = "a`u{2067}b`u{2066}c`u{200f}d`u{202b}" }
        # Round 12: the Arabic letter mark (a bidi control left out), zero-width, BOM, tag characters, separators, C1 and DEL.
        @{ Label = 'with the Arabic letter mark, zero-width and tag characters, separators, C1 controls and DEL'; Name = "a`u{061c}b`u{200b}`u{feff}c`u{e0041}`u{2028}d`u{9b}31m`u{9d}0;t`u{9c}`u{7f}" }
        @{ Label = 'like markup and a formula'; Name = "=cmd|' /C calc'!A0+@SUM(1)<svg onload=alert(1)>&amp;" }
    ) {
        $e = New-EmulatedProcess -Name $Name
        $m = $e | Add-EmulatedMapping -Length 64KB
        $samples = $e | Watch-DirtyPage -Count 2 -Interval 0.01 -Workload @{ Address = $m.Start; Length = 64KB; Pattern = 'Random'; AccessesPerSecond = 20000 }
        $e2 = New-EmulatedProcess -Name 'other'
        $m2 = $e2 | Add-EmulatedMapping -Length 64KB
        $samples2 = $e2 | Watch-DirtyPage -Count 2 -Interval 0.01 -Workload @{ Address = $m2.Start; Length = 64KB; Pattern = 'Random'; AccessesPerSecond = 20000 }
        $svg = Join-Path $root "$(New-Name).svg"
        $null = @($samples) + @($samples2) | Export-DirtyPageChart -Path $svg -WarningAction SilentlyContinue
        $text = [IO.File]::ReadAllText($svg)
        $xml = [xml]$text
        ($text -match "[`u{200e}`u{200f}`u{202a}-`u{202e}`u{2066}-`u{2069}]") | Should -BeFalse -Because 'no bidirectional control reaches the chart'
        # (Nor any control, format character or separator: a tag character is a pair starting U+DB40.)
        ($text -match '[\p{Cc}\p{Cf}\u2028\u2029\udb40-[\n\r\t]]') | Should -BeFalse -Because 'no invisible or control character reaches the chart'
        $text | Should -Not -Match '<script|<foreignObject|<[a-zA-Z][^<>]*\son[a-z]+='
        $legend = @($xml.svg.text | Where-Object { $_.class -like '*legend series*' } | ForEach-Object { $_.'#text' })
        $legend.Count | Should -Be 2
        @($legend | Where-Object { $_.EndsWith(" ($($e.ProcessId))") }).Count | Should -Be 1 -Because 'the pid follows the name, in reading order'
        if ($Label -like '*formula*') { @($legend | Where-Object { $_ -ceq "$Name ($($e.ProcessId))" }).Count | Should -Be 1 -Because 'markup and formula characters are text, whole' }
    }
}
