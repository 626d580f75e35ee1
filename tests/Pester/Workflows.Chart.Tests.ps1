# Export-DirtyPageChart: the SVG rendered in headless Chromium shows the hot region where it should.
Describe 'Export-DirtyPageChart' -Tag 'Workflows' {
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
        Import-Module $env:SOFTDIRTY_MODULE
        Import-Module (Join-Path $PSScriptRoot 'Workflows.Target.psm1')
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
        @($xml.svg.rect | Where-Object fill -eq '#d7301f').Count | Should -BeGreaterOrEqual 4
    }

    It 'renders in headless Chromium, not blank, with the hot region in the expected rows' -Skip:$script:noChromium {
        $png = Join-Path $TestDrive 'chart.png'
        $chrome = (Get-Command chromium, chromium-browser -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1).Source
        & $chrome --headless --no-sandbox --disable-gpu --hide-scrollbars "--screenshot=$png" '--window-size=900,560' "file://$svg" 2>$null | Out-Null
        Test-Path $png | Should -BeTrue
        $img = Read-Png $png
        $img.Width | Should -Be 900
        # Not blank: many pixels that are not white.
        $dark = 0
        for ($y = 0; $y -lt $img.Height; $y += 4) { for ($x = 0; $x -lt $img.Width; $x += 4) { $p = $img.Pixel($x, $y); if ($p[0] + $p[1] + $p[2] -lt 600) { $dark++ } } }
        $dark | Should -BeGreaterThan 200
        # Heat strip: y 280-530 over pages 0-512 of the region (low addresses at the top); the hot pages 384-447
        # are rows 48-55 of 64, y ~ 467-499. Look at the last sample's column.
        $x = 820
        $hot = $img.Pixel($x, 483)
        ($hot[0] -gt 150 -and $hot[1] -lt 120 -and $hot[2] -lt 120) | Should -BeTrue -Because "the hot region is red (got $hot)"
        $cold = $img.Pixel($x, 380)
        ($cold[0] -gt 200 -and $cold[1] -gt 200) | Should -BeTrue -Because "cold pages stay light (got $cold)"
    }
}
