#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds, tests, documents, benchmarks and packages the SoftDirty module.
.DESCRIPTION
    Tasks (run in the order given; dependencies run first):
      Build     compile the engine and cmdlets, copy them into module/, make the help, stage out/SoftDirty
      Docs      turn docs/*.md into module/en-US/SoftDirty.dll-Help.xml and about_*.help.txt
      Native    compile the native test target (tests/native) with cc
      Test      xunit (engine) and Pester (cmdlets) suites; results in tests/results/
      KernelTest  the Pester tests tagged Kernel inside a qemu VM running Debian's 6.1 kernel
                (soft-dirty on): tests/vm/setup.sh, then tests/vm/run.sh tests/vm/kernel-tests.sh;
                then KernelMatrix
      KernelMatrix  the emulator against every kernel of tests/vm/kernels.list (Debian 6.1 to 7.3,
                amd64 and arm64), each booted with sdscenario alone: tests/Pester/KernelMatrix.Tests.ps1
      Demo      the main job: a real process's mappings, page map and soft-dirty tracking on this kernel
      Bench     one JSON object of speed ratios measured in one run
      Package   publish the staged module to a local PSResourceGet repository and install it from there
      Clean     remove build output
.EXAMPLE
    dotnet tool restore; dotnet pwsh -NoProfile -File ./build.ps1 Test
#>
[CmdletBinding()]
param(
    # One or more tasks; "Test,KernelTest" works too (pwsh -File passes it as one string).
    [Parameter(Position = 0)]
    [ArgumentCompleter({ param($c, $p, $word) 'Build', 'Docs', 'Native', 'Test', 'KernelTest', 'KernelMatrix', 'Demo', 'Bench', 'Package', 'Clean' | Where-Object { $_ -like "$word*" } })]
    [string[]] $Task = 'Build',
    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',
    # Pester tags to run or skip (Test task).
    [string[]] $Tag,
    [string[]] $ExcludeTag
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$Root = $PSScriptRoot
$ModuleDir = Join-Path $Root 'module'
$StageDir = Join-Path $Root 'out/SoftDirty'
$ResultsDir = Join-Path $Root 'tests/results'
$NativeDir = Join-Path $Root 'tests/native'
$Version = (Import-PowerShellDataFile (Join-Path $Root 'SoftDirty.psd1')).ModuleVersion
$PesterVersion = '5.7.1'

function Invoke-Native([string] $What, [scriptblock] $Command) {
    Write-Host "==> $What" -ForegroundColor Cyan
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

# The pwsh to run children with: this one's apphost ($PSHOME/pwsh), also under `dotnet pwsh`.
function Get-ChildPwsh {
    foreach ($name in 'pwsh', 'pwsh.exe') {
        $p = Join-Path $PSHOME $name
        if (Test-Path $p) { return $p }
    }
    (Get-Process -Id $PID).Path
}

function Invoke-Build {
    Invoke-Native 'dotnet build src/SoftDirty' {
        dotnet build (Join-Path $Root 'src/SoftDirty/SoftDirty.csproj') -c $Configuration -p:Version=$Version --nologo -v:q -clp:ErrorsOnly
    }
    $bin = Join-Path $Root "src/SoftDirty/bin/$Configuration/net8.0"
    foreach ($f in 'SoftDirty.dll', 'SoftDirty.Engine.dll', 'SoftDirty.pdb', 'SoftDirty.Engine.pdb') {
        Copy-Item (Join-Path $bin $f) $ModuleDir -Force
    }
    Invoke-Docs
    # The staged module: an explicit list of files, the manifest's paths made local.
    Remove-Item $StageDir -Recurse -Force -ErrorAction SilentlyContinue
    $null = New-Item -ItemType Directory (Join-Path $StageDir 'en-US') -Force
    foreach ($f in 'SoftDirty.dll', 'SoftDirty.Engine.dll', 'SoftDirty.format.ps1xml') { Copy-Item (Join-Path $ModuleDir $f) $StageDir }
    if (Test-Path (Join-Path $ModuleDir 'en-US')) { Copy-Item (Join-Path $ModuleDir 'en-US/*') (Join-Path $StageDir 'en-US') }
    (Get-Content -Raw (Join-Path $Root 'SoftDirty.psd1')) -replace "'module/", "'" |
        Set-Content -NoNewline (Join-Path $StageDir 'SoftDirty.psd1')
    Write-Host "    staged $StageDir"
}

function Invoke-Docs {
    $compiler = Join-Path $Root 'src/build/HelpCompiler.ps1'
    if (-not (Test-Path $compiler)) { Write-Warning 'src/build/HelpCompiler.ps1 missing: no help built'; return }
    Write-Host '==> help: docs/*.md -> module/en-US' -ForegroundColor Cyan
    & $compiler -DocsPath (Join-Path $Root 'docs') -OutputPath (Join-Path $ModuleDir 'en-US')
    # Get-Help looks for a module's cmdlet help under its ModuleBase (the manifest's folder), never beside the
    # DLL: a copy in <root>/en-US lets Import-Module ./SoftDirty.psd1 from the repository find it too.
    $null = New-Item -ItemType Directory (Join-Path $Root 'en-US') -Force
    Copy-Item (Join-Path $ModuleDir 'en-US/*') (Join-Path $Root 'en-US') -Force
}

function Invoke-NativeBuild {
    $cc = Get-Command cc, gcc -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if (-not $cc) {
        if ((Get-Command apt-get -ErrorAction SilentlyContinue) -and (id -u) -eq '0') {
            Invoke-Native 'apt-get install gcc libc6-dev' { apt-get update -qq; apt-get install -y -qq --no-install-recommends gcc libc6-dev }
            $cc = Get-Command gcc -CommandType Application
        } else { throw 'No C compiler (cc or gcc) found: install gcc to build the native test target.' }
    }
    $out = Join-Path $NativeDir 'bin'
    $null = New-Item -ItemType Directory $out -Force
    foreach ($src in Get-ChildItem (Join-Path $NativeDir '*.c')) {
        $exe = Join-Path $out $src.BaseName
        Invoke-Native "cc $($src.Name)" { & $cc.Source -O2 -Wall -o $exe $src.FullName }
    }
}

function Get-PesterModulePath {
    $have = Get-Module -ListAvailable Pester | Where-Object Version -ge ([version]'5.7') | Sort-Object Version -Descending | Select-Object -First 1
    if ($have) { return $have.Path }
    # The PowerShell Gallery is out of reach: restore Pester from NuGet (its tools/ folder is the module).
    $nugetRoot = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path ([Environment]::GetFolderPath('UserProfile')) '.nuget/packages' }
    $psd1 = Join-Path $nugetRoot "pester/$PesterVersion/tools/Pester.psd1"
    if (-not (Test-Path $psd1)) {
        Invoke-Native "NuGet restore Pester $PesterVersion" {
            dotnet restore (Join-Path $Root 'tests/Tools/Tools.csproj') --nologo -v:q
        }
    }
    if (-not (Test-Path $psd1)) { throw "Pester $PesterVersion was restored but $psd1 is missing" }
    $psd1
}

function Invoke-Test {
    Invoke-Build
    Invoke-NativeBuild
    $null = New-Item -ItemType Directory $ResultsDir -Force
    Invoke-Native 'xunit: tests/SoftDirty.Engine.Tests' {
        dotnet test (Join-Path $Root 'tests/SoftDirty.Engine.Tests') -c $Configuration --nologo -v:q `
            --logger "junit;LogFilePath=$ResultsDir/xunit.junit.xml" --logger 'console;verbosity=minimal'
    }
    $pester = Get-PesterModulePath
    Write-Host "==> Pester $pester (in a child pwsh)" -ForegroundColor Cyan
    $pwsh = Get-ChildPwsh
    $runner = Join-Path $Root 'tests/Invoke-PesterSuite.ps1'
    $argsList = @('-NoProfile', '-NonInteractive', '-File', $runner, '-PesterPath', $pester, '-ModulePath', (Join-Path $StageDir 'SoftDirty.psd1'), '-ResultsPath', $ResultsDir)
    if ($Tag) { $argsList += @('-Tag', ($Tag -join ',')) }
    if ($ExcludeTag) { $argsList += @('-ExcludeTag', ($ExcludeTag -join ',')) }
    & $pwsh @argsList
    if ($LASTEXITCODE -ne 0) { throw "Pester failed (exit code $LASTEXITCODE)" }
}

# The Kernel-tagged Pester tests on a kernel with soft-dirty: a qemu VM boots Debian's 6.1 kernel with
# this machine's / shared read-only and the repository read-write, and ONE pwsh runs the tests there.
function Invoke-KernelTest {
    Invoke-Build
    Invoke-NativeBuild
    $vm = Join-Path $Root 'tests/vm'
    Invoke-Native 'tests/vm/setup.sh (qemu, busybox-static, Debian 6.1 kernel, initrd; cached)' { bash (Join-Path $vm 'setup.sh') }
    $null = New-Item -ItemType Directory $ResultsDir -Force
    # The guest runs this machine's pwsh and Pester (run.sh passes SOFTDIRTY_* variables in).
    $env:SOFTDIRTY_PWSH = Get-ChildPwsh
    $env:SOFTDIRTY_PESTER = Get-PesterModulePath
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    Invoke-Native 'tests/vm/run.sh tests/vm/kernel-tests.sh (Pester -Tag Kernel in the VM)' {
        bash (Join-Path $vm 'run.sh') (Join-Path $vm 'kernel-tests.sh')
    }
    Write-Host ('    VM step passed in {0:n0} s' -f $watch.Elapsed.TotalSeconds)
    Invoke-KernelMatrix -Built
}

# The emulator against every kernel of tests/vm/kernels.list: each boots under qemu (tests/vm/matrix.sh)
# with sdscenario alone, one after another; a child pwsh runs tests/Pester/KernelMatrix.Tests.ps1, which
# generates the scenarios, boots each kernel and compares its recorded prints with the emulator.
function Invoke-KernelMatrix([switch] $Built) {
    if (-not $Built) { Invoke-Build }
    $null = New-Item -ItemType Directory $ResultsDir -Force
    $env:SOFTDIRTY_KERNEL_MATRIX = '1'
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    try {
        Invoke-Native 'Pester tests/Pester/KernelMatrix.Tests.ps1 (each kernel of tests/vm/kernels.list under qemu)' {
            & (Get-ChildPwsh) -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Invoke-PesterSuite.ps1') -PesterPath (Get-PesterModulePath) `
                -ModulePath (Join-Path $StageDir 'SoftDirty.psd1') -ResultsPath $ResultsDir -ResultName 'pester-kernel-matrix' `
                -Path (Join-Path $Root 'tests/Pester/KernelMatrix.Tests.ps1')
        }
    } finally { Remove-Item Env:SOFTDIRTY_KERNEL_MATRIX }
    Write-Host ('    kernel matrix passed in {0:n0} s' -f $watch.Elapsed.TotalSeconds)
}

function Invoke-Package {
    Invoke-Build
    $pwsh = Get-ChildPwsh
    & $pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Publish-LocalRepository.ps1') -StagePath $StageDir -OutputPath (Join-Path $Root 'out/repository')
    if ($LASTEXITCODE -ne 0) { throw "Package failed (exit code $LASTEXITCODE)" }
}

function Invoke-Demo {
    Invoke-Build
    Invoke-NativeBuild
    $pwsh = Get-ChildPwsh
    & $pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Demo.ps1') -ModulePath (Join-Path $StageDir 'SoftDirty.psd1') -TargetPath (Join-Path $NativeDir 'bin/sdtarget')
    if ($LASTEXITCODE -ne 0) { throw "Demo failed (exit code $LASTEXITCODE)" }
}

function Invoke-Bench {
    Invoke-Build
    Invoke-NativeBuild
    $pwsh = Get-ChildPwsh
    # Each script prints one JSON object of ratios measured in its own single run.
    $core = & $pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/Bench.ps1') -ModulePath (Join-Path $StageDir 'SoftDirty.psd1') -TargetPath (Join-Path $NativeDir 'bin/sdtarget')
    if ($LASTEXITCODE -ne 0) { throw "Bench failed (exit code $LASTEXITCODE)" }
    $workflows = & $pwsh -NoProfile -NonInteractive -File (Join-Path $Root 'tests/BenchWorkflows.ps1') -ModulePath (Join-Path $StageDir 'SoftDirty.psd1')
    if ($LASTEXITCODE -ne 0) { throw "BenchWorkflows failed (exit code $LASTEXITCODE)" }
    # Anything a script wrote before its JSON (progress lines) is shown, not parsed.
    function Read-Json([string[]] $Lines) {
        $at = [array]::FindIndex($Lines, [Predicate[string]] { param($l) $l -match '^\s*\{' })
        if ($at -lt 0) { throw "no JSON in: $($Lines -join "`n")" }
        if ($at -gt 0) { $Lines[0..($at - 1)] | Write-Host }
        ($Lines[$at..($Lines.Count - 1)] -join "`n") | ConvertFrom-Json
    }
    [ordered]@{ pagemap = Read-Json $core; workflows = Read-Json $workflows } | ConvertTo-Json -Depth 6
}

function Invoke-Clean {
    foreach ($d in 'out', 'en-US', 'tests/results', 'tests/native/bin', 'src/SoftDirty/bin', 'src/SoftDirty/obj', 'src/SoftDirty.Engine/bin', 'src/SoftDirty.Engine/obj',
                   'tests/SoftDirty.Engine.Tests/bin', 'tests/SoftDirty.Engine.Tests/obj', 'tests/Tools/obj') {
        Remove-Item (Join-Path $Root $d) -Recurse -Force -ErrorAction SilentlyContinue
    }
    Remove-Item (Join-Path $ModuleDir '*.dll'), (Join-Path $ModuleDir '*.pdb'), (Join-Path $ModuleDir 'en-US/SoftDirty.dll-Help.xml') -Force -ErrorAction SilentlyContinue
}

$Tasks = 'Build', 'Docs', 'Native', 'Test', 'KernelTest', 'KernelMatrix', 'Demo', 'Bench', 'Package', 'Clean'
$Task = @($Task -split ',' | ForEach-Object Trim | Where-Object { $_ })
foreach ($t in $Task) {
    if ($t -notin $Tasks) { throw "Unknown task '$t'; tasks: $($Tasks -join ', ')." }
}
foreach ($t in $Task) {
    switch ($t) {
        'Build' { Invoke-Build }
        'Docs' { Invoke-Docs }
        'Native' { Invoke-NativeBuild }
        'Test' { Invoke-Test }
        'KernelTest' { Invoke-KernelTest }
        'KernelMatrix' { Invoke-KernelMatrix }
        'Demo' { Invoke-Demo }
        'Bench' { Invoke-Bench }
        'Package' { Invoke-Package }
        'Clean' { Invoke-Clean }
    }
}
