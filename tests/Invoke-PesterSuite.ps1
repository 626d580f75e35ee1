<#
.SYNOPSIS
    Runs the Pester suite in this (child) pwsh against a built module; writes NUnit and JUnit XML.
    build.ps1 Test starts it in a child process so no built DLL stays locked in the caller.
#>
param(
    [Parameter(Mandatory)] [string] $PesterPath,
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $ResultsPath,
    [string] $Tag,
    [string] $ExcludeTag,
    # Test files or folders, comma-separated.
    [string] $Path = (Join-Path $PSScriptRoot 'Pester'),
    # Result files are <ResultName>.nunit.xml and <ResultName>.junit.xml (the VM run uses its own).
    [string] $ResultName = 'pester',
    # The test kit (scenario harness, benchmarks) the differential tests load after the module; build.ps1
    # builds it beside the staged module: out/testkit next to out/SoftDirty.
    [string] $TestKitPath = (Join-Path (Split-Path (Split-Path $ModulePath)) 'testkit/SoftDirty.TestKit.dll')
)
$ErrorActionPreference = 'Stop'
Import-Module $PesterPath -Force
$env:SOFTDIRTY_MODULE = (Resolve-Path $ModulePath).Path
$env:SOFTDIRTY_TARGET = Join-Path $PSScriptRoot 'native/bin/sdtarget'
$env:SOFTDIRTY_TESTKIT = [IO.Path]::GetFullPath($TestKitPath)
$config = New-PesterConfiguration
$config.Run.Path = $Path -split ','
$config.Run.Exit = $false
$config.Run.PassThru = $true
$config.Output.Verbosity = 'Normal'
$config.TestResult.Enabled = $true
$config.TestResult.OutputFormat = 'NUnitXml'
$config.TestResult.OutputPath = Join-Path $ResultsPath "$ResultName.nunit.xml"
if ($Tag) { $config.Filter.Tag = $Tag -split ',' }
if ($ExcludeTag) { $config.Filter.ExcludeTag = $ExcludeTag -split ',' }
$result = Invoke-Pester -Configuration $config
$result | Export-JUnitReport -Path (Join-Path $ResultsPath "$ResultName.junit.xml")
# A test target (tests/native/bin) still running now was left by a test that did not stop it. It holds this run's output
# (inherited stderr), so whoever reads that output to its end would wait with it: an exec'ing target a test failed to kill kept
# build.ps1 Test waiting for most of an hour. Each is killed and named (the test that left it is the defect).
if ($IsLinux) {
    $bin = [IO.Path]::GetFullPath((Join-Path $PSScriptRoot 'native/bin')) + '/'
    foreach ($proc in Get-ChildItem /proc -Directory -ErrorAction SilentlyContinue | Where-Object Name -match '^\d+$') {
        $exe = try { (Get-Item -LiteralPath (Join-Path $proc.FullName 'exe') -Force -ErrorAction Stop).LinkTarget } catch { $null }
        if ($exe -and $exe.StartsWith($bin, [StringComparison]::Ordinal) -and [int]$proc.Name -ne $PID) {
            Write-Host "Leaked test target killed after the suite: pid $($proc.Name), $exe" -ForegroundColor Yellow
            kill -KILL $proc.Name 2>$null
        }
    }
}
# Each failure again, named, where a log's tail shows it (CI keeps the last lines of two long runs; build.ps1 repeats these
# lines at its end): a test, a block whose setup failed, or a file that failed to run.
$failures = @(
    foreach ($t in $result.Failed) { [pscustomobject]@{ Name = "$($t.ExpandedPath) ($(Split-Path -Leaf $t.ScriptBlock.File))"; Errors = $t.ErrorRecord } }
    foreach ($b in $result.FailedBlocks) { [pscustomobject]@{ Name = "$($b.ExpandedPath) (block)"; Errors = $b.ErrorRecord } }
    foreach ($c in $result.FailedContainers) { [pscustomobject]@{ Name = "$($c.Item) (file)"; Errors = $c.ErrorRecord } })
foreach ($f in $failures) {
    "FAILED TEST: $($f.Name)"
    foreach ($e in @($f.Errors)) {
        @("$($e.Exception.Message)" -split "`r?`n" | Where-Object { $_.Trim() } | Select-Object -First 8) | ForEach-Object { "    | $_" }
    }
}
# The plain closing line CI reads.
"Pester: $($result.PassedCount) passed, $($result.FailedCount) failed, $($result.SkippedCount) skipped"
if ($result.FailedCount -gt 0 -or $result.Result -ne 'Passed') { exit 1 }
if ($result.PassedCount -eq 0) { Write-Error 'Pester ran no test'; exit 1 }
exit 0
