#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7' }
# Issue 13, ninth attack round, on the page cmdlets and the shell surface: argument completion of names someone
# else chose, a thread id given as -Id, and -WhatIf measured (new cases only; earlier rounds are in
# Security.Round*.Tests.ps1, Workflows.Security.Tests.ps1 and WriteTracking.Tests.ps1). The engine's side, a pid
# reused by another process under an open source: tests/SoftDirty.Engine.Tests/PagesRound9Tests.cs.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $q = [char]0x2019
    # Names a file's owner chooses; each, typed back by Tab then Enter, must be exactly that name and run nothing.
    $script:HostileNames = @(
        @{ Label = 'a right single quote (U+2019)'; Name = "r9a$([char]0x2019);`$global:R9Ran=1;$([char]0x2019)" }
        @{ Label = 'a left single quote (U+2018)'; Name = "r9b$([char]0x2018);`$global:R9Ran=1;$([char]0x2018)" }
        @{ Label = 'a low single quote (U+201A)'; Name = "r9c$([char]0x201a);`$global:R9Ran=1;$([char]0x201a)" }
        @{ Label = 'a reversed single quote (U+201B)'; Name = "r9d$([char]0x201b);`$global:R9Ran=1;$([char]0x201b)" }
        @{ Label = 'an ASCII quote'; Name = "r9e';`$global:R9Ran=1;'" }
        @{ Label = 'a subexpression and backticks'; Name = "r9f`$(`$global:R9Ran=1)``n" }
        @{ Label = 'ESC, BEL and a bidi override with a double quote, a typographic double quote and $()'; Name = "r9g`e]0;x`a`u{202e}`"$([char]0x201d)`$(`$global:R9Ran=1)" }
        # Round 12: the Arabic letter mark (a bidi control), zero-width and tag characters and a line separator were
        # completed as they are (in a single-quoted literal the reader could not see) and listed as they are.
        @{ Label = 'the Arabic letter mark, a zero-width space, a tag character and a line separator'; Name = "r9h`u{061c}`u{200b}`u{e0041}`u{2028}x" }
    )
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $PSDefaultParameterValues = @{ '*:WarningAction' = 'SilentlyContinue' }
    $script:root = New-Item -ItemType Directory (Join-Path $TestDrive 'r9')
    # Controls, format characters (bidi controls, zero-width, tags: a tag is a pair starting U+DB40) and separators.
    $script:Hidden = '[\p{Cc}\p{Cf}\u2028\u2029\udb40]'
    function Complete([string] $Line) { @((TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches) }
    # The argument a completed command line passes: the single command element after the parameter, parsed.
    function Get-CompletedArgument([string] $Line) {
        $errors = $null
        $ast = [System.Management.Automation.Language.Parser]::ParseInput($Line, [ref]$null, [ref]$errors)
        $errors | Should -BeNullOrEmpty -Because "'$Line' must parse"
        $commands = @($ast.FindAll({ $args[0] -is [System.Management.Automation.Language.CommandAst] }, $true))
        $commands.Count | Should -Be 1 -Because "'$Line' must be one command, nothing chained after the argument"
        $commands[0].CommandElements[-1]
    }
    function Get-Referenced([int] $Id) {
        [long](((Get-Content "/proc/$Id/smaps_rollup") -match '^Referenced:') -split '\s+')[1]
    }
}

Describe 'Tab completion of names that a file''s or a process''s owner chose' -Tag 'Security', 'Round9Pages' {
    # Before the fix -Mapping completed '<name>' with only the ASCII quote doubled: PowerShell also ends a
    # single-quoted string at U+2018-U+201B, so Tab then Enter on a file named r9a’;$global:R9Ran=1;’ mapped in the
    # target ran $global:R9Ran=1 (seen, with Invoke-Expression of the completed line). The list and the tooltip
    # showed ESC, BEL and bidi overrides raw.
    BeforeAll {
        $script:t = Start-TestTarget
    }
    AfterAll { Stop-TestTarget -Process $t.Process }

    It '-Mapping completes a file whose name has <Label> as exactly that name, and Enter runs nothing' -ForEach $HostileNames {
        $dir = New-Item -ItemType Directory (Join-Path $root ([guid]::NewGuid().ToString('n')))
        $file = Join-Path $dir $Name
        [System.IO.File]::WriteAllBytes($file, [byte[]]::new($t.PageSize))
        # The line protocol takes no quotes or spaces in a path: the target maps it through a link (maps shows the file).
        $link = Join-Path $dir 'link'
        New-Item -ItemType SymbolicLink -Path $link -Target $file | Out-Null
        $base = $t.Map(1, "file $link")
        $match = @(Complete "Get-PageMap -Id $($t.Id) -Mapping r9") | Where-Object ListItemText -Like "*$(Split-Path -Leaf $dir)*"
        $match.Count | Should -Be 1
        $match[0].ListItemText | Should -Not -Match $Hidden
        $match[0].ToolTip | Should -Not -Match $Hidden
        $line = "Get-PageMap -Id $($t.Id) -Mapping $($match[0].CompletionText)"
        $arg = Get-CompletedArgument $line
        ($arg -is [System.Management.Automation.Language.StringConstantExpressionAst] -or $arg -is [System.Management.Automation.Language.ExpandableStringExpressionAst]) |
            Should -BeTrue -Because "the argument is one string, not $($arg.GetType().Name)"
        if ($arg -is [System.Management.Automation.Language.ExpandableStringExpressionAst]) { $arg.NestedExpressions | Should -BeNullOrEmpty }
        # -Mapping takes wildcards: the completed name is the file's name with its wildcard characters escaped (round 14).
        $arg.Value | Should -BeExactly ([System.Management.Automation.WildcardPattern]::Escape($file))
        $arg.Extent.Text | Should -Not -Match $Hidden -Because 'the line shown is the line that runs'
        $global:R9Ran = $null
        $pages = @(Invoke-Expression $line)
        $global:R9Ran | Should -BeNullOrEmpty
        $pages.Count | Should -Be 1
        $pages[0].Start | Should -Be $base
        $pages[0].Mapping | Should -BeExactly $file
    }

    It '-Id lists a process whose name (comm) holds ESC and BEL with them escaped' {
        $dir = New-Item -ItemType Directory (Join-Path $root ([guid]::NewGuid().ToString('n')))
        # comm is the base name the program was exec'd under (15 bytes at most).
        $link = Join-Path $dir "r9`e]0;t`a"
        New-Item -ItemType SymbolicLink -Path $link -Target (Get-Command sleep -CommandType Application)[0].Source | Out-Null
        $p = [System.Diagnostics.Process]::Start($link, '600')
        try {
            (Get-Content -Raw "/proc/$($p.Id)/comm").TrimEnd("`n") | Should -BeExactly "r9`e]0;t`a"
            $match = @(Complete "Get-PageMap -Id $($p.Id)") | Where-Object CompletionText -EQ "$($p.Id)"
            $match.Count | Should -Be 1
            $match[0].ListItemText | Should -Not -Match $Hidden
            $match[0].ListItemText | Should -BeLike '*\x1b]0;t\x07*'
            $match[0].ToolTip | Should -Not -Match $Hidden
        } finally { $p.Kill(); $p.WaitForExit() }
    }

    It '-Address lists the mappings of a file whose name holds ESC and a bidi override with them escaped' {
        $dir = New-Item -ItemType Directory (Join-Path $root ([guid]::NewGuid().ToString('n')))
        $file = Join-Path $dir "r9`e[2J`u{202e}"
        [System.IO.File]::WriteAllBytes($file, [byte[]]::new($t.PageSize))
        $link = Join-Path $dir 'link'
        New-Item -ItemType SymbolicLink -Path $link -Target $file | Out-Null
        $base = $t.Map(1, "file $link")
        $match = @(Complete "Get-PageMap -Id $($t.Id) -Address 0x$(Hex $base)") | Where-Object CompletionText -EQ "0x$(Hex $base)"
        $match.Count | Should -Be 1
        $match[0].ListItemText | Should -Not -Match $Hidden
        $match[0].ListItemText | Should -BeLike '*\x1b`[2J\u202e'
        $match[0].ToolTip | Should -Not -Match $Hidden
    }

    It 'completion after an -Id that is no number, or a process the user may not read, offers nothing (no file names) and throws nothing' {
        # Before the fix the completers threw converting "abc" and PowerShell offered the files of the current folder.
        Push-Location $root
        try { @(Complete 'Get-PageMap -Id abc -Mapping ') | Should -BeNullOrEmpty } finally { Pop-Location }
        @(Complete 'Get-PageMap -Id abc -Address 0x') | Should -BeNullOrEmpty
        # pid 1 is root's: an unprivileged user may not read its maps, root may.
        $readable = try { [System.IO.File]::ReadAllText('/proc/1/maps').Length -gt 0 } catch { $false }
        $offered = @(Complete 'Get-PageMap -Id 1 -Address 0x')
        if ($readable) { $offered | Should -Not -BeNullOrEmpty } else { $offered | Should -BeNullOrEmpty }
    }
}

Describe 'A thread id given as -Id' -Tag 'Security', 'Round9Pages' {
    # /proc/TID exists for every thread (unlisted). Before the fix Get-PageMap -Id TID read the process's memory and
    # reported it as "process TID (thread name)", and a soft-dirty clear through it kept its tracking epoch under the
    # thread's id, where the process's own chain never looks: its next increment trusted soft-dirty bits cleared
    # meanwhile. Now a thread id is ProcessNotFound, naming the process.
    BeforeDiscovery {
        $script:ThreadCmdlets = @(
            @{ Name = 'Get-MemoryMapping'; Params = @{} }
            @{ Name = 'Get-PageMap'; Params = @{ Mapping = '[stack]' } }
            @{ Name = 'Search-PageMap'; Params = @{} }
            @{ Name = 'Clear-PageReference'; Params = @{ Type = 'All'; Confirm = $false } }
            @{ Name = 'Clear-SoftDirty'; Params = @{ Confirm = $false } }
        )
    }
    BeforeAll {
        # A thread of this PowerShell that is not its main thread.
        $script:tid = [int](Get-ChildItem "/proc/$PID/task" | Where-Object Name -NE "$PID" | Select-Object -First 1).Name
    }

    It '<Name> -Id of a thread says ProcessNotFound and names the process' -ForEach $ThreadCmdlets {
        $p = @{} + $Params
        $err = $null
        $out = & $Name -Id $tid @p -ErrorAction SilentlyContinue -ErrorVariable err
        $out | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'ProcessNotFound,*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].Exception.Message | Should -Match "process $PID\b"
    }
}

Describe '-WhatIf and objects read back from a file' -Tag 'Security', 'Round9Pages' {
    BeforeAll {
        $script:t = Start-TestTarget
        $script:base = $t.Map(16)
        $t.Send("write $(Hex $base) 0 16") | Out-Null
    }
    AfterAll { Stop-TestTarget -Process $t.Process }

    It 'Clear-PageReference -WhatIf, by -Id and piped from Import-Clixml, leaves the referenced bits; without it they clear' {
        # Referenced: of smaps_rollup is what clear_refs 1 clears (the target waits for input, touching nothing).
        $before = Get-Referenced $t.Id
        $before | Should -BeGreaterThan 0
        Clear-PageReference -Id $t.Id -Type All -WhatIf
        $file = Join-Path $root 'process.xml'
        Get-Process -Id $t.Id | Export-Clixml $file
        $read = Import-Clixml $file
        $read.PSObject.TypeNames[0] | Should -Be 'Deserialized.System.Diagnostics.Process'
        $read | Clear-PageReference -Type All -WhatIf
        Get-Referenced $t.Id | Should -Be $before
        $out = @($read | Clear-PageReference -Type All -Confirm:$false -PassThru)
        $out.Id | Should -Be $t.Id
        Get-Referenced $t.Id | Should -BeLessThan $before
    }
}

Describe 'Errors about an emulated process point at the emulated process' -Tag 'Round9Pages' {
    # Before the fix a range outside every mapping of an emulated process (id 100000 and up) said "see
    # Get-MemoryMapping -Id 100000": a real process may have that pid, and the hint would list its mappings instead.
    It '<Name> outside every mapping says -Emulator, never -Id' -ForEach @(
        @{ Name = 'Get-PageMap'; Params = @{ Address = [uint64]0x100000; Length = [uint64]4096 } }
        @{ Name = 'Get-PageMap'; Params = @{ Mapping = 'no-such-mapping' } }
        @{ Name = 'Save-MemoryImage'; Params = @{ Mapping = 'no-such-mapping'; Path = 'TESTDRIVE' } }
    ) {
        $e = New-EmulatedProcess
        Add-EmulatedMapping -Emulator $e -Length 16384 | Out-Null
        $p = @{} + $Params
        if ($p.Path) { $p.Path = Join-Path $root ([guid]::NewGuid().ToString('n')) }
        $err = $null
        & $Name -Emulator $e @p -ErrorAction SilentlyContinue -ErrorVariable err | Out-Null
        $err.Count | Should -Be 1
        $err[0].Exception.Message | Should -Match 'Get-MemoryMapping -Emulator'
        $err[0].Exception.Message | Should -Not -Match 'Get-MemoryMapping -Id'
    }
}
