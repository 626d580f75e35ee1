#Requires -Version 7.4
<#
    The help of every exported cmdlet: Get-Help finds the compiled MAML (not the auto-generated
    fallback), each page documents exactly the cmdlet's parameters with their real metadata, every
    ```powershell block in docs/ runs, about_SoftDirty loads, and the help compiler rejects malformed pages.
    A cmdlet exported without a docs/<Name>.md page fails here, by name.
#>

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
    $docs = Join-Path $repo 'docs'
    $common = [System.Management.Automation.PSCmdlet]::CommonParameters

    $cmdletCases = @(Get-Command -Module SoftDirty -CommandType Cmdlet | Sort-Object Name | ForEach-Object {
        @{ Name = $_.Name; Page = (Join-Path $docs "$($_.Name).md") }
    })
    $parameterCases = @(foreach ($c in $cmdletCases) {
        foreach ($p in (Get-Command $c.Name).Parameters.Values) {
            if ($p.Name -notin $common) { @{ Command = $c.Name; Parameter = $p.Name } }
        }
    })

    # Every ```powershell block in docs/*.md, with the heading above it as its title.
    $codeCases = @(foreach ($f in Get-ChildItem $docs -Filter '*.md' | Sort-Object Name) {
        $lines = Get-Content $f.FullName
        $heading = $f.Name
        for ($i = 0; $i -lt $lines.Count; $i++) {
            if ($lines[$i] -match '^#{1,4}\s+(.+)$') { $heading = $Matches[1] }
            if ($lines[$i] -match '^```(powershell|pwsh|ps1)\s*$') {
                $start = $i + 1
                $j = $start
                while ($j -lt $lines.Count -and $lines[$j] -notmatch '^```') { $j++ }
                @{ File = $f.Name; Line = $start; Title = $heading; Code = ($lines[$start..($j - 1)] -join "`n") }
                $i = $j
            }
        }
    })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:Repo = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
    $script:Docs = Join-Path $Repo 'docs'
    $script:Compiler = Join-Path $Repo 'tests/Tools/HelpCompiler.ps1'
    $script:Common = [System.Management.Automation.PSCmdlet]::CommonParameters
    # Parse the pages once; a malformed page fails every test that needs it, with the compiler's message.
    $script:ParseError = $null
    $script:Pages = @{}
    try {
        foreach ($p in (& $Compiler -DocsPath $Docs -NoWrite -PassThru -WarningAction SilentlyContinue)) {
            if ($p.PSObject.TypeNames -contains 'SoftDirty.Build.CommandHelpPage') { $Pages[$p.Name] = $p }
        }
    } catch { $script:ParseError = $_.Exception.Message }

    function script:Get-Page([string] $Name) {
        if ($ParseError) { throw "docs/ does not compile: $ParseError" }
        $page = $Pages[$Name]
        if (-not $page) { throw "Exported cmdlet $Name has no help page: write docs/$Name.md (platyPS schema; see docs/Get-PageMap.md)." }
        $page
    }

    # The type name the yaml 'Type:' must give: Nullable unwrapped, arrays as Element[].
    function script:Get-DocTypeName([type] $Type) {
        $t = $Type
        $u = [Nullable]::GetUnderlyingType($t)
        if ($u) { $t = $u }
        if ($t.IsArray) { return (Get-DocTypeName $t.GetElementType()) + '[]' }
        $t.Name
    }

    function script:Get-PipelineText($Attr) {
        $how = @()
        if ($Attr.ValueFromPipeline) { $how += 'ByValue' }
        if ($Attr.ValueFromPipelineByPropertyName) { $how += 'ByPropertyName' }
        if ($how) { "True ($($how -join ', '))" } else { 'False' }
    }

    function script:Squash([string] $Text) { ($Text -replace '\s+', ' ').Trim() }

    function script:Get-PeakRss {
        $line = Select-String -Path "/proc/$PID/status" -Pattern '^VmHWM:\s+(\d+)' | Select-Object -First 1
        [long]$line.Matches[0].Groups[1].Value
    }

    # A minimal valid cmdlet page; tests break one thing at a time.
    $script:GoodPage = @'
---
external help file: SoftDirty.dll-Help.xml
Module Name: SoftDirty
online version:
schema: 2.0.0
---

# Get-Thing

## SYNOPSIS
Gets a thing.

## SYNTAX

### Id (Default)
```
Get-Thing [-Id] <int[]> [<CommonParameters>]
```

## DESCRIPTION
Gets a thing, for tests.

## EXAMPLES

### Example 1: Get one
```powershell
Get-Thing -Id 1
```

Gets thing 1.

## PARAMETERS

### -Id
The id.

```yaml
Type: Int32[]
Parameter Sets: Id
Aliases: PID

Required: True
Position: 0
Default value: None
Accept pipeline input: True (ByPropertyName)
Accept wildcard characters: False
```

### CommonParameters
This cmdlet supports the common parameters.

## INPUTS

### System.Int32[]

## OUTPUTS

### System.Object

## NOTES

## RELATED LINKS

[Get-PageMap](Get-PageMap.md)
'@

    function script:Invoke-CompilerOn([string] $Text, [string] $Name = 'Get-Thing') {
        $dir = Join-Path $TestDrive ([guid]::NewGuid().ToString('n'))
        $null = New-Item -ItemType Directory $dir
        Set-Content -Path (Join-Path $dir "$Name.md") -Value $Text -NoNewline
        & $Compiler -DocsPath $dir -OutputPath (Join-Path $dir 'out') -WarningAction SilentlyContinue 6>$null
        $dir
    }
}

Describe 'Help of <Name>' -Tag Help -ForEach $cmdletCases {
    BeforeAll {
        $command = Get-Command $Name
        $help = Get-Help $Name -Full
        $documented = @($help.parameters.parameter | ForEach-Object name)
        $actual = @($command.Parameters.Keys | Where-Object { $_ -notin $Common })
    }

    It 'has a page docs/<Name>.md' {
        Test-Path $Page | Should -BeTrue -Because "exported cmdlet $Name needs a help page docs/$Name.md"
        Get-Page $Name | Should -Not -BeNullOrEmpty
    }

    It 'Get-Help finds the MAML help, not the partial-help fallback' {
        $help.PSObject.TypeNames | Should -Contain 'MamlCommandHelpInfo' -Because "Get-Help $Name must read en-US/SoftDirty.dll-Help.xml"
        Get-Help $Name -Full | Out-String -Width 200 | Should -Not -Match 'partial help'
    }

    It 'shows the synopsis of its page, not the syntax' {
        $page = Get-Page $Name
        Squash $help.Synopsis | Should -Be (Squash $page.Synopsis)
        $help.Synopsis | Should -Not -Match ([regex]::Escape('[<CommonParameters>]'))
    }

    It 'has a description' {
        Squash ($help.description.Text -join ' ') | Should -Not -BeNullOrEmpty
    }

    It 'documents every parameter of the cmdlet in Get-Help' {
        $missing = @($actual | Where-Object { $_ -notin $documented })
        $missing | Should -BeNullOrEmpty -Because "docs/$Name.md must have a '### -Name' section for each of them"
    }

    It 'documents no parameter the cmdlet lacks' {
        $extra = @($documented | Where-Object { $_ -notin $actual })
        $extra | Should -BeNullOrEmpty
    }

    It 'lists the parameter sets of the cmdlet, with the default one marked, and their syntax' {
        $page = Get-Page $Name
        @($page.Syntax.Name | Sort-Object) | Should -Be @($command.ParameterSets.Name | Sort-Object)
        foreach ($set in $command.ParameterSets) {
            $doc = $page.Syntax | Where-Object Name -eq $set.Name
            $isDefault = $set.IsDefault -and $set.Name -ne '__AllParameterSets'
            $doc.IsDefault | Should -Be $isDefault -Because "### $($set.Name) (Default) marks the default set"
            Squash $doc.Text | Should -Be (Squash "$Name $set") -Because "the syntax of set $($set.Name) is what Get-Command -Syntax shows"
        }
        @($help.syntax.syntaxItem).Count | Should -Be $command.ParameterSets.Count
    }

    It 'has at least one example, and Get-Help shows all of them' {
        $page = Get-Page $Name
        $page.Examples.Count | Should -BeGreaterOrEqual 1
        @($help.examples.example).Count | Should -Be $page.Examples.Count
        @($help.examples.example)[0].code | Should -Be $page.Examples[0].Code
    }

    It 'is linked from the module page docs/SoftDirty.md' {
        Get-Content -Raw (Join-Path $Docs 'SoftDirty.md') | Should -Match ([regex]::Escape("[$Name]($Name.md)"))
    }

    Context 'parameter -<Parameter>' -ForEach @($parameterCases | Where-Object Command -eq $Name) {
        It 'has the type, sets, aliases, position, mandatory, pipeline and wildcard of the C# parameter' {
            $page = Get-Page $Command
            $meta = (Get-Command $Command).Parameters[$Parameter]
            $doc = $page.Parameters | Where-Object Name -eq $Parameter
            $doc | Should -Not -BeNullOrEmpty -Because "docs/$Command.md needs '### -$Parameter' with its yaml block"
            $doc.Type | Should -Be (Get-DocTypeName $meta.ParameterType)
            @($doc.Variants[0].Aliases | Sort-Object) | Should -Be @($meta.Aliases | Sort-Object)
            $globbing = [bool]($meta.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
            foreach ($v in $doc.Variants) { $v.Globbing | Should -Be $globbing -Because 'Accept wildcard characters follows [SupportsWildcards]' }

            $sets = @($meta.ParameterSets.Keys | ForEach-Object { if ($_ -eq '__AllParameterSets') { '(All)' } else { $_ } } | Sort-Object)
            @($doc.Variants.ParameterSets | Sort-Object) | Should -Be $sets
            foreach ($key in $meta.ParameterSets.Keys) {
                $attr = $meta.ParameterSets[$key]
                $setName = if ($key -eq '__AllParameterSets') { '(All)' } else { $key }
                $v = $doc.Variants | Where-Object { $setName -in $_.ParameterSets }
                $v.Required | Should -Be $attr.IsMandatory -Because "Required in set $setName"
                $position = if ($attr.Position -eq [int]::MinValue) { 'Named' } else { "$($attr.Position)" }
                $v.Position | Should -Be $position -Because "Position in set $setName"
                $v.PipelineInput | Should -Be (Get-PipelineText $attr) -Because "Accept pipeline input in set $setName"
            }
        }

        It 'has a description, not a placeholder' {
            $text = Squash ((Get-Help $Command -Parameter $Parameter).description.Text -join ' ')
            $text | Should -Not -Match '^[A-Za-z]+\d+$' -Because "'$text' is a generated stand-in (docs/$Command.md)"
            $text | Should -Not -Match '\{\{.*\}\}'
        }

        It 'shows its type and description in Get-Help -Parameter' {
            $ph = Get-Help $Command -Parameter $Parameter
            $ph.type.name | Should -Be (Get-DocTypeName (Get-Command $Command).Parameters[$Parameter].ParameterType)
            Squash ($ph.description.Text -join ' ') | Should -Not -BeNullOrEmpty
        }
    }
}

Describe 'docs/ pages' -Tag Help {
    It 'compile without error' {
        $ParseError | Should -BeNullOrEmpty
    }

    It 'describe only exported cmdlets' {
        $exported = @(Get-Command -Module SoftDirty -CommandType Cmdlet).Name
        $stale = @($Pages.Keys | Where-Object { $_ -notin $exported })
        $stale | Should -BeNullOrEmpty -Because 'a page for a cmdlet the module does not export is stale'
    }
}

Describe 'Code in <File> line <Line>: <Title>' -Tag Help, Examples -ForEach $codeCases {
    BeforeAll {
        # Each example runs with its own temp folder (TMPDIR, which [IO.Path]::GetTempPath() reads), so what
        # it leaves behind is its own even while other processes use /tmp.
        $script:SavedTmp = $env:TMPDIR
        $script:ExampleTmp = Join-Path $TestDrive ([guid]::NewGuid().ToString('n'))
        $null = New-Item -ItemType Directory $ExampleTmp
        $env:TMPDIR = $ExampleTmp + '/'
    }
    AfterAll { $env:TMPDIR = $SavedTmp }

    It 'runs without error in a fresh runspace' {
        $iss = [System.Management.Automation.Runspaces.InitialSessionState]::CreateDefault2()
        $iss.ImportPSModule($env:SOFTDIRTY_MODULE)
        $ps = [powershell]::Create($iss)
        try {
            $usesWhatIf = $Code -match '-WhatIf\b'
            if ($usesWhatIf) {
                # VmHWM reads max(hiwater, current RSS), and the current RSS comes from per-CPU counters that
                # lag by a machine-dependent batch. Raise the hiwater first (128 MiB written, then unmapped:
                # the kernel records the peak at munmap): then VmHWM stays at or above this reading unless a
                # PeakRss clear resets it (to the current RSS, ~128 MiB lower). No allowance needed.
                $block = [System.Runtime.InteropServices.Marshal]::AllocHGlobal(128MB)
                try { for ($o = 0; $o -lt 128MB; $o += [Environment]::SystemPageSize) { [System.Runtime.InteropServices.Marshal]::WriteByte($block, $o, 1) } }
                finally { [System.Runtime.InteropServices.Marshal]::FreeHGlobal($block) }
                $peakBefore = Get-PeakRss
            }
            $script = "`$ErrorActionPreference = 'Stop'`n`$ProgressPreference = 'SilentlyContinue'`n& {`n$Code`n} | Out-String -Width 200"
            $out = $ps.AddScript($script).Invoke()
            $errors = @($ps.Streams.Error | ForEach-Object { "$($_.FullyQualifiedErrorId): $_" })
            $errors | Should -BeNullOrEmpty -Because "the code at docs/${File}:$Line must run cleanly"
            $ps.HadErrors | Should -BeFalse
            if (-not $usesWhatIf) { ($out -join '') | Should -Not -BeNullOrEmpty -Because 'an example should show something' }
            if ($usesWhatIf) {
                (Get-PeakRss) | Should -BeGreaterOrEqual $peakBefore -Because '-WhatIf must not write clear_refs (a real PeakRss clear lowers VmHWM)'
            }
        } finally { $ps.Dispose() }
    }

    It 'leaves nothing in the temp folder' {
        # A job's child process keeps the .NET runtime's own diagnostic FIFOs and socket there until it exits, the socket's
        # name cut short where the temp folder's path is long (a socket path has 108 bytes: 'dotnet-diagnos'): told by type.
        @(Get-ChildItem -Force -LiteralPath $ExampleTmp | Where-Object { $_.UnixStat.ItemType -notin 'NamedPipe', 'Socket' }).Name | Should -BeNullOrEmpty -Because "the code at docs/${File}:$Line should remove what it writes"
    }
}

Describe 'about_SoftDirty' -Tag Help {
    It 'Get-Help about_SoftDirty shows the topic' {
        $text = Get-Help about_SoftDirty | Out-String
        $text | Should -Match 'SHORT DESCRIPTION'
        $text | Should -Match 'soft-dirty'
        $text | Should -Match 'CONFIG_MEM_SOFT_DIRTY'
    }

    It 'is found by a wildcard search' {
        @(Get-Help about_Soft*).Count | Should -BeGreaterOrEqual 1
    }
}

Describe 'Help from the repository root manifest' -Tag Help {
    It 'Import-Module ./SoftDirty.psd1 finds the help too' {
        if (-not (Test-Path (Join-Path $Repo 'out/SoftDirty/SoftDirty.dll'))) { Set-ItResult -Skipped -Because 'out/SoftDirty is not built (build.ps1 Build)'; return }
        $synopsis = Invoke-ChildPwsh "Import-Module '$Repo/SoftDirty.psd1'; (Get-Help Get-PageMap).Synopsis; (Get-Help about_SoftDirty | Out-String) -match 'SHORT DESCRIPTION'"
        $synopsis[0] | Should -Be (Get-Page 'Get-PageMap').Synopsis -Because 'the root manifest loads out/SoftDirty/SoftDirty.psd1, and Get-Help looks for SoftDirty.dll-Help.xml under that ModuleBase''s en-US'
        $synopsis[1] | Should -Be 'True'
    }
}

Describe 'HelpCompiler' -Tag Help, Compiler {
    It 'compiles a valid page into MAML with one command:command' {
        $dir = Invoke-CompilerOn $GoodPage
        [xml]$xml = Get-Content -Raw (Join-Path $dir 'out/SoftDirty.dll-Help.xml')
        $xml.DocumentElement.LocalName | Should -Be 'helpItems'
        $xml.DocumentElement.NamespaceURI | Should -Be 'http://msh'
        $xml.DocumentElement.schema | Should -Be 'maml'
        $ns = [System.Xml.XmlNamespaceManager]::new($xml.NameTable)
        $ns.AddNamespace('command', 'http://schemas.microsoft.com/maml/dev/command/2004/10')
        $ns.AddNamespace('maml', 'http://schemas.microsoft.com/maml/2004/10')
        $ns.AddNamespace('dev', 'http://schemas.microsoft.com/maml/dev/2004/10')
        $xml.SelectNodes('//command:command', $ns).Count | Should -Be 1
        $xml.SelectSingleNode('//command:details/command:name', $ns).InnerText | Should -Be 'Get-Thing'
        $xml.SelectSingleNode('//command:details/maml:description/maml:para', $ns).InnerText | Should -Be 'Gets a thing.'
        $p = $xml.SelectSingleNode('//command:syntaxItem/command:parameter', $ns)
        $p.required | Should -Be 'true'
        $p.position | Should -Be '0'
        $p.pipelineInput | Should -Be 'True (ByPropertyName)'
        $p.aliases | Should -Be 'PID'
        $xml.SelectSingleNode('//command:example/dev:code', $ns).InnerText | Should -Be 'Get-Thing -Id 1'
    }

    It 'rejects a page where <Case>, naming the file and line' -ForEach @(
        @{ Case = 'SYNOPSIS is missing'; Find = "## SYNOPSIS`nGets a thing.`n"; Replace = ''; Expect = "missing section '## SYNOPSIS'"; Line = 8 }
        @{ Case = 'SYNOPSIS is empty'; Find = 'Gets a thing.'; Replace = ''; Expect = 'SYNOPSIS is empty'; Line = 10 }
        @{ Case = 'a parameter lacks its yaml block'; Find = "``````yaml`nType: Int32[]"; Replace = "``````text`nType: Int32[]"; Expect = 'has no ```yaml block'; Line = 34 }
        @{ Case = 'a yaml key is missing'; Find = "Position: 0`n"; Replace = ''; Expect = "lacks 'Position:'"; Line = 37 }
        @{ Case = 'a yaml key is unknown'; Find = 'Position: 0'; Replace = 'Positoin: 0'; Expect = "unknown parameter yaml key 'Positoin'"; Line = 43 }
        @{ Case = 'a parameter names an unknown set'; Find = 'Parameter Sets: Id'; Replace = 'Parameter Sets: Name'; Expect = "names parameter set 'Name'"; Line = 39 }
        @{ Case = 'an example has no code'; Find = "``````powershell`nGet-Thing -Id 1`n```````n`nGets thing 1.`n"; Replace = ''; Expect = 'has no code block'; Line = 25 }
        @{ Case = 'a section is unknown'; Find = '## NOTES'; Replace = '## REMARKS'; Expect = "unknown section '## REMARKS'"; Line = 60 }
        @{ Case = 'a code block is never closed'; Find = '(Get-PageMap.md)'; Replace = "(Get-PageMap.md)`n`n``````powershell`nGet-Thing"; Expect = 'never closed'; Line = 66 }
        @{ Case = 'the title does not match the file'; Find = '# Get-Thing'; Replace = '# Get-Other'; Expect = 'does not match the file name'; Line = 8 }
        @{ Case = 'a parameter description is a placeholder'; Find = 'The id.'; Replace = 'Id0'; Expect = "placeholder description 'Id0'"; Line = 34 }
        @{ Case = 'a parameter description is platyPS''s stand-in'; Find = 'The id.'; Replace = '{{ Fill Id Description }}'; Expect = 'placeholder description'; Line = 34 }
    ) {
        $GoodPage.Contains($Find) | Should -BeTrue -Because 'the test must change the page'
        $bad = $GoodPage.Replace($Find, $Replace)
        $err = { Invoke-CompilerOn $bad } | Should -Throw -PassThru
        $err.Exception.Message | Should -Match ([regex]::Escape("Get-Thing.md:$Line`: ") + '.*' + [regex]::Escape($Expect))
    }

    It 'rejects an about topic without SHORT DESCRIPTION' {
        $about = "# about_Thing`n`n## LONG DESCRIPTION`nText.`n"
        { Invoke-CompilerOn $about -Name 'about_Thing' } | Should -Throw -ExpectedMessage "*about_Thing.md:1: missing section '## SHORT DESCRIPTION'*"
    }
}
