#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Compiles docs/*.md (platyPS 0.14 markdown schema) into MAML help and about_*.help.txt topics.
.DESCRIPTION
    Cmdlet pages (front matter with 'external help file') become one command:command each in
    <OutputPath>/<external help file> (SoftDirty.dll-Help.xml). about_*.md pages become
    <OutputPath>/about_*.help.txt, plain text as Get-Help about_X reads it. The module page
    (<ModuleName>.md) is checked: every cmdlet page must be linked from it.

    A malformed page stops the compiler with an exception that names the file and the line.
    With -PassThru the parsed pages are returned as objects (tests compare them with Get-Command);
    with -NoWrite nothing is written.

    Pure PowerShell 7; platyPS is not needed (nor used).
.EXAMPLE
    ./tests/Tools/HelpCompiler.ps1 -DocsPath ./docs -OutputPath ./out/SoftDirty/en-US   # what build.ps1 Docs runs
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $DocsPath,
    [string] $OutputPath,
    [string] $ModuleName = 'SoftDirty',
    # A module manifest whose CmdletsToExport should all have pages: a missing one is a warning here
    # (the Pester help tests make it a failure). Default: <DocsPath>/../module/<ModuleName>.psd1 when present.
    [string] $ManifestPath,
    [switch] $PassThru,
    [switch] $NoWrite
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$MamlNs = 'http://schemas.microsoft.com/maml/2004/10'
$CommandNs = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
$DevNs = 'http://schemas.microsoft.com/maml/dev/2004/10'
$SectionOrder = 'SYNOPSIS', 'SYNTAX', 'DESCRIPTION', 'EXAMPLES', 'PARAMETERS', 'INPUTS', 'OUTPUTS', 'NOTES', 'RELATED LINKS'
$YamlKeys = 'Type', 'Parameter Sets', 'Aliases', 'Required', 'Position', 'Default value', 'Accept pipeline input', 'Accept wildcard characters'
$OptionalYamlKeys = @('Accepted values')

# ---------------------------------------------------------------------------------------------------
# Reading markdown
# ---------------------------------------------------------------------------------------------------

function Stop-Page([string] $File, [int] $Line, [string] $Message) {
    throw [System.FormatException]::new("${File}:${Line}: $Message")
}

# A markdown file as numbered lines; fenced code blocks are marked so headings inside them are ignored.
function Read-MarkdownLines([string] $Path) {
    $raw = [System.IO.File]::ReadAllText($Path)
    $lines = $raw -replace "`r`n", "`n" -split "`n"
    $inFence = $false
    $fenceLine = 0
    $result = [System.Collections.Generic.List[object]]::new()
    for ($i = 0; $i -lt $lines.Count; $i++) {
        $text = $lines[$i]
        $isFence = $text -match '^\s*```'
        $result.Add([pscustomobject]@{ Number = $i + 1; Text = $text; InFence = ($inFence -or $isFence); IsFence = $isFence })
        if ($isFence) { $inFence = -not $inFence; if ($inFence) { $fenceLine = $i + 1 } }
    }
    if ($inFence) { Stop-Page $Path $fenceLine 'code block is never closed (missing ```)' }
    # Drop the trailing empty line a final newline leaves.
    if ($result.Count -and $result[-1].Text -eq '' -and -not $result[-1].InFence) { $result.RemoveAt($result.Count - 1) }
    , $result
}

# Front matter: key: value lines between two '---' lines at the top.
function Read-FrontMatter($Lines, [string] $Path) {
    $fm = [ordered]@{}
    if ($Lines.Count -eq 0 -or $Lines[0].Text.Trim() -ne '---') { return $fm, 0 }
    for ($i = 1; $i -lt $Lines.Count; $i++) {
        $t = $Lines[$i].Text
        if ($t.Trim() -eq '---') { return $fm, ($i + 1) }
        if ($t.Trim() -eq '') { continue }
        if ($t -notmatch '^([^:]+):\s*(.*)$') { Stop-Page $Path $Lines[$i].Number "front matter line is not 'key: value': $t" }
        $fm[$Matches[1].Trim()] = $Matches[2].Trim()
    }
    Stop-Page $Path 1 "front matter starts with '---' but never ends"
}

# Splits lines (from index $Start) at headings of exactly $Level '#'s, outside code blocks.
function Split-Heading($Lines, [int] $Start, [int] $End, [int] $Level) {
    $prefix = '#' * $Level
    $pattern = "^$prefix\s+(.+?)\s*$"
    $sections = [System.Collections.Generic.List[object]]::new()
    $current = $null
    $preamble = [System.Collections.Generic.List[object]]::new()
    for ($i = $Start; $i -lt $End; $i++) {
        $l = $Lines[$i]
        if (-not $l.InFence -and $l.Text -match $pattern -and $l.Text -notmatch "^$prefix#") {
            $current = [pscustomobject]@{ Title = $Matches[1]; Line = $l.Number; Body = [System.Collections.Generic.List[object]]::new() }
            $sections.Add($current)
        } elseif ($current) { $current.Body.Add($l) }
        else { $preamble.Add($l) }
    }
    [pscustomobject]@{ Preamble = $preamble; Sections = $sections }
}

# Inline markdown to plain text: links, code spans, emphasis, escapes.
function ConvertTo-PlainInline([string] $Text) {
    $t = $Text -replace '\[([^\]]+)\]\(([^)]*)\)', '$1'
    $t = $t -replace '`([^`]+)`', '$1'
    $t = $t -replace '\*\*([^*]+)\*\*', '$1' -replace '(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])', '$1'
    $t = $t -replace '\\([\\`*_{}\[\]()#+\-.!<>])', '$1'
    $t
}

# Markdown body lines to paragraphs: blank lines separate, list items stand alone, code blocks stay verbatim.
# A generated stand-in, not a description: a word and a digit ('Bandwidth0', as a help generator leaves it)
# or platyPS's '{{ Fill Name Description }}'.
function Test-Placeholder([string] $Text) {
    $Text -match '^[A-Za-z]+\d+$' -or $Text -match '\{\{.*\}\}'
}

function ConvertTo-Paragraph($Body) {
    $paras = [System.Collections.Generic.List[object]]::new()
    $buf = [System.Collections.Generic.List[string]]::new()
    $code = $null
    $flush = { if ($buf.Count) { $paras.Add([pscustomobject]@{ Kind = 'Text'; Text = ConvertTo-PlainInline ($buf -join ' ') }); $buf.Clear() } }
    foreach ($l in $Body) {
        if ($l.IsFence) {
            if ($null -eq $code) { & $flush; $code = [System.Collections.Generic.List[string]]::new() }
            else { $paras.Add([pscustomobject]@{ Kind = 'Code'; Text = ($code -join "`n") }); $code = $null }
            continue
        }
        if ($null -ne $code) { $code.Add($l.Text); continue }
        $t = $l.Text.Trim()
        if ($t -eq '') { & $flush; continue }
        if ($t -match '^([-*+]|\d+\.)\s+') { & $flush }
        $buf.Add($t)
    }
    & $flush
    , $paras
}

# The '### ' subsections of a '## ' section; text before the first one is an error, and so is none at all
# unless -AllowNone.
function Get-Subsection([string] $Path, $Section, [string] $Expected, [switch] $AllowNone) {
    $split = Split-Heading $Section.Body 0 $Section.Body.Count 3
    if (-not (Test-Blank $split.Preamble)) { Stop-Page $Path $Section.Line "$($Section.Title) has text before its first '### $Expected' heading" }
    if (-not $AllowNone -and $split.Sections.Count -eq 0) { Stop-Page $Path $Section.Line "$($Section.Title) has no '### $Expected' heading" }
    , $split.Sections
}

function Test-Blank($Body) { -not ($Body | Where-Object { $_.Text.Trim() -ne '' }) }

function Read-Yaml($Body, [int] $From, [int] $To, [string] $Path) {
    $y = [ordered]@{}
    for ($i = $From; $i -lt $To; $i++) {
        $l = $Body[$i]
        if ($l.Text.Trim() -eq '') { continue }
        if ($l.Text -notmatch '^([A-Za-z ]+):\s*(.*)$') { Stop-Page $Path $l.Number "yaml line is not 'key: value': $($l.Text)" }
        $key = $Matches[1].Trim(); $value = $Matches[2].Trim()
        if ($key -notin $YamlKeys -and $key -notin $OptionalYamlKeys) { Stop-Page $Path $l.Number "unknown parameter yaml key '$key' (expected: $($YamlKeys -join ', '))" }
        if ($y.Contains($key)) { Stop-Page $Path $l.Number "yaml key '$key' given twice" }
        $y[$key] = [pscustomobject]@{ Value = $value; Line = $l.Number }
    }
    $y
}

function Split-List([string] $Value) {
    if ($Value -in '', 'None') { return }
    $Value -split '\s*,\s*' | Where-Object { $_ }
}

function ConvertFrom-YamlBool([string] $Value, [string] $Path, [int] $Line, [string] $Key) {
    switch ($Value) { 'True' { return $true } 'False' { return $false } }
    Stop-Page $Path $Line "'$Key' must be True or False, not '$Value'"
}

# ---------------------------------------------------------------------------------------------------
# Cmdlet pages
# ---------------------------------------------------------------------------------------------------

function Read-CommandPage([string] $Path) {
    $file = Split-Path -Leaf $Path
    $lines = Read-MarkdownLines $Path
    $fm, $start = Read-FrontMatter $lines $Path
    foreach ($k in 'external help file', 'Module Name', 'schema') {
        if (-not $fm.Contains($k)) { Stop-Page $Path 1 "front matter lacks '${k}:'" }
    }
    if ($fm['schema'] -ne '2.0.0') { Stop-Page $Path 1 "schema is '$($fm['schema'])', expected 2.0.0" }
    if (-not $fm.Contains('online version')) { Stop-Page $Path 1 "front matter lacks 'online version:' (it may be empty)" }

    $split = Split-Heading $lines $start $lines.Count 1
    $pre = $split.Preamble
    $tops = $split.Sections
    if ($tops.Count -ne 1) { Stop-Page $Path ($(if ($tops.Count) { $tops[1].Line } else { 1 })) "expected exactly one '# <Command-Name>' title, found $($tops.Count)" }
    $name = $tops[0].Title
    if ($name -ne [System.IO.Path]::GetFileNameWithoutExtension($file)) { Stop-Page $Path $tops[0].Line "title '$name' does not match the file name $file" }
    if ($name -notmatch '^(\w+)-(\w+)$') { Stop-Page $Path $tops[0].Line "title '$name' is not a Verb-Noun command name" }
    $verb, $noun = $Matches[1], $Matches[2]

    $body = $tops[0].Body
    $split = Split-Heading $body 0 $body.Count 2
    $sections = $split.Sections
    $byName = [ordered]@{}
    $expectedIndex = 0
    foreach ($s in $sections) {
        $idx = [array]::IndexOf($SectionOrder, $s.Title)
        if ($idx -lt 0) { Stop-Page $Path $s.Line "unknown section '## $($s.Title)' (expected: $($SectionOrder -join ', '))" }
        if ($byName.Contains($s.Title)) { Stop-Page $Path $s.Line "section '## $($s.Title)' appears twice" }
        if ($idx -lt $expectedIndex) { Stop-Page $Path $s.Line "section '## $($s.Title)' is out of order (expected: $($SectionOrder -join ', '))" }
        $expectedIndex = $idx
        $byName[$s.Title] = $s
    }
    foreach ($req in $SectionOrder) {
        if (-not $byName.Contains($req)) { Stop-Page $Path $tops[0].Line "missing section '## $req'" }
    }

    # SYNOPSIS, DESCRIPTION
    $synopsis = ConvertTo-Paragraph $byName['SYNOPSIS'].Body
    if ($synopsis.Count -eq 0) { Stop-Page $Path $byName['SYNOPSIS'].Line 'SYNOPSIS is empty' }
    $description = ConvertTo-Paragraph $byName['DESCRIPTION'].Body
    if ($description.Count -eq 0) { Stop-Page $Path $byName['DESCRIPTION'].Line 'DESCRIPTION is empty' }

    # SYNTAX: ### SetName [(Default)] followed by a code block
    $sets = Get-Subsection $Path $byName['SYNTAX'] 'ParameterSet'
    $syntax = foreach ($s in $sets) {
        if ($s.Title -notmatch '^(\S+)(\s+\(Default\))?$') { Stop-Page $Path $s.Line "parameter set heading '### $($s.Title)' is not 'Name' or 'Name (Default)'" }
        $setName = $Matches[1]; $isDefault = [bool]$Matches[2]
        $code = @($s.Body | Where-Object { $_.InFence -and -not $_.IsFence } | ForEach-Object Text)
        if ($code.Count -eq 0) { Stop-Page $Path $s.Line "parameter set '$setName' has no syntax code block" }
        [pscustomobject]@{ Name = $setName; IsDefault = $isDefault; Text = ($code -join ' ').Trim(); Line = $s.Line }
    }
    $syntax = @($syntax)
    if (@($syntax | Where-Object IsDefault).Count -gt 1) { Stop-Page $Path $byName['SYNTAX'].Line 'more than one parameter set is marked (Default)' }
    $setNames = @($syntax.Name)
    if (@($setNames | Select-Object -Unique).Count -ne $setNames.Count) { Stop-Page $Path $byName['SYNTAX'].Line 'a parameter set is listed twice' }

    # EXAMPLES: ### Title, code block(s), remarks
    $exs = Get-Subsection $Path $byName['EXAMPLES'] 'Example 1: ...'
    $examples = foreach ($e in $exs) {
        # The first code block is the example's code; everything after it (text, output blocks) is the remarks.
        $code = [System.Collections.Generic.List[string]]::new()
        $fences = 0
        foreach ($l in $e.Body) {
            if ($l.IsFence) {
                $fences++
                if ($fences -eq 1 -and $l.Text -match '^\s*```(\S+)' -and $Matches[1] -notin 'powershell', 'pwsh', 'ps1') {
                    Stop-Page $Path $l.Number "example code block language '$($Matches[1])' is not powershell"
                }
                continue
            }
            if ($fences -eq 0 -and $l.Text.Trim() -ne '') { Stop-Page $Path $l.Number "example '$($e.Title)' has text before its code block" }
            if ($fences -eq 1) { $code.Add($l.Text) }
        }
        if ($fences -eq 0 -or ($code -join '').Trim() -eq '') { Stop-Page $Path $e.Line "example '$($e.Title)' has no code block" }
        [pscustomobject]@{ Title = $e.Title; Code = ($code -join "`n").Trim("`n"); Remarks = (ConvertTo-Paragraph (Restore-Fence $e.Body)); Line = $e.Line }
    }
    $examples = @($examples)

    # PARAMETERS: ### -Name, description, one or more yaml blocks; ### CommonParameters
    $ps = Get-Subsection $Path $byName['PARAMETERS'] '-Name' -AllowNone
    $hasCommon = $false
    $parameters = foreach ($p in $ps) {
        if ($p.Title -eq 'CommonParameters') { $hasCommon = $true; continue }
        if ($p.Title -notmatch '^-(\w+)$') { Stop-Page $Path $p.Line "parameter heading '### $($p.Title)' is not '### -Name' or '### CommonParameters'" }
        $pname = $Matches[1]
        $desc = [System.Collections.Generic.List[object]]::new()
        $blocks = [System.Collections.Generic.List[object]]::new()
        $i = 0
        while ($i -lt $p.Body.Count) {
            $l = $p.Body[$i]
            if ($l.IsFence -and $l.Text -match '^\s*```yaml\s*$') {
                $j = $i + 1
                while (-not $p.Body[$j].IsFence) { $j++ }
                $y = Read-Yaml $p.Body ($i + 1) $j $Path
                foreach ($k in $YamlKeys) { if (-not $y.Contains($k)) { Stop-Page $Path $l.Number "yaml block of -$pname lacks '${k}:'" } }
                $blocks.Add([pscustomobject]@{ Yaml = $y; Line = $l.Number })
                $i = $j + 1
                continue
            }
            if ($blocks.Count -and $l.Text.Trim() -ne '') { Stop-Page $Path $l.Number "text after the yaml block of -$pname" }
            $desc.Add($l); $i++
        }
        if ($blocks.Count -eq 0) { Stop-Page $Path $p.Line ("parameter -$pname has no " + '```yaml block (Type, Parameter Sets, Aliases, Required, Position, ...)') }
        $paras = ConvertTo-Paragraph $desc
        if ($paras.Count -eq 0) { Stop-Page $Path $p.Line "parameter -$pname has no description" }
        $plain = (@($paras | Where-Object Kind -eq 'Text' | ForEach-Object Text) -join ' ').Trim()
        if (Test-Placeholder $plain) { Stop-Page $Path $p.Line "parameter -$pname has a placeholder description '$plain': say what it does, with its unit" }
        $first = $blocks[0].Yaml
        $type = $first['Type'].Value
        if ($type -eq '') { Stop-Page $Path $first['Type'].Line "-$pname has an empty Type" }
        $variants = foreach ($b in $blocks) {
            $y = $b.Yaml
            if ($y['Type'].Value -ne $type) { Stop-Page $Path $y['Type'].Line "-$pname has different Types in its yaml blocks" }
            $position = $y['Position'].Value
            if ($position -ne 'Named' -and $position -notmatch '^\d+$') { Stop-Page $Path $y['Position'].Line "Position of -$pname must be Named or a number, not '$position'" }
            $pipe = $y['Accept pipeline input'].Value
            if ($pipe -notmatch '^(False|True \((ByValue|ByPropertyName|ByValue, ByPropertyName)\))$') {
                Stop-Page $Path $y['Accept pipeline input'].Line "Accept pipeline input of -$pname must be False or True (ByValue|ByPropertyName|ByValue, ByPropertyName), not '$pipe'"
            }
            $psets = @(Split-List $y['Parameter Sets'].Value)
            if ($psets.Count -eq 0) { Stop-Page $Path $y['Parameter Sets'].Line "-$pname names no parameter set (use (All))" }
            foreach ($s in $psets) {
                if ($s -ne '(All)' -and $s -notin $setNames) { Stop-Page $Path $y['Parameter Sets'].Line "-$pname names parameter set '$s', which SYNTAX does not list ($($setNames -join ', '))" }
            }
            [pscustomobject]@{
                ParameterSets = @($psets)
                Required      = ConvertFrom-YamlBool $y['Required'].Value $Path $y['Required'].Line 'Required'
                Position      = $position
                PipelineInput = $pipe
                Globbing      = ConvertFrom-YamlBool $y['Accept wildcard characters'].Value $Path $y['Accept wildcard characters'].Line 'Accept wildcard characters'
                Aliases       = @(Split-List $y['Aliases'].Value)
                DefaultValue  = $y['Default value'].Value
                AcceptedValues = @(if ($y.Contains('Accepted values')) { Split-List $y['Accepted values'].Value })
                Line          = $b.Line
            }
        }
        [pscustomobject]@{ Name = $pname; Type = $type; Description = $paras; Variants = @($variants); Line = $p.Line }
    }
    $parameters = @($parameters)
    if (-not $hasCommon) { Stop-Page $Path $byName['PARAMETERS'].Line "PARAMETERS lacks '### CommonParameters'" }
    $dupe = $parameters.Name | Group-Object | Where-Object Count -gt 1 | Select-Object -First 1
    if ($dupe) { Stop-Page $Path $byName['PARAMETERS'].Line "parameter -$($dupe.Name) is documented twice" }
    foreach ($p in $parameters) {
        $covered = @($p.Variants.ParameterSets)
        if ('(All)' -in $covered -and $p.Variants.Count -gt 1) { Stop-Page $Path $p.Line "-$($p.Name) has several yaml blocks, one of them for (All)" }
    }

    # INPUTS, OUTPUTS: ### TypeName then an optional description
    $io = foreach ($sec in 'INPUTS', 'OUTPUTS') {
        $types = Get-Subsection $Path $byName[$sec] 'TypeName (or ### None)'
        , @($types | ForEach-Object { [pscustomobject]@{ Type = $_.Title; Description = (ConvertTo-Paragraph $_.Body) } })
    }

    # NOTES: free text; RELATED LINKS: one [text](uri) per line
    $notes = ConvertTo-Paragraph $byName['NOTES'].Body
    $links = foreach ($l in $byName['RELATED LINKS'].Body) {
        $t = $l.Text.Trim()
        if ($t -eq '') { continue }
        if ($t -notmatch '^\[([^\]]+)\]\(([^)]*)\)$') { Stop-Page $Path $l.Number "RELATED LINKS line is not '[Text](uri)': $t" }
        [pscustomobject]@{ Text = $Matches[1]; Uri = $Matches[2] }
    }

    [pscustomobject]@{
        PSTypeName    = 'SoftDirty.Build.CommandHelpPage'
        Path          = $Path
        Name          = $name
        Verb          = $verb
        Noun          = $noun
        HelpFile      = $fm['external help file']
        ModuleName    = $fm['Module Name']
        OnlineVersion = $fm['online version']
        Synopsis      = ($synopsis.Text -join ' ')
        Description   = $description
        Syntax        = $syntax
        Examples      = $examples
        Parameters    = $parameters
        Inputs        = $io[0]
        Outputs       = $io[1]
        Notes         = $notes
        Links         = @($links)
    }
}

# Example remarks: the lines after the first code block, fences included, so output blocks stay verbatim.
function Restore-Fence($Body) {
    $out = [System.Collections.Generic.List[object]]::new()
    $fences = 0
    foreach ($l in $Body) {
        if ($l.IsFence) { $fences++; if ($fences -le 2) { continue } }
        if ($fences -ge 2) { $out.Add($l) }
    }
    , $out
}

# ---------------------------------------------------------------------------------------------------
# MAML
# ---------------------------------------------------------------------------------------------------

function Write-Para([System.Xml.XmlWriter] $W, $Paragraphs) {
    foreach ($p in $Paragraphs) { $W.WriteElementString('maml', 'para', $MamlNs, $p.Text) }
}

function Write-Description([System.Xml.XmlWriter] $W, $Paragraphs) {
    $W.WriteStartElement('maml', 'description', $MamlNs)
    Write-Para $W $Paragraphs
    $W.WriteEndElement()
}

function Get-Variant($Parameter, [string] $SetName) {
    foreach ($v in $Parameter.Variants) { if ('(All)' -in $v.ParameterSets -or $SetName -in $v.ParameterSets) { return $v } }
    $null
}

function Write-Parameter([System.Xml.XmlWriter] $W, $P, $V, [bool] $InSyntax) {
    $isSwitch = $P.Type -eq 'SwitchParameter'
    $W.WriteStartElement('command', 'parameter', $CommandNs)
    $W.WriteAttributeString('required', $V.Required.ToString().ToLowerInvariant())
    $W.WriteAttributeString('variableLength', ($P.Type.EndsWith('[]')).ToString().ToLowerInvariant())
    $W.WriteAttributeString('globbing', $V.Globbing.ToString().ToLowerInvariant())
    $W.WriteAttributeString('pipelineInput', $V.PipelineInput)
    $W.WriteAttributeString('position', $(if ($V.Position -eq 'Named') { 'named' } else { $V.Position }))
    $W.WriteAttributeString('aliases', $(if ($V.Aliases.Count) { $V.Aliases -join ', ' } else { 'none' }))
    $W.WriteElementString('maml', 'name', $MamlNs, $P.Name)
    Write-Description $W $P.Description
    if ($V.AcceptedValues.Count) {
        $W.WriteStartElement('command', 'parameterValueGroup', $CommandNs)
        foreach ($a in $V.AcceptedValues) {
            $W.WriteStartElement('command', 'parameterValue', $CommandNs)
            $W.WriteAttributeString('required', 'false')
            $W.WriteAttributeString('command', 'variableLength', $CommandNs, 'false')
            $W.WriteString($a)
            $W.WriteEndElement()
        }
        $W.WriteEndElement()
    }
    if (-not ($isSwitch -and $InSyntax)) {
        $W.WriteStartElement('command', 'parameterValue', $CommandNs)
        $W.WriteAttributeString('required', $(if ($isSwitch) { 'false' } else { 'true' }))
        $W.WriteAttributeString('variableLength', ($P.Type.EndsWith('[]')).ToString().ToLowerInvariant())
        $W.WriteString($P.Type)
        $W.WriteEndElement()
    }
    $W.WriteStartElement('dev', 'type', $DevNs)
    $W.WriteElementString('maml', 'name', $MamlNs, $P.Type)
    $W.WriteStartElement('maml', 'uri', $MamlNs); $W.WriteEndElement()
    $W.WriteEndElement()
    $W.WriteElementString('dev', 'defaultValue', $DevNs, $V.DefaultValue)
    $W.WriteEndElement()
}

function Write-TypeList([System.Xml.XmlWriter] $W, [string] $Outer, [string] $Inner, $Types) {
    $W.WriteStartElement('command', $Outer, $CommandNs)
    foreach ($t in $Types) {
        $W.WriteStartElement('command', $Inner, $CommandNs)
        $W.WriteStartElement('dev', 'type', $DevNs)
        $W.WriteElementString('maml', 'name', $MamlNs, $t.Type)
        $W.WriteEndElement()
        Write-Description $W $t.Description
        $W.WriteEndElement()
    }
    $W.WriteEndElement()
}

function Write-Command([System.Xml.XmlWriter] $W, $Page) {
    $W.WriteStartElement('command', 'command', $CommandNs)
    $W.WriteAttributeString('xmlns', 'maml', $null, $MamlNs)
    $W.WriteAttributeString('xmlns', 'command', $null, $CommandNs)
    $W.WriteAttributeString('xmlns', 'dev', $null, $DevNs)

    $W.WriteStartElement('command', 'details', $CommandNs)
    $W.WriteElementString('command', 'name', $CommandNs, $Page.Name)
    $W.WriteElementString('command', 'verb', $CommandNs, $Page.Verb)
    $W.WriteElementString('command', 'noun', $CommandNs, $Page.Noun)
    Write-Description $W @([pscustomobject]@{ Text = $Page.Synopsis })
    $W.WriteEndElement()

    Write-Description $W $Page.Description

    # One syntaxItem per parameter set: its parameters, positional ones first in position order.
    $W.WriteStartElement('command', 'syntax', $CommandNs)
    foreach ($set in $Page.Syntax) {
        $W.WriteStartElement('command', 'syntaxItem', $CommandNs)
        $W.WriteElementString('maml', 'name', $MamlNs, $Page.Name)
        $inSet = foreach ($p in $Page.Parameters) { $v = Get-Variant $p $set.Name; if ($v) { [pscustomobject]@{ P = $p; V = $v } } }
        $ordered = @($inSet | Where-Object { $_.V.Position -ne 'Named' } | Sort-Object { [int]$_.V.Position }) +
                   @($inSet | Where-Object { $_.V.Position -eq 'Named' -and $_.V.Required }) +
                   @($inSet | Where-Object { $_.V.Position -eq 'Named' -and -not $_.V.Required })
        foreach ($x in $ordered) { if ($x) { Write-Parameter $W $x.P $x.V $true } }
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'parameters', $CommandNs)
    foreach ($p in $Page.Parameters) { Write-Parameter $W $p $p.Variants[0] $false }
    $W.WriteEndElement()

    Write-TypeList $W 'inputTypes' 'inputType' $Page.Inputs
    Write-TypeList $W 'returnValues' 'returnValue' $Page.Outputs

    $W.WriteStartElement('maml', 'alertSet', $MamlNs)
    $W.WriteStartElement('maml', 'alert', $MamlNs)
    Write-Para $W $Page.Notes
    $W.WriteEndElement()
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'examples', $CommandNs)
    foreach ($e in $Page.Examples) {
        $W.WriteStartElement('command', 'example', $CommandNs)
        $W.WriteElementString('maml', 'title', $MamlNs, "--------- $($e.Title) ---------")
        $W.WriteElementString('dev', 'code', $DevNs, $e.Code)
        $W.WriteStartElement('dev', 'remarks', $DevNs)
        Write-Para $W $e.Remarks
        $W.WriteEndElement()
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'relatedLinks', $CommandNs)
    $links = @()
    if ($Page.OnlineVersion) { $links += [pscustomobject]@{ Text = 'Online Version:'; Uri = $Page.OnlineVersion } }
    $links += $Page.Links
    foreach ($l in $links) {
        $W.WriteStartElement('maml', 'navigationLink', $MamlNs)
        $W.WriteElementString('maml', 'linkText', $MamlNs, $l.Text)
        $W.WriteElementString('maml', 'uri', $MamlNs, $(if ($l.Uri -match '^https?://') { $l.Uri } else { '' }))
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteEndElement()
}

function Write-Maml([string] $Path, $Pages) {
    $settings = [System.Xml.XmlWriterSettings]@{ Indent = $true; IndentChars = '  '; Encoding = [System.Text.UTF8Encoding]::new($false); NewLineChars = "`n" }
    $w = [System.Xml.XmlWriter]::Create($Path, $settings)
    try {
        $w.WriteStartDocument()
        $w.WriteStartElement('helpItems', 'http://msh')
        $w.WriteAttributeString('schema', 'maml')
        foreach ($p in $Pages) { Write-Command $w $p }
        $w.WriteEndElement()
        $w.WriteEndDocument()
    } finally { $w.Dispose() }
}

# ---------------------------------------------------------------------------------------------------
# about_ topics: markdown to the plain text Get-Help about_X shows
# ---------------------------------------------------------------------------------------------------

function Format-Wrapped([string] $Text, [int] $Indent, [int] $Hanging = $Indent, [int] $Width = 80) {
    $out = [System.Collections.Generic.List[string]]::new()
    $line = ' ' * $Indent
    $empty = $true
    foreach ($word in ($Text -split '\s+' | Where-Object { $_ })) {
        if (-not $empty -and $line.Length + 1 + $word.Length -gt $Width) {
            $out.Add($line.TrimEnd()); $line = (' ' * $Hanging) + $word
        } elseif ($empty) { $line += $word } else { $line += ' ' + $word }
        $empty = $false
    }
    if (-not $empty) { $out.Add($line.TrimEnd()) }
    $out
}

function Read-AboutPage([string] $Path) {
    $file = Split-Path -Leaf $Path
    $topic = [System.IO.Path]::GetFileNameWithoutExtension($file)
    $lines = Read-MarkdownLines $Path
    $null, $start = Read-FrontMatter $lines $Path
    $split = Split-Heading $lines $start $lines.Count 1
    $tops = $split.Sections
    if ($tops.Count -ne 1) { Stop-Page $Path 1 "expected exactly one '# $topic' title, found $($tops.Count)" }
    if ($tops[0].Title -ne $topic) { Stop-Page $Path $tops[0].Line "title '$($tops[0].Title)' does not match the file name $file" }
    $body = $tops[0].Body
    $split = Split-Heading $body 0 $body.Count 2
    $sections = $split.Sections
    $titles = @($sections.Title)
    if ('SHORT DESCRIPTION' -notin $titles) { Stop-Page $Path $tops[0].Line "missing section '## SHORT DESCRIPTION'" }
    if ('LONG DESCRIPTION' -notin $titles) { Stop-Page $Path $tops[0].Line "missing section '## LONG DESCRIPTION'" }
    $short = $sections | Where-Object Title -eq 'SHORT DESCRIPTION'
    if (Test-Blank $short.Body) { Stop-Page $Path $short.Line 'SHORT DESCRIPTION is empty' }

    $text = [System.Collections.Generic.List[string]]::new()
    $text.Add('TOPIC'); $text.Add("    $topic"); $text.Add('')
    foreach ($s in $sections) {
        $text.Add($s.Title.ToUpperInvariant())
        $split = Split-Heading $s.Body 0 $s.Body.Count 3
        $chunks = @([pscustomobject]@{ Title = $null; Body = $split.Preamble }) + @($split.Sections)
        foreach ($c in $chunks) {
            if ($c.Title) {
                if ($text[-1] -ne '') { $text.Add('') }
                $text.Add('  ' + (ConvertTo-PlainInline $c.Title).ToUpperInvariant())
            }
            $paras = ConvertTo-Paragraph $c.Body
            for ($k = 0; $k -lt $paras.Count; $k++) {
                $p = $paras[$k]
                $isItem = $p.Kind -eq 'Text' -and $p.Text -match '^([-*+]|\d+\.)\s+'
                $nextIsItem = $k + 1 -lt $paras.Count -and $paras[$k + 1].Kind -eq 'Text' -and $paras[$k + 1].Text -match '^([-*+]|\d+\.)\s+'
                if ($p.Kind -eq 'Code') { foreach ($cl in ($p.Text -split "`n")) { $text.Add(('        ' + $cl).TrimEnd()) } }
                elseif ($p.Text -match '^([-*+]|\d+\.)\s+(.*)$') {
                    $marker, $item = $Matches[1], $Matches[2]
                    $bullet = if ($marker -match '^\d') { $marker } else { '-' }
                    foreach ($w in (Format-Wrapped "$bullet $item" 4 (5 + $bullet.Length))) { $text.Add($w) }
                } else { foreach ($w in (Format-Wrapped $p.Text 4)) { $text.Add($w) } }
                if (-not ($isItem -and $nextIsItem)) { $text.Add('') }
            }
        }
        if ($text[-1] -ne '') { $text.Add('') }
    }
    [pscustomobject]@{ PSTypeName = 'SoftDirty.Build.AboutHelpPage'; Path = $Path; Name = $topic; Text = (($text -join "`n").TrimEnd() + "`n") }
}

# ---------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------

$DocsPath = (Resolve-Path $DocsPath).Path
$files = @(Get-ChildItem -Path $DocsPath -Filter '*.md' -File | Sort-Object Name)
$commands = [System.Collections.Generic.List[object]]::new()
$abouts = [System.Collections.Generic.List[object]]::new()
$modulePage = $null
foreach ($f in $files) {
    if ($f.Name -like 'about_*.md') { $abouts.Add((Read-AboutPage $f.FullName)); continue }
    if ($f.BaseName -eq $ModuleName) { $modulePage = $f; continue }
    $lines = Read-MarkdownLines $f.FullName
    $fm, $null = Read-FrontMatter $lines $f.FullName
    if (-not $fm.Contains('external help file')) { Stop-Page $f.FullName 1 "not a cmdlet page (no 'external help file:' in front matter), not about_*.md and not the module page $ModuleName.md" }
    $commands.Add((Read-CommandPage $f.FullName))
}
if ($commands.Count -eq 0) { throw "No cmdlet pages in $DocsPath" }
$helpFiles = @($commands.HelpFile | Select-Object -Unique)
foreach ($c in $commands) {
    if ($c.ModuleName -ne $ModuleName) { Stop-Page $c.Path 1 "Module Name is '$($c.ModuleName)', expected $ModuleName" }
}

if ($modulePage) {
    $text = Get-Content -Raw $modulePage.FullName
    foreach ($c in $commands) {
        if ($text -notmatch "\[$([regex]::Escape($c.Name))\]\($([regex]::Escape($c.Name))\.md\)") {
            Stop-Page $modulePage.FullName 1 "the module page does not link [$($c.Name)]($($c.Name).md)"
        }
    }
} else { Write-Warning "No module page $ModuleName.md in $DocsPath" }

if (-not $ManifestPath) { $ManifestPath = Join-Path (Split-Path $DocsPath) "module/$ModuleName.psd1" }
if (Test-Path $ManifestPath) {
    $exports = @((Import-PowerShellDataFile $ManifestPath).CmdletsToExport)
    foreach ($name in $exports) {
        if ($name -notin $commands.Name) { Write-Warning "Exported cmdlet $name has no help page: write docs/$name.md" }
    }
}

if (-not $NoWrite) {
    if (-not $OutputPath) { throw '-OutputPath is required unless -NoWrite is given' }
    $null = New-Item -ItemType Directory -Force $OutputPath
    foreach ($hf in $helpFiles) {
        $target = Join-Path $OutputPath $hf
        Write-Maml $target @($commands | Where-Object HelpFile -eq $hf)
        Write-Verbose "wrote $target"
    }
    foreach ($a in $abouts) {
        $target = Join-Path $OutputPath "$($a.Name).help.txt"
        [System.IO.File]::WriteAllText($target, $a.Text, [System.Text.UTF8Encoding]::new($false))
        Write-Verbose "wrote $target"
    }
    Write-Host "    $($commands.Count) cmdlet page(s) -> $($helpFiles -join ', '); $($abouts.Count) about topic(s)"
}
if ($PassThru) { $commands; $abouts }
