<#
.SYNOPSIS
    The one way a bench script of this project measures a ratio and reports its own noise.
.DESCRIPTION
    Every ratio is measured by repeating, interleaved, the subject and its baseline (so drift of a shared
    machine falls on both), and is reported with its spread over the repetitions. A ratio whose spread
    exceeds 20% is marked noisy; the report carries the machine's load average before and after the run.
    Ratios are "how many times the subject's speed is the baseline's" (baseline time / subject time) unless
    -LowerIsBetter says the ratio is an overhead (subject time / baseline time).
#>

# Spread (max - min) / median above which a ratio is marked noisy.
$script:NoisySpreadPercent = 20

function Get-Median([double[]] $Values) {
    $s = [double[]]($Values | Sort-Object)
    if ($s.Count -eq 0) { return [double]::NaN }
    $mid = [int][math]::Floor($s.Count / 2)
    if ($s.Count % 2) { $s[$mid] } else { ($s[$mid - 1] + $s[$mid]) / 2 }
}

function Get-LoadAverage {
    # /proc/loadavg: the 1, 5 and 15 minute load averages first.
    $fields = (Get-Content -LiteralPath /proc/loadavg -TotalCount 1) -split ' '
    [ordered]@{ one = [double]$fields[0]; five = [double]$fields[1]; fifteen = [double]$fields[2] }
}

function Measure-Ratio {
    <#
    .SYNOPSIS
        Times -Subject and -Reference -Repeat times each, interleaved, and returns the ratio with its spread.
    .OUTPUTS
        An ordered dictionary: name, ratio (median), min, max, spreadPercent, repetitions, baseline, target,
        better ('higher' or 'lower'), met, noisy, subjectMs and baselineMs (medians).
    #>
    param(
        [Parameter(Mandatory)] [string] $Name,
        # What the baseline is, in words (printed beside the ratio).
        [Parameter(Mandatory)] [string] $Baseline,
        [Parameter(Mandatory)] [scriptblock] $Subject,
        [Parameter(Mandatory)] [scriptblock] $Reference,
        [double] $Target = [double]::NaN,
        [switch] $LowerIsBetter,
        [ValidateRange(1, 1000)] [int] $Repeat = 5,
        # Scales the reference's time before the ratio (when subject and baseline do different amounts of work).
        [double] $ReferenceScale = 1.0,
        # Untimed runs of each first (JIT, page cache, first faults).
        [ValidateRange(0, 10)] [int] $WarmUp = 1
    )
    for ($i = 0; $i -lt $WarmUp; $i++) { $null = & $Reference; $null = & $Subject }
    $subjectTimes = [Collections.Generic.List[double]]::new()
    $referenceTimes = [Collections.Generic.List[double]]::new()
    $ratios = [Collections.Generic.List[double]]::new()
    for ($i = 0; $i -lt $Repeat; $i++) {
        [GC]::Collect()
        $sw = [Diagnostics.Stopwatch]::StartNew()
        $null = & $Reference
        $r = $sw.Elapsed.TotalSeconds * $ReferenceScale
        [GC]::Collect()
        $sw.Restart()
        $null = & $Subject
        $s = $sw.Elapsed.TotalSeconds
        $subjectTimes.Add($s); $referenceTimes.Add($r)
        $ratios.Add($(if ($LowerIsBetter) { $s / $r } else { $r / $s }))
    }
    New-RatioRecord -Name $Name -Baseline $Baseline -Ratios $ratios -Target $Target -LowerIsBetter:$LowerIsBetter `
        -SubjectMs ((Get-Median $subjectTimes) * 1e3) -BaselineMs ((Get-Median $referenceTimes) * 1e3)
}

function New-RatioRecord {
    <#
    .SYNOPSIS
        The record Measure-Ratio returns, from ratios measured elsewhere (a test-kit loop, a VM run).
    #>
    param(
        [Parameter(Mandatory)] [string] $Name,
        [Parameter(Mandatory)] [string] $Baseline,
        [Parameter(Mandatory)] [double[]] $Ratios,
        [double] $Target = [double]::NaN,
        [switch] $LowerIsBetter,
        [double] $SubjectMs = [double]::NaN,
        [double] $BaselineMs = [double]::NaN
    )
    $median = Get-Median $Ratios
    $min = ($Ratios | Measure-Object -Minimum).Minimum
    $max = ($Ratios | Measure-Object -Maximum).Maximum
    $spread = if ($median -gt 0) { ($max - $min) / $median * 100 } else { [double]::NaN }
    $record = [ordered]@{
        name          = $Name
        ratio         = [math]::Round($median, 3)
        min           = [math]::Round($min, 3)
        max           = [math]::Round($max, 3)
        spreadPercent = [math]::Round($spread, 1)
        repetitions   = $Ratios.Count
        baseline      = $Baseline
        better        = $(if ($LowerIsBetter) { 'lower' } else { 'higher' })
        target        = $(if ([double]::IsNaN($Target)) { $null } else { $Target })
        met           = $null
        noisy         = [bool]($spread -gt $script:NoisySpreadPercent -or [double]::IsNaN($spread))
    }
    if (-not [double]::IsNaN($Target)) { $record.met = [bool]$(if ($LowerIsBetter) { $median -le $Target } else { $median -ge $Target }) }
    if (-not [double]::IsNaN($SubjectMs)) { $record.subjectMs = [math]::Round($SubjectMs, 3) }
    if (-not [double]::IsNaN($BaselineMs)) { $record.baselineMs = [math]::Round($BaselineMs, 3) }
    $record
}

function New-BenchReport {
    <#
    .SYNOPSIS
        One bench script's JSON-ready report: its ratios, facts and the noise of its own run.
    #>
    param(
        [Parameter(Mandatory)] [AllowEmptyCollection()] [Collections.IDictionary[]] $Ratios,
        [Parameter(Mandatory)] [Collections.IDictionary] $LoadBefore,
        [Collections.IDictionary] $Facts = [ordered]@{}
    )
    $loadAfter = Get-LoadAverage
    $noisy = @($Ratios | Where-Object { $_.noisy } | ForEach-Object { $_.name })
    $spreads = @($Ratios | ForEach-Object { $_.spreadPercent } | Where-Object { $_ -is [double] -and -not [double]::IsNaN($_) })
    [ordered]@{
        machine = "$([Environment]::ProcessorCount) cores, kernel $([Environment]::OSVersion.Version), .NET $([Environment]::Version), pwsh $($PSVersionTable.PSVersion)"
        facts   = $Facts
        ratios  = $Ratios
        noise   = [ordered]@{
            loadBefore        = $LoadBefore
            loadAfter         = $loadAfter
            maxSpreadPercent  = $(if ($spreads.Count) { ($spreads | Measure-Object -Maximum).Maximum } else { $null })
            noisySpreadPercent = $script:NoisySpreadPercent
            noisyRatios       = $noisy
            noisy             = [bool]($noisy.Count -gt 0)
        }
    }
}

Export-ModuleMember -Function Get-Median, Get-LoadAverage, Measure-Ratio, New-RatioRecord, New-BenchReport
