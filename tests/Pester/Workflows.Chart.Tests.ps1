# Export-DirtyPageChart: the SVG rendered in headless Chromium shows the hot region where it should, and its
# rendered DOM has nice ticks with units, labelled axes, legends and no overlapping text.
BeforeDiscovery {
    $chromium = Get-Command chromium, chromium-browser -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if (-not $chromium -and (Get-Command apt-get -ErrorAction SilentlyContinue) -and (id -u) -eq '0') {
        $env:DEBIAN_FRONTEND = 'noninteractive'
        apt-get update -qq *> $null; apt-get install -y -qq --no-install-recommends chromium *> $null
        $chromium = Get-Command chromium -CommandType Application -ErrorAction SilentlyContinue
    }
    $script:noChromium = -not $chromium
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'SoftDirty.TestSupport.psm1') -Force
    $script:Chrome = (Get-Command chromium, chromium-browser -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1).Source

    # The rendered layout of every text of an SVG: Chromium loads a page with the SVG inline and a script
    # that records each text's bounding box; --dump-dom returns the page after the script ran.
    function Get-RenderedLayout([string] $Svg) {
        $html = Join-Path $TestDrive "layout-$([guid]::NewGuid().ToString('n')).html"
        $script = @'
<script>
const svg = document.querySelector('svg');
const box = svg.getBoundingClientRect();
const texts = [...svg.querySelectorAll('text')].map(t => { const b = t.getBoundingClientRect();
  return { text: (t.firstChild && t.firstChild.nodeValue) || '', cls: t.getAttribute('class') || '', x: b.left - box.left, y: b.top - box.top, w: b.width, h: b.height }; });
const style = c => getComputedStyle(svg.querySelector('.' + c)).fill;
document.body.setAttribute('data-layout', JSON.stringify({ width: box.width, height: box.height, texts, bg: style('bg'), fg: style('fg') }));
</script>
'@
        Set-Content -LiteralPath $html -Value ("<!DOCTYPE html><html><body style='margin:0'>" + (Get-Content -Raw $Svg) + $script + '</body></html>')
        $dom = & $Chrome --headless --no-sandbox --disable-gpu --dump-dom "file://$html" 2>$null
        $m = [regex]::Match(($dom -join "`n"), 'data-layout="([^"]*)"')
        if (-not $m.Success) { throw "Chromium did not run the layout script on $Svg" }
        [System.Net.WebUtility]::HtmlDecode($m.Groups[1].Value) | ConvertFrom-Json
    }

    function Test-Overlap($A, $B) {
        $A.x + $A.w -gt $B.x + 0.5 -and $B.x + $B.w -gt $A.x + 0.5 -and $A.y + $A.h -gt $B.y + 0.5 -and $B.y + $B.h -gt $A.y + 0.5
    }

    # Relative luminance contrast of two CSS rgb() colours (WCAG).
    function Get-Contrast([string] $A, [string] $B) {
        $l = foreach ($c in $A, $B) {
            $v = @([regex]::Matches($c, '\d+') | Select-Object -First 3 | ForEach-Object { $x = [int]$_.Value / 255; if ($x -le 0.03928) { $x / 12.92 } else { [math]::Pow(($x + 0.055) / 1.055, 2.4) } })
            0.2126 * $v[0] + 0.7152 * $v[1] + 0.0722 * $v[2]
        }
        ([math]::Max($l[0], $l[1]) + 0.05) / ([math]::Min($l[0], $l[1]) + 0.05)
    }

    # A sample as Watch-DirtyPage makes it, for charts whose shape a test sets.
    function New-Sample([int] $Index, [double] $Elapsed, [double] $Rate, [uint64[]] $Starts, [uint64] $Size = 4096) {
        [SoftDirty.Workflows.DirtyPageSample]@{
            ProcessId = 42; Name = 'shaped'; Index = $Index; Elapsed = $Elapsed; Interval = 0.25; Rate = $Rate; PageSize = 4096
            Ranges = [SoftDirty.Tracking.AddressRange[]]@($Starts | ForEach-Object { [SoftDirty.Tracking.AddressRange]::new($_, $_ + $Size) })
        }
    }
}

Describe 'Export-DirtyPageChart of a real process' -Tag 'Workflows' {
    BeforeAll {
        $t = Start-WfTarget
        $r = New-WfRegion $t 512
        $null = Send-WfTarget $t "hot $($r.Hex) 384 64 2000"     # the hot region: pages 384-447 of 512
        $null = Send-WfTarget $t "after $($r.Hex) 5 400"          # a cold write, once
        $samples = @(Watch-DirtyPage -Id $t.Id -Interval 0.25 -Count 4 -Address $r.Address -Length (512 * $t.PageSize) -Method Hash)
        $null = Send-WfTarget $t 'cold'
        $svg = Join-Path $TestDrive 'chart.svg'
        # The heat strip over the test region alone (pages 0-511 in 64 rows).
        $file = $samples | Export-DirtyPageChart -Path $svg -Title 'wftarget' -Address $r.Address -Length (512 * $t.PageSize)
    }
    AfterAll { Stop-WfTarget $t }

    It 'writes a self-contained SVG' {
        $file.FullName | Should -Be $svg
        $xml = [xml](Get-Content $svg -Raw)
        $xml.svg.xmlns | Should -Be 'http://www.w3.org/2000/svg'
        (Get-Content $svg -Raw) | Should -Not -Match 'href='
        @($xml.svg.rect | Where-Object { $_.fill -eq '#d7301f' -and -not $_.class }).Count | Should -BeGreaterOrEqual 4
    }

    It 'renders in headless Chromium, not blank, with the hot region in the expected rows' -Skip:$script:noChromium {
        $png = Join-Path $TestDrive 'chart.png'
        $xml = [xml](Get-Content $svg -Raw)
        & $Chrome --headless --no-sandbox --disable-gpu --hide-scrollbars "--screenshot=$png" "--window-size=$($xml.svg.width),$($xml.svg.height)" "file://$svg" 2>$null | Out-Null
        Test-Path $png | Should -BeTrue
        $img = Read-Png $png
        $img.Width | Should -Be ([int]$xml.svg.width)
        # Not blank: many pixels that are not white.
        $dark = 0
        for ($y = 0; $y -lt $img.Height; $y += 4) { for ($x = 0; $x -lt $img.Width; $x += 4) { $p = $img.Pixel($x, $y); if ($p[0] + $p[1] + $p[2] -lt 600) { $dark++ } } }
        $dark | Should -BeGreaterThan 200
        # The hot pages 384-447 of 512 are rows 48-55 of the strip's 64; look in the last sample's column.
        $strip = $xml.svg.rect | Where-Object class -eq 'strip' | Select-Object -First 1
        $last = $xml.svg.rect | Where-Object { $_.fill -eq '#d7301f' -and -not $_.class } | Sort-Object { [double]$_.x } | Select-Object -Last 1
        $x = [int]([double]$last.x + [double]$last.width / 2)
        $hot = $img.Pixel($x, [int]([double]$strip.y + [double]$strip.height * 52 / 64))
        ($hot[0] -gt 150 -and $hot[1] -lt 120 -and $hot[2] -lt 120) | Should -BeTrue -Because "the hot region is red (got $hot)"
        $cold = $img.Pixel($x, [int]([double]$strip.y + [double]$strip.height * 20 / 64))
        ($cold[0] -gt 200 -and $cold[1] -gt 200) | Should -BeTrue -Because "cold pages stay light (got $cold)"
    }
}

Describe 'The rendered chart (issue 12.7)' -Tag 'Workflows' -Skip:$script:noChromium {
    BeforeAll {
        # The issue's chart: a rate of 5,450 pages/s (once drawn as 5.45E3) and 40 written bands far apart,
        # whose labels used to overlap.
        $gap = [uint64]64MB
        $starts = @(0..39 | ForEach-Object { [uint64]0x7f0000000000 + [uint64]$_ * $gap })
        $samples = @(1..4 | ForEach-Object { New-Sample $_ ($_ * 0.25) (5450 - 300 * $_) $starts })
        $svg = Join-Path $TestDrive 'bands.svg'
        $null = $samples | Export-DirtyPageChart -Path $svg -WarningAction SilentlyContinue
        $layout = Get-RenderedLayout $svg
        $texts = @($layout.texts | Where-Object { $_.w -gt 0 -and $_.h -gt 0 })
    }

    It 'has at least four ticks on each axis, none in E-notation' {
        @($texts | Where-Object cls -match '\btick x\b').Count | Should -BeGreaterOrEqual 4
        @($texts | Where-Object cls -match '\btick y\b').Count | Should -BeGreaterOrEqual 4
        @($texts | Where-Object cls -match '\btick y2\b').Count | Should -BeGreaterOrEqual 3
        @($texts | Where-Object { $_.cls -match 'tick' -and $_.text -match '\d[eE][+-]?\d' }).text | Should -BeNullOrEmpty
        ($texts | Where-Object cls -match '\btick y\b').text | Should -Contain '6,000'
    }

    It 'labels its axes with units: pages/s, MiB/s and seconds' {
        $titles = @($texts | Where-Object cls -match 'axis-title').text -join ' | '
        $titles | Should -Match 'pages/s'
        $titles | Should -Match 'MiB/s'
        $titles | Should -Match '\(s\)'
    }

    It 'has a colour legend for the heat strip and explains the address scale' {
        @($texts | Where-Object { $_.cls -match 'legend heat' -and $_.text -match '%' }).Count | Should -Be 5
        ([xml](Get-Content -Raw $svg)).svg.rect | Where-Object class -eq 'legend heat swatch' | Should -HaveCount 5
        ($texts | Where-Object cls -match 'legend scale').text -join ' ' | Should -Match 'Address axis'
    }

    It 'draws no two texts over each other, and every text inside the picture' {
        $overlaps = for ($i = 0; $i -lt $texts.Count; $i++) {
            for ($j = $i + 1; $j -lt $texts.Count; $j++) {
                if (Test-Overlap $texts[$i] $texts[$j]) { "'$($texts[$i].text)' / '$($texts[$j].text)'" }
            }
        }
        @($overlaps) | Should -BeNullOrEmpty
        @($texts | Where-Object { $_.x -lt 0 -or $_.y -lt 0 -or $_.x + $_.w -gt $layout.width + 0.5 -or $_.y + $_.h -gt $layout.height + 0.5 }).text | Should -BeNullOrEmpty
    }

    It 'labels as many bands as fit and says how many it could not' {
        $labels = @($texts | Where-Object cls -match 'band-label')
        $labels.Count | Should -BeGreaterThan 5
        $labels.Count | Should -BeLessThan 40
        ($texts | Where-Object cls -match 'legend scale').text -join ' ' | Should -Match "$(40 - $labels.Count) band\(s\) too thin to label"
    }

    It 'reads on a light and a dark background (text contrast at least 4.5:1, a dark variant in the style)' {
        Get-Contrast $layout.bg $layout.fg | Should -BeGreaterOrEqual 4.5
        Get-Content -Raw $svg | Should -Match '@media \(prefers-color-scheme: dark\)\{\.bg\{fill:#16181d\}\.fg\{fill:#e6e6e6\}'
        Get-Contrast 'rgb(22,24,29)' 'rgb(230,230,230)' | Should -BeGreaterOrEqual 4.5
    }

    It 'draws samples of several hosts as several lines and strips with a legend' {
        $a = @(1..3 | ForEach-Object { New-Sample $_ ($_ * 0.5) 100 @([uint64]0x10000) })
        $b = @(1..3 | ForEach-Object { New-Sample $_ ($_ * 0.5) 300 @([uint64]0x20000) })
        $clix = Join-Path $TestDrive 'hosts.xml'
        $a | Export-Clixml $clix; $fromA = Import-Clixml $clix | ForEach-Object { $_ | Add-Member PSComputerName 'alpha' -PassThru }
        $b | Export-Clixml $clix; $fromB = Import-Clixml $clix | ForEach-Object { $_ | Add-Member PSComputerName 'beta' -PassThru }
        $svg2 = Join-Path $TestDrive 'hosts.svg'
        $null = @($fromA) + @($fromB) | Export-DirtyPageChart -Path $svg2
        $xml = [xml](Get-Content -Raw $svg2)
        @($xml.svg.polyline | Where-Object class -eq 'rate').Count | Should -Be 2
        @($xml.svg.rect | Where-Object class -eq 'strip').Count | Should -Be 2
        $legend = @((Get-RenderedLayout $svg2).texts | Where-Object cls -match 'legend series').text
        $legend | Should -Be 'shaped (42) on alpha', 'shaped (42) on beta'
    }
}

Describe 'Export-DirtyPageChart input and errors (issues 12.6, 13)' -Tag 'Workflows' {
    BeforeAll {
        $e = New-EmulatedProcess
        $m = $e | Add-EmulatedMapping -Length 1MB
        $w = @{ Address = $m.Start; Length = 1MB; Pattern = 'HotSet'; AccessesPerSecond = 4000; WriteRatio = 1; Seed = 3 }
        $samples = @($e | Watch-DirtyPage -Count 3 -Interval 0.5 -Workload $w)
    }

    It 'draws deserialized samples (Import-Clixml) as it draws live ones' {
        $clix = Join-Path $TestDrive 's.xml'
        $samples | Export-Clixml $clix
        $back = Import-Clixml $clix
        $back[0].PSObject.TypeNames[0] | Should -Be 'Deserialized.SoftDirty.Workflows.DirtyPageSample'
        $live = Join-Path $TestDrive 'live.svg'; $read = Join-Path $TestDrive 'back.svg'
        $null = $samples | Export-DirtyPageChart -Path $live
        $null = $back | Export-DirtyPageChart -Path $read
        Get-Content -Raw $read | Should -Be (Get-Content -Raw $live)
    }

    It 'draws deserialized pre-copy rounds, titled as rounds' {
        $rounds = @($e | Invoke-PreCopyMigration -Bandwidth 64MB -Workload $w | Where-Object { $_ -is [SoftDirty.Workflows.PreCopyRound] })
        $clix = Join-Path $TestDrive 'r.xml'
        $rounds | Export-Clixml $clix
        $svg = Join-Path $TestDrive 'rounds.svg'
        $null = Import-Clixml $clix | Export-DirtyPageChart -Path $svg
        ([xml](Get-Content -Raw $svg)).svg.text | Where-Object { $_.class -eq 'fg title' } | ForEach-Object '#text' | Should -Be 'Pre-copy migration rounds'
        @(([xml](Get-Content -Raw $svg)).svg.polyline).Count | Should -Be 1
    }

    It '<Case> is ChartNoData and writes no file' -ForEach @(
        @{ Case = '$null input'; Run = { param($p) $null | Export-DirtyPageChart -Path $p -ErrorAction Stop } }
        @{ Case = 'a summary alone'; Run = { param($p) [SoftDirty.Workflows.PreCopySummary]::new() | Export-DirtyPageChart -Path $p -ErrorAction Stop } }
    ) {
        $path = Join-Path $TestDrive "nothing-$([guid]::NewGuid().ToString('n')).svg"
        $err = { & $Run $path } | Should -Throw -ErrorId 'ChartNoData,SoftDirty.Commands.ExportDirtyPageChartCommand' -PassThru
        $err.CategoryInfo.Category | Should -Be 'InvalidData'
        Test-Path $path | Should -BeFalse
    }

    It 'a missing folder is ChartWriteError naming the folder, not a .NET exception' {
        $path = Join-Path $TestDrive "missing-$([guid]::NewGuid().ToString('n'))/chart.svg"
        $err = { $samples | Export-DirtyPageChart -Path $path -ErrorAction Stop } | Should -Throw -ErrorId 'ChartWriteError,SoftDirty.Commands.ExportDirtyPageChartCommand' -PassThru
        $err.Exception.Message | Should -Match 'does not exist'
        $err.CategoryInfo.Category | Should -Be 'WriteError'
    }

    It 'an unwritable folder is ChartWriteError and leaves no temporary file' {
        # /proc/self takes no new files, for root too.
        $err = { $samples | Export-DirtyPageChart -Path '/proc/self/chart.svg' -ErrorAction Stop } | Should -Throw -ErrorId 'ChartWriteError,SoftDirty.Commands.ExportDirtyPageChartCommand' -PassThru
        $err.Exception.Message | Should -Match 'Cannot write /proc/self/chart.svg'
    }

    It 'warns when the -Address/-Length selection holds no written page' {
        $path = Join-Path $TestDrive 'empty-focus.svg'
        $null = $samples | Export-DirtyPageChart -Path $path -Address 0x1000 -Length 4KB -WarningVariable wv -WarningAction SilentlyContinue
        "$wv" | Should -Match 'No written page lies in 0x1000-0x2000'
        Test-Path $path | Should -BeTrue
    }

    It 'refuses other objects with InvalidArgument, naming the type' {
        $err = { Get-Date | Export-DirtyPageChart -Path (Join-Path $TestDrive 'x.svg') -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,SoftDirty.Commands.ExportDirtyPageChartCommand' -PassThru
        $err.Exception.Message | Should -Match 'System.DateTime'
    }
}
