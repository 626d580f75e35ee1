#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, twelfth attack round, on what the module shows or writes for a person or another program after round 11's
# fixes: error records in every error view and Get-Error, the bidirectional controls that were left out, the chart's
# text, completers, deserialized objects and the names written into images (new cases only; earlier rounds are in
# Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1).

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r12')
    chmod 0755 $TestDrive $root
    # An OSC title sequence ended by BEL, an OSC 52 clipboard write, an OSC 8 hyperlink, an SGR colour, a right-to-left override.
    $script:Evil = "r12`e]0;owned`a`e]52;c;ZWNobyBwd25lZA==`a`e]8;;http://x/`e\link`e]8;;`e\`e[31mRED`u{202e}txt"
    # The characters of those names; the output itself holds line ends.
    $script:Hidden = "[`e`a`u{202e}]"
    function New-Name { [guid]::NewGuid().ToString('n') }
    Add-Type -Path $env:SOFTDIRTY_TESTKIT
    function Edit-Manifest([string] $Image, [scriptblock] $Edit) {
        $m = [SoftDirty.TestKit.Images.ManifestFile]::Read($Image)
        & $Edit $m
        [SoftDirty.TestKit.Images.ManifestFile]::Write($Image, $m)
    }
    # Every way PowerShell shows an error record: the three error views, Get-Error, Format-List *, and its text.
    function Get-ErrorText([System.Management.Automation.ErrorRecord] $Record) {
        $saved = $global:ErrorView
        try {
            foreach ($v in 'ConciseView', 'NormalView', 'DetailedView') {
                $global:ErrorView = $v
                [pscustomobject]@{ View = $v; Text = ($Record | Out-String -Width 400) }
            }
        } finally { $global:ErrorView = $saved }
        [pscustomobject]@{ View = 'Get-Error'; Text = ($Record | Get-Error | Out-String -Width 400) }
        [pscustomobject]@{ View = 'Format-List *'; Text = ($Record | Format-List * -Force | Out-String -Width 400) }
        [pscustomobject]@{ View = 'CategoryInfo'; Text = $Record.CategoryInfo.ToString() }
        [pscustomobject]@{ View = 'Exception.Message'; Text = $Record.Exception.Message }
    }
}

Describe 'Errors that quote a hostile name print it escaped in every error view and in Get-Error' -Tag 'Security', 'Round12Surface' {
    # Round 9 escaped the message of an engine error (ErrorDetails, which the concise view prints), but the record kept
    # the exception, its target and CategoryInfo as they were: $ErrorView = 'NormalView' (the CategoryInfo line),
    # 'DetailedView' and Get-Error (the exception's Message, Target and File, and TargetObject) printed them raw, so an
    # image's author (a mapping path in its manifest) or a process's owner (its name) wrote to the reader's terminal:
    # set its title, wrote its clipboard (OSC 52), or drew a hyperlink (OSC 8).
    It 'an image whose manifest holds overlapping mappings, one with a hostile path: Get-MemoryImage''s error in <View>' -ForEach @(
        foreach ($v in 'ConciseView', 'NormalView', 'DetailedView', 'Get-Error', 'Format-List *', 'CategoryInfo', 'Exception.Message') { @{ View = $v } }
    ) {
        $e = New-EmulatedProcess
        $a = $e | Add-EmulatedMapping -Length 64KB
        $null = $e | Add-EmulatedMapping -Length 64KB -Path '/r12/other'
        $e | Write-EmulatedMemory -Address $a.Start -Length 4KB
        $img = Join-Path $root (New-Name)
        $null = $e | Save-MemoryImage -Path $img
        Edit-Manifest $img { param($x) $x.Mappings[1].Path = "/lib/$Evil"; $x.Mappings[1].Start = $x.Mappings[0].Start }
        $err = $null
        $null = Get-MemoryImage $img -ErrorAction SilentlyContinue -ErrorVariable err
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be 'ImageCorrupt,SoftDirty.Commands.GetMemoryImageCommand'
        $err[0].Exception | Should -BeOfType ([SoftDirty.EngineException])
        $err[0].Exception.Message | Should -BeLike '*/lib/r12\x1b]0;owned\x07*' -Because 'the message still names the mapping, escaped'
        $text = (Get-ErrorText $err[0] | Where-Object View -EQ $View).Text
        $text | Should -Not -BeNullOrEmpty
        ($text -match $Hidden) | Should -BeFalse -Because "$View prints no control character of the name as it is"
    }

    It 'a corrupt image under a hostile folder name: the error keeps its type and ErrorId, its text escaped' {
        # The folder is the user's choice here; what matters is that the escaped copy keeps what a script catches.
        $restoreCorrupt = {
            param($Name)
            $e = New-EmulatedProcess
            $a = $e | Add-EmulatedMapping -Length 64KB
            $e | Write-EmulatedMemory -Address $a.Start -Length 4KB
            $img = Join-Path $root $Name
            $null = $e | Save-MemoryImage -Path $img
            $data = Get-ChildItem -LiteralPath $img -File | Where-Object Name -Like 'pages*' | Select-Object -First 1
            $bytes = [IO.File]::ReadAllBytes($data.FullName); $bytes[0] = $bytes[0] -bxor 0xFF; [IO.File]::WriteAllBytes($data.FullName, $bytes)
            try { $null = Restore-MemoryImage -Path $img -Destination (Join-Path $root (New-Name)) -ErrorAction Stop; $null } catch { $_ }
        }
        $plain = & $restoreCorrupt (New-Name)
        $hostile = & $restoreCorrupt "$(New-Name)`e]0;t`a"
        $plain | Should -Not -BeNullOrEmpty
        $hostile.FullyQualifiedErrorId | Should -Be $plain.FullyQualifiedErrorId
        $hostile.CategoryInfo.Category | Should -Be $plain.CategoryInfo.Category
        $hostile.Exception.GetType() | Should -Be $plain.Exception.GetType()
        $hostile.Exception.Message | Should -BeLike '*\x1b]0;t\x07*'
        foreach ($t in Get-ErrorText $hostile) { ($t.Text -match $Hidden) | Should -BeFalse -Because "$($t.View) prints no control character as it is" }
    }

    It 'a received image stream whose sender named a file with terminal sequences: Receive-MemoryImage''s error in every view' {
        # The names in the stream are the sender's (another machine's, another user's): the error quotes the name.
        $caught = try { $null = "manifest$Evil", [byte[]](1, 2, 3) | Receive-MemoryImage -Path (Join-Path $root (New-Name)) -ErrorAction Stop; $null } catch { $_ }
        $caught | Should -Not -BeNullOrEmpty
        $caught.FullyQualifiedErrorId | Should -BeLike 'InvalidArgument,*'
        foreach ($t in Get-ErrorText $caught) { ($t.Text -match $Hidden) | Should -BeFalse -Because "$($t.View) prints no control character as it is" }
    }

    It 'an emulated process named with terminal sequences: a segmentation fault''s error in every view' {
        $e = New-EmulatedProcess -Name $Evil
        $err = $null
        $e | Write-EmulatedMemory -Address 0x10000 -Length 1 -ErrorAction SilentlyContinue -ErrorVariable err
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'SegmentationFault,*'
        foreach ($t in Get-ErrorText $err[0]) { ($t.Text -match $Hidden) | Should -BeFalse -Because "$($t.View) prints no control character as it is" }
        $err[0].TargetObject | Should -Be 0x10000 -Because 'a target that is not text is kept as it is'
    }
}

Describe 'Invisible and bidirectional characters round 11 left out, in views, completion and the chart' -Tag 'Security', 'Round12Surface' {
    # Views, errors, completion and the chart escaped C0/C1 controls and the bidirectional controls U+200E, U+200F,
    # U+202A-U+202E and U+2066-U+2069, but not the Arabic letter mark U+061C (a bidirectional control too: after it,
    # digits are Arabic numbers and the brackets around a pid turn), nor the characters a terminal draws as nothing:
    # zero-width space and joiners, word joiner, BOM, the tag characters U+E0000-U+E007F (invisible text a reader
    # cannot see but copies), line and paragraph separators. A mapping of a file named "lib\u200b.so" read as "lib.so".
    # Now every format character (Unicode Cf), separator and lone surrogate is escaped too; and the chart draws them,
    # and the C1 controls and DEL it kept, as U+FFFD. (-Mapping completion of such a file: Security.Round9.Pages.Tests.ps1; the chart:
    # Security.Round11.Output.Tests.ps1.)
    BeforeDiscovery {
        $script:Invisible = @(
            @{ Label = 'the Arabic letter mark (U+061C)'; Text = "r12`u{061c}a" }
            @{ Label = 'a zero-width space (U+200B) and joiner (U+200D)'; Text = "r12`u{200b}b`u{200d}" }
            @{ Label = 'a word joiner (U+2060) and a BOM (U+FEFF)'; Text = "r12`u{2060}c`u{feff}" }
            @{ Label = 'tag characters (U+E0041, U+E0042)'; Text = "r12`u{e0041}`u{e0042}d" }
            @{ Label = 'line and paragraph separators (U+2028, U+2029)'; Text = "r12`u{2028}e`u{2029}" }
        )
    }
    BeforeAll {
        # Any of them, and C0/C1 controls but the line ends of the output (a tag character is a surrogate pair starting U+DB40).
        $script:Invisibles = '[\p{Cc}\p{Cf}\u2028\u2029\udb40-[\n\r]]'
        function Complete([string] $Line) { @((TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches) }
    }

    It 'an emulated process and a mapping named with <Label>: every view of the process, its mapping, image and restore escapes it' -ForEach $Invisible {
        $e = New-EmulatedProcess -Name $Text
        $m = $e | Add-EmulatedMapping -Length 64KB -Path "/tmp/$Text"
        $e | Write-EmulatedMemory -Address $m.Start -Length 4KB
        $d = Join-Path $root (New-Name)
        $saved = $e | Save-MemoryImage -Path $d
        $restored = Restore-MemoryImage $d "$d.r"
        ($saved.ProcessName -ceq $Text) | Should -BeTrue -Because 'the objects keep the name as it is'
        ($restored[0].Mapping -ceq "/tmp/$Text") | Should -BeTrue
        foreach ($o in $e, ($e | Get-MemoryMapping), $saved, (Get-MemoryImage $d), $restored, ($e | Get-PageMap -AsRange)) {
            foreach ($f in 'Out-String', 'Format-Table', 'Format-List', 'Format-Wide') {
                $shown = if ($f -eq 'Out-String') { $o | Out-String -Width 400 } else { $o | & $f | Out-String -Width 400 }
                ($shown -match $Invisibles) | Should -BeFalse -Because "$f of $(@($o)[0].GetType().Name) prints no invisible character as it is"
            }
        }
        (Get-MemoryImage $d | Format-List | Out-String -Width 400) | Should -Match 'r12\\[uU]' -Because 'the name is shown with the character escaped'
    }

    It 'a real process whose name (comm) holds <Label>: Get-SoftDirtySupport -Id shows it escaped' -ForEach $Invisible {
        $dir = New-Item -ItemType Directory (Join-Path $root (New-Name))
        $link = Join-Path $dir $Text
        New-Item -ItemType SymbolicLink -Path $link -Target (Get-Command sleep -CommandType Application)[0].Source | Out-Null
        $p = [System.Diagnostics.Process]::Start($link, '600')
        try {
            ((Get-Content -Raw "/proc/$($p.Id)/comm").TrimEnd("`n") -ceq $Text) | Should -BeTrue -Because 'comm is the name exec''d (15 bytes at most)'
            $s = Get-SoftDirtySupport -Id $p.Id
            ($s.Name -ceq $Text) | Should -BeTrue
            foreach ($f in 'Out-String', 'Format-Table', 'Format-List', 'Format-Wide') {
                $shown = if ($f -eq 'Out-String') { $s | Out-String -Width 400 } else { $s | & $f | Out-String -Width 400 }
                ($shown -match $Invisibles) | Should -BeFalse -Because "$f prints no invisible character as it is"
            }
            $m = @(Complete "Get-PageMap -Id $($p.Id)") | Where-Object CompletionText -EQ "$($p.Id)"
            $m.Count | Should -Be 1
            $m[0].ListItemText | Should -Not -Match $Invisibles
            $m[0].ToolTip | Should -Not -Match $Invisibles
        } finally { $p.Kill(); $p.WaitForExit() }
    }
}

Describe 'Objects received from a job (deserialized) with the module loaded here' -Tag 'Security', 'Round12Surface' {
    # Start-Job | Receive-Job gives Deserialized.SoftDirty.* objects: the module's views apply to them (handled; kept
    # as a regression test). A session without the module formats them with PowerShell's defaults, as it does
    # Format-List * (about_SoftDirty says the objects keep the text as it is).
    It 'Get-MemoryImage, Restore-MemoryImage and an emulated process''s mappings run in a job print the names escaped here' {
        $module = (Get-Module SoftDirty).Path
        $job = Start-Job -ArgumentList $module, (Join-Path $root (New-Name)), $Evil {
            param($Module, $Image, $Evil)
            Import-Module $Module
            $e = New-EmulatedProcess -Name $Evil
            $m = $e | Add-EmulatedMapping -Length 64KB -Path "/tmp/$Evil"
            $e | Write-EmulatedMemory -Address $m.Start -Length 4KB
            $null = $e | Save-MemoryImage -Path $Image
            Get-MemoryImage $Image
            Restore-MemoryImage $Image "$Image.r"
            $e | Get-MemoryMapping
        }
        try { $back = @($job | Wait-Job -Timeout 300 | Receive-Job) } finally { $job | Remove-Job -Force }
        $back.Count | Should -Be 3
        ($back[0].PSTypeNames[0]) | Should -Be 'Deserialized.SoftDirty.Images.MemoryImageInfo'
        ($back[0].ProcessName -ceq $Evil) | Should -BeTrue
        foreach ($o in $back) {
            foreach ($f in 'Out-String', 'Format-Table', 'Format-List') {
                $text = if ($f -eq 'Out-String') { $o | Out-String -Width 400 } else { $o | & $f | Out-String -Width 400 }
                ($text -match $Hidden) | Should -BeFalse -Because "$f of $($o.PSTypeNames[0]) prints no control character as it is"
            }
        }
    }
}

Describe 'An image whose manifest holds a name of millions of characters' -Tag 'Security', 'Round12Surface' {
    # A manifest may be 64 MiB, so an image's author may name the process or a mapping with millions of characters
    # (the kernel gives 15 bytes and 4095). PowerShell lays a list's long value out in time that grows with the square
    # of its length: Get-MemoryImage | Format-List of a 30 MiB name ran for more than five minutes. The views show
    # the first 64 Ki characters and count the rest; the objects keep the name whole.
    It 'Get-MemoryImage and Restore-MemoryImage: the objects hold the whole name, every view shows a bounded part and counts the rest' {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 64KB
        $e | Write-EmulatedMemory -Address $m.Start -Length 4KB
        $img = Join-Path $root (New-Name)
        $null = $e | Save-MemoryImage -Path $img
        $long = "`e]0;t`a" + ('A' * 2MB)
        Edit-Manifest $img { param($x) $x.ProcessName = $long; $x.Mappings[0].Path = "/$long" }
        $info = Get-MemoryImage $img
        $info.ProcessName.Length | Should -Be $long.Length -Because 'the object keeps the name whole'
        $restored = @(Restore-MemoryImage $img (Join-Path $root (New-Name)))
        $restored[0].Mapping.Length | Should -Be ($long.Length + 1)
        foreach ($o in $info, $restored) {
            foreach ($f in 'Out-String', 'Format-Table', 'Format-List', 'Format-Custom') {
                $text = if ($f -eq 'Out-String') { $o | Out-String -Width 200 } else { $o | & $f | Out-String -Width 200 }
                $text.Length | Should -BeLessThan (4 * [SoftDirty.Commands.DisplayText]::MaxShown) -Because "$f shows a bounded part of the name"
                ($text -match $Hidden) | Should -BeFalse
            }
        }
        ($info | Format-List | Out-String -Width 200) | Should -Match "more characters\)"
    }
}
